"""Which dtype a checkpoint is stored in, and which one to write.

Both directions verify parity in fp32 (a half-precision value upcast to fp32 is exact), then write the weights in
the dtype asked for; "auto" keeps the source's own, so a bf16 checkpoint stays bf16 and the same size.
"""

from collections import Counter
from pathlib import Path
from typing import Iterable

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)
# safetensors header names of the floating dtypes a checkpoint may hold.
_SAFETENSORS_FLOATS = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def check_dtype_name(name: str) -> None:
    """Raise ValueError early, before any work, for a dtype name we cannot write."""
    if name not in DTYPE_CHOICES:
        raise ValueError(f"dtype={name!r} is not supported; choose one of {list(DTYPE_CHOICES)} "
                         "('auto' keeps the source checkpoint's dtype).")


def majority_dtype(tensors: Iterable[torch.Tensor]) -> torch.dtype:
    """The floating dtype holding most elements (a bf16 model may keep a few fp32 tensors); fp32 if none."""
    elements: Counter = Counter()
    for tensor in tensors:
        if tensor.is_floating_point():
            elements[tensor.dtype] += tensor.numel()
    return elements.most_common(1)[0][0] if elements else torch.float32


def checkpoint_dtype(folder: Path) -> torch.dtype:
    """majority_dtype of a folder's safetensors, read from the headers (no tensor data is loaded)."""
    from safetensors import safe_open

    elements: Counter = Counter()
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                tensor = handle.get_slice(key)
                dtype = _SAFETENSORS_FLOATS.get(tensor.get_dtype())
                if dtype is not None:
                    elements[dtype] += int(torch.Size(tensor.get_shape()).numel())
    return elements.most_common(1)[0][0] if elements else torch.float32


def resolve_dtype(name: str, source_dtype: torch.dtype) -> torch.dtype:
    check_dtype_name(name)
    return source_dtype if name == "auto" else DTYPES[name]
