"""ONNX export of hf_tformer checkpoints (our own, torch.onnx), validated against PyTorch, and ONNX Runtime inference
(our own model classes), on any transformers version; `register()` teaches optimum (transformers 4.57 only) our
model types, so its ORTModel* and optimum-cli work on them too.

Names are resolved on first use: importing the package (e.g. for `hf-tformer export onnx --help`) imports neither
onnxruntime nor optimum.
"""

from typing import Any

__all__ = ["DEFAULT_OPSET", "TASKS", "TformerGenaiModel", "export_onnx", "load_ort_model", "register",
           "supported_tasks"]


def __getattr__(name: str) -> Any:
    if name in ("DEFAULT_OPSET", "TASKS", "supported_tasks"):
        from . import tasks

        return getattr(tasks, name)
    if name == "register":
        from .__main__ import require_optimum_onnx

        require_optimum_onnx()  # a ValueError saying where optimum runs, not a ModuleNotFoundError
        from .onnx_configs import register

        return register
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    if name == "load_ort_model":
        from .runtime import load_ort_model

        return load_ort_model
    if name == "TformerGenaiModel":  # onnxruntime-genai is imported when a model loads, not here
        from .ort_genai import TformerGenaiModel

        return TformerGenaiModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
