"""Long context: peak memory and time of a decoder forward at 1k / 4k / 16k tokens, full vs sliding-window
attention, and the sliding-window decoder vs transformers' MistralForCausalLM at a prompt of 4x the window.

    python bench/long_context.py [--threads 2] [--lengths 1024,4096,16384] [--window 256] [--repeats 3]

Each memory point runs in a fresh subprocess and reports the growth of its peak RSS (`resource.getrusage` maxrss)
over the RSS it had with the model built, i.e. what the forward itself allocated at its peak (activations, masks,
attention scratch); tracemalloc does not see torch's allocations. Tiny hidden sizes keep 16k tokens in memory.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

import torch

SHAPE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=65536)


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def _build(kind: str, window: int):
    """kind: ours-full | ours-sliding | mistral (transformers' own class, the same shape and window)."""
    import transformers

    import hf_tformer as ht

    torch.manual_seed(0)
    if kind == "mistral":
        config = transformers.MistralConfig(**SHAPE, sliding_window=window, rope_theta=10000.0,
                                            attn_implementation="sdpa")
        return transformers.MistralForCausalLM(config).eval()
    config = ht.TformerDecoderConfig(
        **SHAPE, hidden_act="swiglu", position_embedding_type="rotary", norm_type="rmsnorm", attention_bias=False,
        mlp_bias=False, hidden_dropout=0.0, attention_dropout=0.0, tie_word_embeddings=False,
        sliding_window=window if kind == "ours-sliding" else None)
    config._attn_implementation = "sdpa"
    return ht.TformerDecoderForCausalLM(config).eval()


def measure_point(kind: str, length: int, window: int) -> dict:
    """In this (fresh) process: one forward of `length` tokens; peak RSS growth and time."""
    model = _build(kind, window)
    ids = torch.randint(0, SHAPE["vocab_size"], (1, length), generator=torch.Generator().manual_seed(0))
    before = _rss_mib()
    start = time.perf_counter()
    with torch.inference_mode():
        model(ids, use_cache=False, logits_to_keep=1)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"kind": kind, "length": length, "peak_mib": max(peak - before, 0.0), "seconds": seconds}


def _in_subprocess(kind: str, length: int, window: int, threads: int) -> dict:
    code = (f"import torch, json; torch.set_num_threads({threads}); from hf_tformer_bench.long_context import "
            f"measure_point; print(json.dumps(measure_point({kind!r}, {length}, {window})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    if result.returncode:
        return {"kind": kind, "length": length, "error": result.stderr.strip().splitlines()[-1]}
    return json.loads(result.stdout.strip().splitlines()[-1])


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def versus_mistral(window: int, repeats: int, new_tokens: int = 32) -> dict:
    """Mistral converted through the parity gate; prefill of 4x the window, and greedy decoding past it."""
    import transformers

    from hf_tformer_conversion import convert

    native = _build("mistral", window)
    with tempfile.TemporaryDirectory() as folder:
        native.save_pretrained(f"{folder}/mistral")
        convert(f"{folder}/mistral", f"{folder}/ours", progress=False)
        ours = transformers.AutoModelForCausalLM.from_pretrained(f"{folder}/ours", trust_remote_code=True).eval()
    ids = torch.randint(0, SHAPE["vocab_size"], (1, 4 * window), generator=torch.Generator().manual_seed(1))
    generate = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    models = {"native": native, "ours": ours}
    samples = {name: {"prefill": [], "generate": []} for name in models}
    with torch.inference_mode():
        tokens = {name: model.generate(ids, **generate) for name, model in models.items()}  # also the warm-up
        for repeat in range(repeats):  # interleaved, order alternating, so drift hits both alike
            for name, model in (list(models.items()) if repeat % 2 == 0 else list(models.items())[::-1]):
                samples[name]["prefill"].append(_seconds(lambda: model(ids, logits_to_keep=1)))
                samples[name]["generate"].append(_seconds(lambda: model.generate(ids, **generate)))
    times = {name: {k: statistics.median(v) for k, v in parts.items()} for name, parts in samples.items()}
    return {"prompt": ids.shape[1], "new_tokens": new_tokens, "times": times,
            "greedy_identical": torch.equal(tokens["native"], tokens["ours"])}


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", default="1024,4096,16384")
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, SDPA, batch 1, hidden {SHAPE['hidden_size']}, "
          f"{SHAPE['num_hidden_layers']} layers, window {args.window}")
    print(f"{'tokens':>7} {'kind':<13} {'peak MiB':>9} {'seconds':>8}")
    for length in (int(value) for value in args.lengths.split(",")):
        for kind in ("ours-full", "ours-sliding", "mistral"):
            point = _in_subprocess(kind, length, args.window, args.threads)
            if "error" in point:
                print(f"{length:>7} {kind:<13} error: {point['error']}")
                continue
            print(f"{length:>7} {kind:<13} {point['peak_mib']:>9.1f} {point['seconds']:>8.3f}")
    result = versus_mistral(args.window, args.repeats)
    times = result["times"]
    print(f"\nprompt {result['prompt']} tokens (4x window {args.window}), {result['new_tokens']} greedy tokens, "
          f"greedy identical: {result['greedy_identical']}")
    print(f"{'':<10} {'native s':>9} {'ours s':>8} {'ours/native':>11}")
    for part in ("prefill", "generate"):
        native, ours = times["native"][part], times["ours"][part]
        print(f"{part:<10} {native:>9.3f} {ours:>8.3f} {ours / native:>11.2f}")


if __name__ == "__main__":
    main()
