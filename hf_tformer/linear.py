"""`nn.Linear` that stays fast in bf16/fp16 on CPUs without native half-precision matmul.

On x86 CPUs without AVX512-BF16/AMX (e.g. AVX2-only EPYC), oneDNN emulates bf16 GEMMs at ~10% of the fp32 rate.
There, a half-precision linear is computed as an fp32 GEMM over the upcast operands and rounded back: the same
arithmetic a native bf16 GEMM does (half inputs, fp32 accumulation, one rounding of the output), several times faster.
Still an `nn.Linear` subclass, so PEFT, quantizers and tensor-parallel plans see an ordinary linear layer.
"""

import functools

import torch
from torch import nn
from torch.nn import functional as F

_HALF_DTYPES = (torch.bfloat16, torch.float16)
# Below this many rows the weight's upcast costs more than the emulated GEMV (measured on an AVX2 EPYC: break-even ~4).
_MIN_ROWS_FOR_UPCAST = 4


@functools.lru_cache(maxsize=None)
def cpu_has_native_half_matmul() -> bool:
    """True where the CPU multiplies bf16 in hardware (AVX512-BF16 or AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def upcast_half_matmul(tensor: torch.Tensor) -> bool:
    """Whether a half-precision matmul on `tensor` should run as fp32 here (decided by dtype, device and shape only)."""
    return (
        tensor.dtype in _HALF_DTYPES
        and tensor.device.type == "cpu"
        and tensor.numel() >= _MIN_ROWS_FOR_UPCAST * tensor.shape[-1]
        and not cpu_has_native_half_matmul()
    )


class TformerLinear(nn.Linear):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if upcast_half_matmul(input):
            bias = None if self.bias is None else self.bias.float()
            return F.linear(input.float(), self.weight.float(), bias).to(input.dtype)
        return F.linear(input, self.weight, self.bias)
