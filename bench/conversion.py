"""Conversion of a BERT-base-shaped checkpoint (~110M parameters, random weights): time, peak memory, load time.

    python bench/conversion.py [--repeats 5] [--layers 12]

Side by side in one run: the conversion (in a child process, so its peak RSS is its own), then the load time of
the converted checkpoint through AutoModel(trust_remote_code=True) and through the installed class vs the native BertModel.from_pretrained of the
source, interleaved (the order rotating each repeat) in one fresh process, medians reported.
Targets (issue 4): load-time ratio ours / native <= 1.0; peak RSS during conversion <= 2.5 x the weights' size.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

MIB = 1024 * 1024


def rss_status() -> dict[str, int]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, in bytes."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def reset_peak_rss() -> bool:
    """Linux lets a process reset its own VmHWM (write 5 to clear_refs), so the peak excludes the imports."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child_convert(source: str, destination: str) -> None:
    import torch  # noqa: F401  (imports counted in the baseline, not in the conversion)
    import transformers  # noqa: F401

    from hf_tformer_conversion import convert

    baseline = rss_status()["VmRSS"]
    peak_reset = reset_peak_rss()
    start = time.perf_counter()
    report = convert(source, destination, progress=False)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "baseline_rss": baseline, "peak_rss": rss_status()["VmHWM"],
                      "peak_reset": peak_reset, "max_abs_diff": report.parity.max_abs_diff}))


def child_load(source: str, converted: str, repeats: int) -> None:
    import torch
    from transformers import AutoModel, BertModel

    import hf_tformer

    torch.set_num_threads(2)
    loaders = {"native": lambda: BertModel.from_pretrained(source),
               "ours": lambda: AutoModel.from_pretrained(converted, trust_remote_code=True),
               "ours_class": lambda: hf_tformer.TformerEncoderModel.from_pretrained(converted)}
    for load in loaders.values():  # warm the page cache and the dynamic-module cache
        load()
    times = {name: [] for name in loaders}
    for repeat in range(repeats):
        order = list(loaders)[repeat % 3:] + list(loaders)[:repeat % 3]  # rotate who goes first
        for name in order:
            start = time.perf_counter()
            model = loaders[name]()
            times[name].append(time.perf_counter() - start)
            del model
    print(json.dumps({name: statistics.median(values) for name, values in times.items()}))


def run_child(*args: str) -> dict:
    result = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"child {args[0]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layers", type=int, default=12, help="12 = BERT-base (~110M parameters)")
    args = parser.parse_args(argv)

    import torch
    from transformers import BertConfig, BertModel

    with tempfile.TemporaryDirectory() as work:
        source, converted = os.path.join(work, "bert"), os.path.join(work, "converted")
        torch.manual_seed(0)
        BertModel(BertConfig(num_hidden_layers=args.layers)).save_pretrained(source)
        weights = sum(f.stat().st_size for f in Path(source).glob("*.safetensors"))
        parameters = sum(p.numel() for p in BertModel.from_pretrained(source).parameters())
        conversion = run_child("--child-convert", source, converted)
        loads = run_child("--child-load", source, converted, str(args.repeats))

    peak, baseline = conversion["peak_rss"], conversion["baseline_rss"]
    print(f"source: BertModel, {parameters / 1e6:.1f}M parameters, {weights / MIB:.0f} MiB of safetensors")
    print(f"conversion: {conversion['seconds']:.2f} s (incl. parity gate, max |diff| {conversion['max_abs_diff']:.1e})")
    print(f"peak RSS during conversion: {peak / MIB:.0f} MiB = {peak / weights:.2f} x the weights "
          f"(process after imports: {baseline / MIB:.0f} MiB; above it: {(peak - baseline) / MIB:.0f} MiB = "
          f"{(peak - baseline) / weights:.2f} x){'' if conversion['peak_reset'] else ' [peak includes imports]'}")
    native = loads["native"]
    print(f"load time, median of {args.repeats}: native BertModel.from_pretrained {native * 1000:.0f} ms")
    print(f"  hf_tformer via AutoModel(trust_remote_code=True) {loads['ours'] * 1000:.0f} ms, "
          f"ratio {loads['ours'] / native:.2f}")
    print(f"  hf_tformer via the installed class {loads['ours_class'] * 1000:.0f} ms, "
          f"ratio {loads['ours_class'] / native:.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child-convert":
        child_convert(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-load":
        child_load(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
