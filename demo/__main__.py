"""The end-to-end demo (README command 1): train a tiny model of each variant on CPU, then use it as a user would.

For the encoder (sentiment), the decoder (list continuation), the encoder-decoder (date formatting), the image
encoder (patterns), the dual encoder (zero-shot pattern names) and the speech model (tone sequences transcribed as
words): train on generated data (seeded, nothing downloaded), measure a held-out metric, save (safetensors + remote
code + tokenizer / processor); reload every checkpoint with AutoModel*.from_pretrained(..., trust_remote_code=True)
in a fresh process where hf_tformer is not importable, check it reproduces the trained model bit for bit and run a
pipeline on it; export to ONNX, validate against PyTorch and run the same pipeline on ONNX Runtime. Writes
loss_curves.png, report.md and summary.json (atomically: built beside --out, renamed at the end).

    python -m hf_tformer_demo [--out DIR] [--force] [--quick] [--no-progress]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path


OUTPUT_MARKERS = ("summary.json",)  # what marks an earlier demo output, which --force may replace


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hf_tformer_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("demo_output"),
                        help="folder for the checkpoints, ONNX exports and report (default: demo_output)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--quick", action="store_true",
                        help="smoke mode: a few hundred training steps at most, every other stage as in full")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def say(message: str) -> None:
    print(message, flush=True)


def environment() -> dict:
    from importlib import metadata

    import onnxruntime
    import torch

    versions = {name: metadata.version(name) for name in ("torch", "transformers")}
    return {"versions": {**versions, "onnxruntime": onnxruntime.__version__},
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}


def run(args: argparse.Namespace, staging: Path, scratch: Path) -> dict:
    """Every stage, writing into `staging`; returns the summary the report is built from."""
    from .checks import reload_in_fresh_process
    from .report import write_outputs
    from .stages import SEED, add_onnx, add_reload, checks, train_and_save
    from .variants import VARIANTS

    start = time.perf_counter()
    trained = []
    for number, variant in enumerate(VARIANTS, 1):
        steps = variant.quick_steps if args.quick else variant.steps
        say(f"[{number}/{len(VARIANTS)}] {variant.name}: {variant.task}; training {steps} steps")
        trained.append(train_and_save(variant, staging / variant.name, scratch, steps, not args.no_progress))
        result = trained[-1].result
        say(f"      loss {result['initial_loss']:.3f} -> {result['final_loss']:.4f} in "
            f"{result['timings']['train']:.1f} s; {result['metric_name']} {result['metric']:.1%}")
    say("reloading every checkpoint with trust_remote_code=True in a fresh process without hf_tformer ...")
    reload_start = time.perf_counter()
    reloaded = reload_in_fresh_process([t.reload_item for t in trained], scratch)
    reload_seconds = time.perf_counter() - reload_start
    for t in trained:
        add_reload(t.result, reloaded[t.result["variant"]])
    for variant, t in zip(VARIANTS, trained):
        say(f"exporting {variant.name} to ONNX ({variant.onnx_task}), validating, running it on ONNX Runtime ...")
        add_onnx(variant, t, staging / variant.name, staging / "onnx" / variant.name)
    results = [t.result for t in trained]
    all_checks = [line for result in results for line in checks(result, args.quick)]
    summary = {"mode": "quick" if args.quick else "full", "seed": SEED, **environment(),
               "total_seconds": time.perf_counter() - start, "reload_process_seconds": reload_seconds,
               "variants": results, "checks": all_checks,
               "all_passed": all(line["passed"] is not False for line in all_checks),  # skipped (None) is no pass
               "skipped": sum(line["passed"] is None for line in all_checks)}
    write_outputs(summary, staging)
    return summary


def print_summary(summary: dict, out: Path) -> None:
    from .report import format_diff, verdict

    say(f"\n{'variant':<16} {'held-out metric':<42} {'final loss':>10} {'train s':>8} {'ONNX max|diff|':>15}")
    for r in summary["variants"]:
        metric = f"{r['metric_name']} {r['metric']:.1%}"
        say(f"{r['variant']:<16} {metric:<42} {r['final_loss']:>10.4f} {r['timings']['train']:>8.1f} "
            f"{format_diff(r['onnx']['max_abs_diff']):>15}")
    say("\nheld-out examples through the reloaded pipeline (input -> output | expected):")
    for r in summary["variants"]:
        for e in r["examples"]:
            say(f"  {r['variant']:<16} {e['input']!r} -> {e['reloaded']!r} | {e['expected']!r}")
    failed = [c for c in summary["checks"] if c["passed"] is False]
    for c in failed:
        say(f"FAILED: {c['variant']}: {c['name']} ({c['detail']})")
    say(f"\n{verdict(summary)} in {summary['total_seconds']:.0f} s; report: {out / 'report.md'}")



def preflight() -> None:
    """Fail before minutes of training, not after: the ONNX stage and the loss plot need their libraries."""
    from importlib.util import find_spec

    from hf_tformer_export.__main__ import require_onnx_runtime

    require_onnx_runtime()  # a ValueError naming the missing package and the install command
    if find_spec("matplotlib") is None:
        raise ValueError("matplotlib is not installed; the demo plots the loss curves with it: "
                         "pip install 'matplotlib>=3.8' (or the package's demo extra).")


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when every check passed, 1 when one failed (the report is written either way), 2 when --out
    exists without --force or a library is missing."""
    args = parse(argv)
    from hf_tformer_conversion.quiet import quiet_import_warnings

    quiet_import_warnings()
    from hf_tformer_conversion.staging import check_destination, staged_folder

    try:
        check_destination(args.out, args.force, markers=OUTPUT_MARKERS)
        preflight()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    import torch
    import transformers

    # Models this small are bound by per-op overhead, where a second thread adds synchronisation, not speed (3-8x
    # slower per step than one thread on a busy 2-core machine); one thread also keeps results core-count free.
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    with staged_folder(args.out, args.force, markers=OUTPUT_MARKERS) as staging, \
            tempfile.TemporaryDirectory() as scratch:
        summary = run(args, staging, Path(scratch))
    print_summary(summary, args.out)
    return 0 if summary["all_passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
