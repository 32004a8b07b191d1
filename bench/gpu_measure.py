"""Measuring helpers for bench/gpu_attention.py: synced timing, which SDPA kernel ran (torch.profiler), peak CUDA
memory, matmul peak and model FLOPs, and an atomic JSON writer. Every CUDA call is guarded by the device, so the
same code runs on CPU."""

import json
import os
import statistics
import tempfile
from pathlib import Path
from typing import Callable

import torch

from hf_tformer_bench.generation import interleaved_ms

# aten ops that name the SDPA kernel dispatched (CUDA flash / mem-efficient / cuDNN, CPU flash, the math fallback)
SDPA_KERNELS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "cpu_flash",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def synced(run: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """`run` followed by a device synchronize, so that wall-clock timing covers the kernels, not their launch."""
    def call() -> object:
        result = run()
        synchronize(device)
        return result

    return call


def timed_ms(runners: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, list[float]]:
    """Milliseconds per synced run of each runner, interleaved (order rotating), after one warm-up each."""
    synchronize(device)
    return interleaved_ms({name: synced(run, device) for name, run in runners.items()}, repeats)[0]


def median(values: list[float]) -> float:
    return statistics.median(values)


def sdpa_kernels(run: Callable[[], object], device: torch.device) -> list[str]:
    """The SDPA kernels (SDPA_KERNELS' short names) whose aten ops ran under `run`, from a torch.profiler trace;
    [] when no SDPA op ran (eager or flex attention)."""
    activities = [torch.profiler.ProfilerActivity.CPU]  # aten ops are recorded on the CPU side for CUDA too
    with torch.profiler.profile(activities=activities) as trace:
        run()
        synchronize(device)
    names = {event.key for event in trace.key_averages()}
    return sorted(short for op, short in SDPA_KERNELS.items() if op in names)


def sdpa_masks(run: Callable[[], object]) -> list[str]:
    """What `run` handed torch.nn.functional.scaled_dot_product_attention as its mask, per distinct call form:
    "none, causal" / "none" (the flash kernels can run) or the mask's dtype and shape (flash cannot)."""
    original, seen = torch.nn.functional.scaled_dot_product_attention, set()

    def spy(*args, **kwargs):
        mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
        causal = kwargs.get("is_causal", args[5] if len(args) > 5 else False)
        kind = "none" if mask is None else f"{str(mask.dtype).removeprefix('torch.')} {tuple(mask.shape)}"
        seen.add(kind + (", causal" if causal else ""))
        return original(*args, **kwargs)

    torch.nn.functional.scaled_dot_product_attention = spy
    try:
        run()
    finally:
        torch.nn.functional.scaled_dot_product_attention = original
    return sorted(seen)


def forced_kernels(run: Callable[[], object], device: torch.device, backend: str = "FLASH_ATTENTION") -> list[str]:
    """sdpa_kernels of `run` with SDPA restricted to one torch.nn.attention.SDPBackend member (by name): the kernel
    if it could run, else ["error: ..."] (e.g. flash refuses an explicit mask)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        with sdpa_kernel(getattr(SDPBackend, backend)):
            return sdpa_kernels(run, device)
    except RuntimeError as error:
        return [f"error: {str(error).splitlines()[0][:160]}"]


def peak_mib(run: Callable[[], object], device: torch.device) -> float:
    """CUDA memory `run` allocated at its peak on top of what was allocated before it (weights, inputs), in MiB."""
    synchronize(device)
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """FLOP/s of a size x size x size matmul in `dtype` on `device` (median of synced runs)."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, generator=generator).to(dtype)
    b = torch.randn(size, size, device=device, generator=generator).to(dtype)
    times = timed_ms({"matmul": lambda: torch.matmul(a, b)}, max(3, repeats), device)["matmul"]
    return 2 * size**3 / (median(times) / 1000)


def linear_parameters(model: torch.nn.Module) -> int:
    """Weights of every nn.Linear (what the projection and feed-forward GEMMs multiply by), heads excluded."""
    return sum(module.weight.numel() for name, module in model.named_modules()
               if isinstance(module, torch.nn.Linear) and "lm_head" not in name)


def forward_flops(linear_params: int, layers: int, hidden: int, batch: int, seq: int, causal: bool) -> float:
    """2 * linear weights * tokens + attention scores and values (4 * layers * seq^2 * hidden per sequence), the
    attention half for a causal model (what a causal kernel skips)."""
    attention = 4 * layers * seq * seq * hidden * batch
    return 2 * linear_params * batch * seq + (attention / 2 if causal else attention)


def write_json(path: Path, results: dict) -> None:
    """Write `results` to `path` atomically: a temporary file in the same folder, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        json.dump(results, stream, indent=1, sort_keys=False)
    os.replace(temporary, path)


def table(header: list[str], rows: list[list[object]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
