"""Image encoder forward: hf_tformer vs transformers' ViTModel with the same weights, on PyTorch and on ONNX Runtime.

    python bench/vision_forward.py [--threads 2] [--repeats 10] [--dtypes float32,bfloat16] [--runtimes pytorch,onnx]
                                   [--profile]

ViT-Base shape with 4 layers (hidden 768, 12 heads, ffn 3072, patch 16), 224x224 images, batch 8 (197 tokens per
image). A random ViTModel is converted with hf_tformer_conversion (parity gate included), so both sides run the
same weights. PyTorch: eager forward with sdpa, fp32 and bf16 (bf16 only where the CPU has native bf16 dot products,
unless --dtypes asks for it). ONNX Runtime: our fused export (one com.microsoft.Attention per layer) vs optimum's
native ViT export, plain and with optimum's O2 graph optimization (ORT's fusions for ViT), each also through ORT's
transformer optimizer for ours. Contenders alternate run by run (order rotating); medians are reported.
"""

import argparse
import statistics
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import torch

from hf_tformer_bench.generation import interleaved_ms

SHAPE = dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072, num_hidden_layers=4)
IMAGE, PATCH, BATCH = 224, 16, 8


def forward_flops() -> float:
    """Multiply-adds x2 of the patch projection and each layer's projections, FFN and attention scores/values."""
    tokens = (IMAGE // PATCH) ** 2 + 1
    hidden, inner, layers = SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["num_hidden_layers"]
    patches = 2 * BATCH * (tokens - 1) * 3 * PATCH * PATCH * hidden
    per_layer = 2 * BATCH * tokens * (4 * hidden * hidden + 2 * hidden * inner) + 2 * 2 * BATCH * tokens**2 * hidden
    return patches + layers * per_layer


def native_bf16() -> tuple[bool, str]:
    """Whether this CPU has bf16 dot-product instructions (AVX512_BF16 or AMX), from /proc/cpuinfo's flags."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False, "no /proc/cpuinfo flags"
    found = sorted({"avx512_bf16", "amx_bf16"} & set(flags.split(":", 1)[1].split()))
    return bool(found), (", ".join(found) if found else "neither avx512_bf16 nor amx_bf16")


def build(work: Path) -> None:
    """work/native: a random ViTModel (+ its image processor); work/ours: it converted (parity gate on)."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    from hf_tformer_conversion import convert

    torch.manual_seed(0)
    config = ViTConfig(image_size=IMAGE, patch_size=PATCH, attn_implementation="sdpa", **SHAPE)
    ViTModel(config).eval().save_pretrained(work / "native")
    ViTImageProcessor(size={"height": IMAGE, "width": IMAGE}).save_pretrained(work / "native")
    convert(str(work / "native"), str(work / "ours"), progress=False)


def spread(values: list[float]) -> str:
    """median and the interquartile range relative to it: how noisy the samples were."""
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return f"{statistics.median(values):.1f} (IQR {(quartiles[2] - quartiles[0]) / quartiles[1]:.0%})"


def pytorch_rows(work: Path, dtypes: list[str], repeats: int, profile: bool) -> None:
    from transformers import ViTModel

    import hf_tformer as ht

    native = ViTModel.from_pretrained(work / "native", attn_implementation="sdpa").eval()
    ours = ht.TformerViTModel.from_pretrained(work / "ours", attn_implementation="sdpa").eval()
    pixels = torch.randn(BATCH, 3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(0))
    flops = forward_flops()
    print(f"\nPyTorch eager (sdpa), batch {BATCH} x {IMAGE}x{IMAGE}, {flops / 1e9:.1f} GFLOP per forward, median of "
          f"{repeats} interleaved runs (IQR / median in brackets)")
    print("| dtype | native ViTModel ms | ours ms | ratio ours / native | ours GFLOP/s | max abs diff |")
    print("|---|---|---|---|---|---|")
    for dtype_name in dtypes:
        dtype = getattr(torch, dtype_name)
        models = {"native": native.to(dtype), "ours": ours.to(dtype)}
        inputs = pixels.to(dtype)
        with torch.inference_mode():
            outputs = {name: model(inputs).last_hidden_state.float() for name, model in models.items()}
            runners = {name: (lambda model=model: model(inputs)) for name, model in models.items()}
            times, _ = interleaved_ms(runners, repeats)
            if profile:
                for name, model in models.items():
                    with torch.profiler.profile() as trace:
                        model(inputs)
                    print(f"--- {name} {dtype_name}\n"
                          + trace.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))
        medians = {name: statistics.median(values) for name, values in times.items()}
        diff = float((outputs["ours"] - outputs["native"]).abs().max())
        print(f"| {dtype_name} | {spread(times['native'])} | {spread(times['ours'])} | "
              f"{medians['ours'] / medians['native']:.3f} | {flops / medians['ours'] / 1e6:.0f} | {diff:.1e} |")


def onnx_graphs(work: Path) -> dict[str, Path]:
    from onnxruntime.transformers.optimizer import optimize_model
    from optimum.exporters.onnx import main_export

    from hf_tformer_export.export import export_onnx

    main_export(str(work / "native"), work / "native_onnx", task="feature-extraction")
    main_export(str(work / "native"), work / "native_o2", task="feature-extraction", optimize="O2")
    export_onnx(str(work / "ours"), str(work / "fused"), "image-feature-extraction")
    optimize_model(str(work / "fused" / "model.onnx"), model_type="vit", num_heads=SHAPE["num_attention_heads"],
                   hidden_size=SHAPE["hidden_size"]).save_model_to_file(str(work / "fused_opt.onnx"))
    optimized = work / "native_o2" / "model_optimized.onnx"  # optimum writes the O2 graph beside model.onnx
    if not optimized.exists():
        optimized = work / "native_o2" / "model.onnx"
    return {"native ViTModel, optimum export": work / "native_onnx" / "model.onnx",
            "native ViTModel, optimum export + O2": optimized,
            "ours fused": work / "fused" / "model.onnx", "ours fused + ORT optimizer": work / "fused_opt.onnx"}


def onnx_rows(work: Path, threads: int, repeats: int) -> None:
    import numpy as np

    from hf_tformer_bench.onnx_runtime import print_node_table, session

    graphs = onnx_graphs(work)
    print()
    print_node_table(graphs, ("Attention", "SkipLayerNormalization", "MatMul", "Gemm"))
    pixels = np.random.default_rng(0).standard_normal((BATCH, 3, IMAGE, IMAGE)).astype(np.float32)
    sessions = {name: session(path, threads) for name, path in graphs.items()}
    outputs = {name: sess.run(["last_hidden_state"], {"pixel_values": pixels})[0] for name, sess in sessions.items()}
    times, _ = interleaved_ms({name: (lambda sess=sess: sess.run(None, {"pixel_values": pixels}))
                            for name, sess in sessions.items()}, repeats)
    best_native = min(statistics.median(times[name]) for name in graphs if name.startswith("native"))
    reference = outputs["native ViTModel, optimum export"]
    print(f"\nONNX Runtime fp32 (CPU, {threads} threads, spinning off), batch {BATCH} x {IMAGE}x{IMAGE}, median of "
          f"{repeats} interleaved runs (IQR / median in brackets)")
    print("| graph | ms | vs best native ORT | max abs diff vs native export |")
    print("|---|---|---|---|")
    for name, values in times.items():
        diff = float(np.abs(outputs[name] - reference).max())
        print(f"| {name} | {spread(values)} | {statistics.median(values) / best_native:.3f} | {diff:.1e} |")


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--dtypes", default=None, help="comma-separated torch dtypes (default: float32, plus "
                        "bfloat16 where the CPU has native bf16)")
    parser.add_argument("--runtimes", default="pytorch,onnx", help="which comparisons to run: pytorch, onnx or both "
                        "(pytorch alone needs no optimum-onnx)")
    parser.add_argument("--profile", action="store_true", help="print the top operators of each PyTorch model")
    args = parser.parse_args(argv)
    runtimes = set(args.runtimes.split(","))
    if not runtimes or runtimes - {"pytorch", "onnx"}:
        parser.error(f"--runtimes {args.runtimes!r}: give pytorch, onnx or pytorch,onnx")
    if "onnx" in runtimes:
        from hf_tformer_export.__main__ import require_optimum_onnx

        require_optimum_onnx()  # a clear ValueError in an environment without optimum-onnx
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    has_bf16, bf16_source = native_bf16()
    dtypes = args.dtypes.split(",") if args.dtypes else ["float32"] + (["bfloat16"] if has_bf16 else [])
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {has_bf16} ({bf16_source})"
          + ("" if has_bf16 or "bfloat16" in dtypes else "; bf16 skipped (emulated, not representative)"))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build(work)
        if "pytorch" in runtimes:
            pytorch_rows(work, dtypes, args.repeats, args.profile)
        if "onnx" in runtimes:
            onnx_rows(work, args.threads, args.repeats)


if __name__ == "__main__":
    main()
