"""ONNX export of hf_tformer checkpoints through optimum, validated against PyTorch, and ONNX Runtime inference.

Names are resolved on first use: importing the package (e.g. for `hf-tformer export onnx --help`) does not import
optimum, which only the transformers 4.57 environment has.
"""

from typing import Any

__all__ = ["DEFAULT_OPSET", "TASKS", "register", "supported_tasks"]


def __getattr__(name: str) -> Any:
    if name in ("DEFAULT_OPSET", "TASKS", "supported_tasks"):
        from . import tasks

        return getattr(tasks, name)
    if name == "register":
        from .onnx_configs import register

        return register
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
