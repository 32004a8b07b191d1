"""`nn.Linear` with two CPU inference paths picked by dtype, device and shape; the arithmetic stays the same.

- bf16/fp16 on x86 CPUs without AVX512-BF16/AMX (e.g. AVX2-only EPYC): oneDNN emulates bf16 GEMMs at ~10% of
  the fp32 rate. There a half-precision linear runs as an fp32 GEMM over the upcast operands and is rounded back:
  what a native bf16 GEMM does (half inputs, fp32 accumulation, one rounding of the output), several times faster.
- fp32 over a large weight and few rows (decoding, the vocabulary projection): a memory-bound GEMV. torch's eager
  linear calls MKL, whose GEMV over nn.Linear's (out, in) layout streams the weight at about half the memory
  bandwidth on an AVX2 EPYC (768 -> 50257 at 1 row: 12.8 ms); oneDNN's matmul reads it at full speed (6.3 ms).
  Used only without autograd and outside tracing/compilation, which see plain `F.linear` (inductor and the
  exporters make their own kernel choice); `torch.backends.mkldnn.flags(enabled=False)` turns it off.
Still an `nn.Linear` subclass, so PEFT, quantizers and tensor-parallel plans see an ordinary linear layer; tensor
subclasses (DTensor, quantized weights) always take `F.linear`. Tools that match modules by exact class instead
(`torch.ao.quantization.quantize_dynamic`) skip subclasses: `to_plain_linear` turns the layers into `nn.Linear` first.
"""

import functools

import torch
from torch import nn
from torch.nn import functional as F

_HALF_DTYPES = (torch.bfloat16, torch.float16)
# Below this many rows the weight's upcast costs more than the emulated GEMV (measured on an AVX2 EPYC: break-even ~4).
_MIN_ROWS_FOR_UPCAST = 4
# oneDNN costs ~40 us more per call than MKL; from an 8 MiB fp32 weight (768 x 3072 and up) its faster streaming
# wins (1.0-1.4x for 768 <-> 3072, 1.6-2.1x for a 50k vocabulary, measured at 1-128 rows on an AVX2 EPYC).
_MIN_WEIGHT_FOR_ONEDNN = 2**21
# At ~1000 rows the GEMM is compute-bound and MKL is as fast or faster.
_MAX_ROWS_FOR_ONEDNN = 128
_PLAIN_TENSOR_TYPES = (torch.Tensor, nn.Parameter)


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


@functools.lru_cache(maxsize=None)
def onednn_linear_available() -> bool:
    """True on x86 builds of torch whose oneDNN linear op exists and agrees with `F.linear` on a probe."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512") or not torch.backends.mkldnn.is_available():
        return False
    try:
        linear = torch.ops.mkldnn._linear_pointwise
        # Fixed operands: a probe must not draw from the caller's random stream.
        probe = torch.linspace(-1.0, 1.0, 24).reshape(3, 8)
        weight = torch.linspace(1.0, -1.0, 40).reshape(5, 8)
        bias = torch.linspace(0.0, 1.0, 5)
        with torch.no_grad():
            return torch.allclose(linear(probe, weight, bias, "none", [], ""), F.linear(probe, weight, bias), atol=1e-6)
    except (AttributeError, RuntimeError):
        return False


def use_onednn_linear(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this fp32 CPU linear is a memory-bound inference GEMV that oneDNN runs faster than MKL."""
    # Cheapest, most often decisive checks first: this runs on every linear call of a decoding step.
    if input.dtype != torch.float32 or weight.numel() < _MIN_WEIGHT_FOR_ONEDNN or torch.is_grad_enabled():
        return False
    if torch.compiler.is_compiling() or torch.jit.is_tracing():
        return False
    return (
        type(input) is torch.Tensor
        and type(weight) in _PLAIN_TENSOR_TYPES
        and weight.dtype == torch.float32
        and input.device.type == "cpu"
        and input.numel() <= _MAX_ROWS_FOR_ONEDNN * input.shape[-1]
        and torch.backends.mkldnn.enabled
        and onednn_linear_available()
    )


class TformerLinear(nn.Linear):
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if use_onednn_linear(input, self.weight):
            return torch.ops.mkldnn._linear_pointwise(input, self.weight, self.bias, "none", [], "")
        if upcast_half_matmul(input):
            bias = None if self.bias is None else self.bias.float()
            return F.linear(input.float(), self.weight.float(), bias).to(input.dtype)
        return F.linear(input, self.weight, self.bias)


def to_plain_linear(module: nn.Module) -> nn.Module:
    """Turn every TformerLinear in `module` into a plain `nn.Linear`, in place, and return `module`.

    The layers keep their parameters (and ties), hooks and devices; only the CPU fast paths above are dropped (the
    arithmetic is the same). Needed where modules are matched by exact class rather than isinstance: torch's eager
    quantization (`quantize_dynamic(model, {nn.Linear})`) silently leaves nn.Linear subclasses unquantized.
    """
    for layer in module.modules():
        if isinstance(layer, TformerLinear):
            # TformerLinear adds no state to nn.Linear, so the instance is a valid nn.Linear as it is (the same
            # class swap torch.nn.utils.parametrize performs).
            layer.__class__ = nn.Linear
    return module
