"""Encoder forward: hf_tformer vs transformers' BertModel, same shape, random weights, side by side in one run.

    python bench/encoder_forward.py [--threads 2] [--repeats 5] [--profile]

Prints this machine's matmul peak per dtype, each model's median forward time, the time ratio
hf_tformer / native, and the fraction of the matmul peak each reaches (the forward is ~59.6 GFLOP).
"""

import argparse
import statistics
import time
from typing import Optional

import torch
from transformers import BertConfig, BertModel

import hf_tformer as ht

SHAPE = dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072, num_hidden_layers=4)
BATCH, SEQ, VOCAB = 8, 128, 30522


def forward_flops() -> float:
    """Multiply-adds x2 of the projections, FFN and attention scores/values (what the GEMMs do)."""
    tokens, hidden, inner, layers = BATCH * SEQ, SHAPE["hidden_size"], SHAPE["intermediate_size"], SHAPE["num_hidden_layers"]
    per_layer = 2 * tokens * (4 * hidden * hidden + 2 * hidden * inner) + 2 * 2 * BATCH * SEQ * SEQ * hidden
    return layers * per_layer


def median_seconds(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(dtype: torch.dtype, repeats: int) -> tuple[float, str]:
    """Best GEMM rate torch reaches for `dtype` here: a large square torch.matmul, or a linear of the FFN's shape
    (on CPUs without native bf16, oneDNN's bf16 linear is ~50x faster than bf16 torch.matmul)."""
    size = 2048
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    square = 2 * size**3 / median_seconds(lambda: torch.matmul(a, b), max(3, repeats), warmup=1)
    x = torch.randn(BATCH * SEQ, SHAPE["hidden_size"]).to(dtype)
    w = torch.randn(SHAPE["intermediate_size"], SHAPE["hidden_size"]).to(dtype)
    linear = 2 * x.shape[0] * w.shape[0] * w.shape[1] / median_seconds(
        lambda: torch.nn.functional.linear(x, w), max(3, repeats), warmup=1
    )
    return (square, "matmul 2048^2") if square >= linear else (linear, "linear 1024x768x3072")


def build_models():
    torch.manual_seed(0)
    native = BertModel(
        BertConfig(vocab_size=VOCAB, max_position_embeddings=512, attn_implementation="sdpa", **SHAPE),
        add_pooling_layer=False,
    ).eval()
    ours = ht.TformerEncoderModel(
        ht.TformerEncoderConfig(vocab_size=VOCAB, max_position_embeddings=512, hidden_act="gelu", **SHAPE)
    ).eval()
    ours.config._attn_implementation = "sdpa"
    return native, ours


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--profile", action="store_true", help="print the top operators of each model")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    native, ours = build_models()
    ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    flops = forward_flops()
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"batch {BATCH} x {SEQ}, {flops / 1e9:.1f} GFLOP per forward")
    print(f"{'dtype':<9} {'peak GFLOP/s':>12} {'native ms':>10} {'ours ms':>9} {'ratio':>6} {'native %peak':>12} {'ours %peak':>10}")
    for dtype_name in args.dtypes.split(","):
        dtype = getattr(torch, dtype_name)
        peak, peak_source = matmul_peak(dtype, args.repeats)
        models = {"native": native.to(dtype), "ours": ours.to(dtype)}
        samples = {name: [] for name in models}
        with torch.inference_mode():
            for model in models.values():  # warm-up
                model(input_ids=ids, attention_mask=mask)
            for repeat in range(args.repeats):  # interleaved, order alternating, so drift hits both alike
                order = list(models.items()) if repeat % 2 == 0 else list(models.items())[::-1]
                for name, model in order:
                    samples[name].append(median_seconds(lambda: model(input_ids=ids, attention_mask=mask), 1, warmup=0))
            if args.profile:
                for name, model in models.items():
                    with torch.profiler.profile() as profile:
                        model(input_ids=ids, attention_mask=mask)
                    print(f"--- {name} {dtype_name}\n" + profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
        times = {name: statistics.median(values) for name, values in samples.items()}
        print(f"{dtype_name:<9} {peak / 1e9:>12.1f} {times['native'] * 1e3:>10.1f} {times['ours'] * 1e3:>9.1f} "
              f"{times['ours'] / times['native']:>6.2f} {flops / times['native'] / peak:>12.1%} {flops / times['ours'] / peak:>10.1%}"
              f"   (peak from {peak_source})")


if __name__ == "__main__":
    main()
