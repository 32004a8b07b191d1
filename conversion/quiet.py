"""Quiet imports for the command lines: noise on the front door that is not a problem.

torchao (installed for the client tests; transformers imports it whenever it is installed) logs that its CUDA-only
kernels do not load on a CPU machine, and registers enums torch's pytree warns about. Both go through `logging`,
so raising those loggers' level before the import silences them; real errors still show.
"""

import logging

NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def quiet_import_warnings() -> None:
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
