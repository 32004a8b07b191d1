"""hf_tformer conversion: existing transformers checkpoints (BERT, RoBERTa, GPT-2, Llama, BART, Marian, T5, ...) into
hf_tformer checkpoints and back (`to_native`), gated on numerical parity. Installed as `hf_tformer_conversion`; CLI:
`hf-tformer convert --help`.

Names are resolved on first use, so a light submodule (the command line's help, its error reporting) imports neither
torch nor transformers: `hf-tformer convert --help` answers at once. (The converter lives in converter.py, not
convert.py: a submodule named like the function would replace it as the package's attribute once imported.)
"""

import importlib
from typing import Any

__all__ = ["ConversionReport", "ReverseReport", "SOURCES", "convert", "to_native"]
_HOMES = {"ConversionReport": "converter", "convert": "converter", "ReverseReport": "reverse", "to_native": "reverse",
          "SOURCES": "sources"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
