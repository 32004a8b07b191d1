"""GPU attention: hf_tformer vs BertModel and LlamaModel with SDPA, converted weights, side by side in one run.

    hf-tformer bench gpu-attention [--device cuda|cpu] [--dtype bfloat16] [--seqs 512,2048,8192] [--repeats 10]
                                   [--quick] [--skip flex_attention,...] [--threads N] [--out gpu_attention.json]

Where the package is not installed (a bare GPU machine): `python3 -m pip install -q --no-deps --no-build-isolation
-e . && hf-tformer bench gpu-attention --out gpu_attention.json` (BENCHMARKS.md: a fallback without pip).
Random BertModel (BERT-base: 12 x 768, 12 heads) and LlamaModel (16 x 2048, 32 heads, 8 kv heads, ffn 8192) are
saved in the bench dtype and converted with hf_tformer_conversion, so both sides run the same weights. Sections
(each a markdown table, all in --out's JSON, rewritten after every section; a failing one is recorded, the rest run):
1. forward ms, ours / native, batch 1, no attention_mask (ours also with an all-ones one and, decoder, without a
   cache), per sequence length (median of interleaved synced runs), and max |diff| ours vs native;
2. which SDPA kernel ran (aten op names in a torch.profiler trace) and the mask each side handed SDPA: no
   attention_mask, an all-ones one, a padded batch; (cuda) the unpadded cases again with SDPA restricted to flash;
3. peak CUDA memory of a forward per length (cuda only), and its growth from one length to the next;
4. model FLOPs / time / the measured dtype matmul peak;
5. ours under sdpa / eager / flex_attention / flash_attention_2 in the bench dtype vs ours in float32 eager, padded
   batch, max |diff| over unpadded positions (pass <= 2e-2 x max(1, max |output|): bf16 rounds an output
   of size 4 by up to 1.6e-2 alone).
--quick: tiny models, lengths 64,128, 3 repeats (a CPU smoke run; its figures are no result).
"""

import argparse
import math
import tempfile
import traceback
from pathlib import Path
from typing import Optional

import torch

from hf_tformer_bench import gpu_measure as gm

FULL = {
    "encoder": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                    vocab_size=30522),
    "decoder": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                    intermediate_size=8192, vocab_size=32000),
}
QUICK = {
    "encoder": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, vocab_size=512),
    "decoder": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=128, vocab_size=512),
}
IMPLEMENTATIONS = ("sdpa", "eager", "flex_attention", "flash_attention_2")
TOLERANCE = 2e-2
MASKS = ("none", "ones", "padded")


def build(kind: str, shape: dict, max_seq: int, dtype: torch.dtype, device: torch.device, work: Path):
    """(native, ours) on `device` in `dtype`: a random native model saved in `dtype`, converted, both loaded."""
    import transformers

    import hf_tformer as ht
    from hf_tformer_conversion import convert

    torch.manual_seed(0)
    with torch.device(device):  # random init on the device: seconds instead of a minute for 1B parameters on CPU
        if kind == "encoder":
            config = transformers.BertConfig(max_position_embeddings=max_seq, attn_implementation="sdpa", **shape)
            native = transformers.BertModel(config, add_pooling_layer=False)
        else:
            config = transformers.LlamaConfig(max_position_embeddings=max_seq, attn_implementation="sdpa", **shape)
            native = transformers.LlamaModel(config)
    native.to(dtype).eval().save_pretrained(work / kind)
    small = sum(p.numel() for p in native.parameters()) < 50_000_000
    convert(str(work / kind), str(work / f"{kind}-ours"), progress=False, verify=small)  # gate: CPU-sized only
    target = ht.TformerEncoderModel if kind == "encoder" else ht.TformerDecoderModel
    ours = target.from_pretrained(work / f"{kind}-ours", attn_implementation="sdpa")
    return native, ours.to(device=device, dtype=dtype).eval()


def inputs(vocab: int, batch: int, seq: int, device: torch.device, mask: str) -> dict:
    """input_ids, and an attention_mask unless mask == "none": "ones" (what a tokenizer returns for unpadded
    text) or "padded" (the last row's final quarter is padding)."""
    if mask not in MASKS:
        raise ValueError(f"mask={mask!r} is not one of {MASKS}")
    generator = torch.Generator().manual_seed(seq)
    ids = torch.randint(3, vocab, (batch, seq), generator=generator)
    if mask == "none":
        return {"input_ids": ids.to(device)}
    attention_mask = torch.ones_like(ids)
    if mask == "padded":
        attention_mask[-1, seq - seq // 4:] = 0
    return {"input_ids": ids.to(device), "attention_mask": attention_mask.to(device)}


def runner(model, batch: dict, **kwargs):
    return lambda: model(**batch, **kwargs).last_hidden_state


def cases(kind: str) -> list[tuple[str, dict]]:
    """(mask, forward kwargs) of section 2; the decoder also without a cache (a cache forces our explicit mask)."""
    return [(mask, {}) for mask in MASKS] + ([("none", {"use_cache": False})] if kind == "decoder" else [])


def forward_section(models: dict, seqs: list[int], args, device, results: dict) -> None:
    rows, table = [], []
    for kind, (native, ours, shape) in models.items():
        for seq in seqs:
            batch, ones = (inputs(shape["vocab_size"], 1, seq, device, mask) for mask in ("none", "ones"))
            with torch.inference_mode():
                diff = float((runner(ours, batch)() - runner(native, batch)()).float().abs().max())
                runners = {"native": runner(native, batch), "ours": runner(ours, batch),
                           "ours_ones_mask": runner(ours, ones)}
                if kind == "decoder":
                    runners["ours_no_cache"] = runner(ours, batch, use_cache=False)
                times = gm.timed_ms(runners, args.repeats, device)
            ms = {name: gm.median(values) for name, values in times.items()}
            rows.append(dict(model=kind, seq=seq, batch=1, native_ms=ms["native"], ours_ms=ms["ours"],
                             ratio=ms["ours"] / ms["native"], max_abs_diff=diff,
                             **{f"{name}_ms": ms[name] for name in ms if name.startswith("ours_")}))
            table.append([kind, seq, f"{ms['native']:.2f}", f"{ms['ours']:.2f}", f"{ms['ours'] / ms['native']:.3f}",
                          *(f"{ms[name]:.2f} ({ms[name] / ms['native']:.3f})" if name in ms else "-"
                            for name in ("ours_ones_mask", "ours_no_cache")), f"{diff:.1e}"])
    results["forward"] = rows
    print("\n## 1. Forward, batch 1, no attention_mask, config's use_cache, median ms of interleaved synced runs; "
          "ours also with an all-ones mask and (decoder) use_cache=False, (ratio to native)\n")
    print(gm.table(["model", "seq", "native ms", "ours ms", "ours / native", "ours, all-ones mask",
                    "ours, use_cache=False", "max abs diff"], table), flush=True)


def backend_section(models: dict, seq: int, device, results: dict) -> None:
    rows, table = [], []
    for kind, (native, ours, shape) in models.items():
        for mask, kwargs in cases(kind):
            batch = inputs(shape["vocab_size"], 2, seq, device, mask)
            both = (("ours", runner(ours, batch, **kwargs)), ("native", runner(native, batch, **kwargs)))
            common = dict(model=kind, mask=mask, use_cache=kwargs.get("use_cache", "default"), seq=seq)
            with torch.inference_mode():
                found = {name: gm.sdpa_kernels(run, device) for name, run in both}
                masks = {f"{name}_sdpa_mask": gm.sdpa_masks(run) for name, run in both}
                rows.append(dict(common, forced_flash=False, **found, **masks))
                if device.type == "cuda" and mask != "padded":
                    forced = {name: gm.forced_kernels(run, device) for name, run in both}
                    rows.append(dict(common, forced_flash=True, **forced))
    for row in rows:
        case = {"none": "no mask", "ones": "all-ones mask", "padded": "padded"}[row["mask"]]
        case += ", use_cache=False" if row["use_cache"] is False else ""
        case += ", SDPA restricted to flash" if row["forced_flash"] else ""
        table.append([row["model"], case, row["seq"], ", ".join(row["ours"]) or "none",
                      ", ".join(row["native"]) or "none", "; ".join(row.get("ours_sdpa_mask", ["-"])),
                      "; ".join(row.get("native_sdpa_mask", ["-"]))])
    results["backends"] = rows
    print(f"\n## 2. SDPA kernel that ran (aten ops under torch.profiler), batch 2, {seq} tokens\n")
    print(gm.table(["model", "case", "seq", "ours kernel", "native kernel", "mask ours hands SDPA",
                    "mask native hands SDPA"], table), flush=True)


def memory_section(models: dict, seqs: list[int], device, results: dict) -> None:
    print("\n## 3. Peak memory of a forward (MiB above weights and inputs), growth vs the previous length\n")
    if device.type != "cuda":
        results["memory"] = {"available": False, "note": "n/a (cuda only)"}
        print("n/a (cuda only)", flush=True)
        return
    rows, table = [], []
    for kind, (native, ours, shape) in models.items():
        for padded in (False, True):
            previous = None
            for seq in seqs:
                batch = inputs(shape["vocab_size"], 2 if padded else 1, seq, device, "padded" if padded else "none")
                with torch.inference_mode():
                    peak = {name: gm.peak_mib(runner(model, batch), device)
                            for name, model in (("native", native), ("ours", ours))}
                growth = {name: peak[name] / previous[name] if previous and previous[name] else None for name in peak}
                previous = peak
                rows.append(dict(model=kind, seq=seq, padded=padded, native_mib=peak["native"], ours_mib=peak["ours"],
                                 native_growth=growth["native"], ours_growth=growth["ours"]))
                table.append([kind, "batch 2, padded" if padded else "batch 1", seq, f"{peak['native']:.0f}",
                              f"{peak['ours']:.0f}", *(f"x{g:.2f}" if g else "-" for g in growth.values())])
    results["memory"] = {"available": True, "rows": rows}
    header = ["model", "batch", "seq", "native MiB", "ours MiB", "native growth", "ours growth"]
    print(gm.table(header, table), flush=True)


def peak_section(models: dict, args, device, dtype, results: dict) -> None:
    size = 1024 if device.type == "cpu" else 8192
    peak = gm.matmul_peak_flops(device, dtype, size, args.repeats)
    rows, table = [], []
    for row in results["forward"]:
        native, _, shape = models[row["model"]]
        flops = gm.forward_flops(gm.linear_parameters(native), shape["num_hidden_layers"], shape["hidden_size"],
                                 row["batch"], row["seq"], causal=row["model"] == "decoder")
        fractions = {name: flops / (row[f"{name}_ms"] / 1000) / peak for name in ("native", "ours")}
        rows.append(dict(model=row["model"], seq=row["seq"], gflop=flops / 1e9, native_fraction=fractions["native"],
                         ours_fraction=fractions["ours"]))
        table.append([row["model"], row["seq"], f"{flops / 1e9:.3g}", f"{fractions['native']:.1%}",
                      f"{fractions['ours']:.1%}"])
    results["peak_fraction"] = {"matmul_size": size, "matmul_tflops": peak / 1e12, "rows": rows}
    print(f"\n## 4. Fraction of the measured {args.dtype} matmul peak ({size}^3: {peak / 1e12:.2f} TFLOP/s)\n")
    print(gm.table(["model", "seq", "GFLOP", "native", "ours"], table), flush=True)


def flash_attn_missing(device: torch.device) -> Optional[str]:
    """Why flash_attention_2 cannot run on `device`, or None when it can."""
    if device.type != "cuda":
        return "needs CUDA"
    try:
        import flash_attn  # noqa: F401
    except ImportError as error:
        return f"flash_attn not importable ({error})"
    return None


def agreement_section(models: dict, seq: int, args, device, dtype, results: dict) -> None:
    rows, table = [], []
    for kind, (_, ours, shape) in models.items():
        batch = inputs(shape["vocab_size"], 2, seq, device, "padded")
        keep = batch["attention_mask"].bool()
        with torch.inference_mode():
            ours.float().config._attn_implementation = "eager"
            reference = ours(**batch).last_hidden_state[keep]
            tolerance = TOLERANCE * max(1.0, float(reference.abs().max()))  # bf16 keeps ~3 digits of the output
            ours.to(dtype)
            for implementation in IMPLEMENTATIONS:
                reason = "--skip" if implementation in args.skip else None
                if implementation == "flash_attention_2" and reason is None:
                    reason = flash_attn_missing(device) or (None if dtype != torch.float32 else "needs fp16/bf16")
                if reason:
                    rows.append(dict(model=kind, implementation=implementation, seq=seq, skipped=reason))
                    table.append([kind, implementation, seq, "-", "-", f"skipped: {reason}"])
                    continue
                ours.config._attn_implementation = implementation
                try:
                    diff = float((ours(**batch).last_hidden_state[keep].float() - reference).abs().max())
                except Exception as error:  # recorded as a failure; the other implementations still run
                    rows.append(dict(model=kind, implementation=implementation, seq=seq, passed=False,
                                     error=f"{type(error).__name__}: {error}"[:300]))
                    table.append([kind, implementation, seq, "-", "-", f"FAIL: {rows[-1]['error'][:120]}"])
                    continue
                passed = math.isfinite(diff) and diff <= tolerance
                rows.append(dict(model=kind, implementation=implementation, seq=seq, max_abs_diff=diff,
                                 tolerance=tolerance, passed=passed))
                table.append([kind, implementation, seq, f"{diff:.1e}", f"{tolerance:.1e}",
                              "pass" if passed else "FAIL"])
        ours.config._attn_implementation = "sdpa"
    results["agreement"] = rows
    print(f"\n## 5. Ours in {args.dtype} vs ours in float32 eager, padded batch 2 x {seq}, unpadded positions "
          f"(pass: max abs diff <= {TOLERANCE} x max(1, max abs output))\n")
    print(gm.table(["model", "implementation", "seq", "max abs diff", "tolerance", "result"], table), flush=True)


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    parser.add_argument("--seqs", help="comma-separated lengths (default 512,2048,8192; --quick: 64,128)")
    parser.add_argument("--repeats", type=int, help="timed runs per contender (default 10; --quick: 3)")
    parser.add_argument("--quick", action="store_true", help="tiny models, short lengths: a CPU smoke run")
    parser.add_argument("--skip", default="", help=f"comma-separated implementations section 5 leaves out "
                        f"(of {','.join(IMPLEMENTATIONS)}), reported as skipped")
    parser.add_argument("--out", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--threads", type=int, help="CPU threads (torch.set_num_threads); default: torch's")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda.is_available() is False here; use --device cpu")
    args.skip = [name for name in args.skip.split(",") if name]
    unknown = sorted(set(args.skip) - set(IMPLEMENTATIONS))
    if unknown:
        parser.error(f"--skip {','.join(unknown)}: not one of {','.join(IMPLEMENTATIONS)}")
    seqs = [int(value) for value in (args.seqs or ("64,128" if args.quick else "512,2048,8192")).split(",")]
    args.repeats = args.repeats or (3 if args.quick else 10)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    shapes = QUICK if args.quick else FULL
    import transformers

    results = {"environment": dict(torch=torch.__version__, transformers=transformers.__version__,
                                   device=torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                                   dtype=args.dtype, quick=args.quick, seqs=seqs, repeats=args.repeats)}
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {results['environment']['device']}, "
          f"{args.dtype}, lengths {seqs}, {args.repeats} repeats{' (--quick smoke run)' if args.quick else ''}")

    def save() -> None:
        if args.out:
            gm.write_json(args.out, results)

    with tempfile.TemporaryDirectory() as folder:
        models = {kind: (*build(kind, shape, max(seqs), dtype, device, Path(folder)), shape)
                  for kind, shape in shapes.items()}
    agreement_seq = max(seqs) if args.quick else min(2048, max(seqs))
    sections = {  # one failing section (an out-of-memory, a kernel error) leaves the others' figures standing
        "forward": lambda: forward_section(models, seqs, args, device, results),
        "backends": lambda: backend_section(models, agreement_seq, device, results),
        "memory": lambda: memory_section(models, seqs, device, results),
        "peak_fraction": lambda: peak_section(models, args, device, dtype, results),
        "agreement": lambda: agreement_section(models, agreement_seq, args, device, dtype, results),
    }
    failed = []
    for name, section in sections.items():
        try:
            section()
        except Exception as error:  # reported below and in the JSON, and the run ends with an error
            traceback.print_exc()
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            failed.append(name)
        save()
    if failed:
        raise ValueError(f"sections {', '.join(failed)} failed (tracebacks above; their JSON entries hold the error)")


if __name__ == "__main__":
    main()
