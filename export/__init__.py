"""ONNX export of hf_tformer checkpoints through optimum, validated against PyTorch, and ONNX Runtime inference."""

from .onnx_configs import DEFAULT_OPSET, TASKS, register, supported_tasks

__all__ = ["DEFAULT_OPSET", "TASKS", "register", "supported_tasks"]
