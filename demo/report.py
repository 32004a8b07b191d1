"""The demo's outputs: loss curves (PNG), a Markdown report and a JSON summary, all from one summary dict."""

import json
import math
from pathlib import Path
from typing import Optional


def display(output: dict) -> str:
    """One pipeline output as a short string: 'POSITIVE (0.998)', the generated text or the transcript."""
    if "label" in output:
        return f"{output['label']} ({output['score']:.3f})"
    if "text" in output:  # automatic-speech-recognition (Whisper transcripts start with a space)
        return output["text"].strip()
    return output["generated_text"].strip()  # text-generation without the prompt starts with its space


def shown_input(value: str) -> str:
    """An example input in a table cell: the text, an image file (relative to the report) shown inline, or a link
    to an audio file."""
    if value.endswith(".png"):
        return f"![{value}]({value})"
    return f"[{value}]({value})" if value.endswith(".wav") else value


def format_diff(value: float | None) -> str:
    """A max-abs difference, or '-' where the export failed before measuring one."""
    return "-" if value is None else f"{value:.1e}"


def smoothed(values: list[float], window: int) -> list[float]:
    """Trailing moving geometric mean: on a log axis, single spikes do not lift a whole window."""
    logs = [math.log(max(value, 1e-12)) for value in values]
    out, total = [], 0.0
    for index, value in enumerate(logs):
        total += value - (logs[index - window] if index >= window else 0.0)
        out.append(math.exp(total / min(index + 1, window)))
    return out


def plot_losses(variants: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    columns = min(3, len(variants))
    rows = math.ceil(len(variants) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5 * columns, 3.8 * rows), squeeze=False)
    for axis in axes.flat[len(variants):]:
        axis.set_visible(False)
    for axis, result in zip(axes.flat, variants):
        losses = result["losses"]
        steps = range(1, len(losses) + 1)
        axis.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8, label="per step")
        axis.plot(steps, smoothed(losses, max(1, len(losses) // 30)), color="tab:blue", linewidth=1.8,
                  label="moving geometric mean")
        axis.set_yscale("log")
        axis.set_title(f"{result['variant']}: {result['short_task']}", fontsize=11)
        axis.set_xlabel("training step")
        axis.set_ylabel("loss (log scale)")
        axis.grid(True, which="both", alpha=0.3)
        axis.text(0.97, 0.95, f"final loss {result['final_loss']:.4f}\n{result['metric_name']} "
                  f"{result['metric']:.1%}", transform=axis.transAxes, ha="right", va="top", fontsize=9,
                  bbox=dict(boxstyle="round", facecolor="white", alpha=0.8))
        axis.legend(loc="lower left", fontsize=8)
    figure.suptitle("hf_tformer demo: training loss of each variant", fontsize=12)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def verdict(summary: dict) -> str:
    """'ALL CHECKS PASSED (n/m)' or 'SOME CHECKS FAILED (n/m)', saying what --quick skipped: a quick run does not
    check held-out quality, and must not read as if it did."""
    checks = summary["checks"]
    passed = sum(c["passed"] is True for c in checks)
    skipped = [c for c in checks if c["passed"] is None]
    text = f"{'ALL CHECKS PASSED' if summary['all_passed'] else 'SOME CHECKS FAILED'} ({passed}/{len(checks)}"
    if skipped:
        names = ", ".join(sorted({c["name"] for c in skipped}))
        text += f"; {len(skipped)} skipped by --quick: {names}; run without --quick to check them"
    return text + ")"


def _status(passed: Optional[bool]) -> str:
    return "skipped (--quick)" if passed is None else "PASS" if passed else "**FAIL**"


def markdown(summary: dict, png_name: str) -> str:
    lines = [
        "# hf_tformer demo: tiny models trained on CPU, reloaded as remote code, run on ONNX Runtime", "",
        f"Mode: **{summary['mode']}**, seed {summary['seed']}, {summary['torch_threads']} torch thread(s) for "
        f"training, CPU capability {summary['cpu_capability']}; torch {summary['versions']['torch']}, transformers "
        f"{summary['versions']['transformers']}, onnxruntime "
        f"{summary['versions']['onnxruntime']}. Total wall time **{summary['total_seconds']:.0f} s** (of which the "
        f"fresh reload process, interpreter start and imports included: {summary['reload_process_seconds']:.1f} s).",
        "",
        f"**{verdict(summary)}**.", "",
        f"![training loss]({png_name})", "",
        "| variant | task | parameters | steps | train s | final loss | held-out metric | reload identical | "
        "ONNX max abs diff | ONNX greedy identical |",
        "|---|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in summary["variants"]:
        greedy = r["onnx"]["greedy_identical"]
        lines.append(
            f"| {r['variant']} | {r['task']} | {r['parameters']:,} | {r['steps']} | {r['timings']['train']:.1f} | "
            f"{r['final_loss']:.4f} | {r['metric_name']}: **{r['metric']:.1%}** ({r['held_out_size']} examples) | "
            f"{r['reload']['logits_identical'] and r['reload']['pipeline_identical']} | "
            f"{format_diff(r['onnx']['max_abs_diff'])} | {'n/a (classifier)' if greedy is None else greedy} |")
    for r in summary["variants"]:
        lines += ["", f"## {r['variant']}: {r['task']}", "",
                  f"`{r['model_class']}`, {r['parameters']:,} parameters, {r['tokenizer']}; trained "
                  f"{r['steps']} steps × batch {r['batch_size']} (AdamW, lr {r['lr']}). Loss {r['initial_loss']:.3f} "
                  f"→ {r['final_loss']:.4f} (mean of the last {r['final_window']} steps). {r['note']}", "",
                  f"Reloaded in a fresh process without hf_tformer as `{r['reload']['class']}` "
                  f"(`{r['auto_class']}.from_pretrained(..., trust_remote_code=True)`); pipeline "
                  f"`{r['pipeline_task']}` on held-out inputs:", "",
                  "| input | expected | reloaded pipeline | ONNX Runtime pipeline |", "|---|---|---|---|"]
        lines += [f"| {shown_input(e['input'])} | {e['expected']} | {e['reloaded']} | {e['onnx']} |"
                  for e in r["examples"]]
        t = r["timings"]
        lines += ["", f"Timings: train {t['train']:.1f} s, held-out evaluation {t['evaluate']:.1f} s, save "
                  f"{t['save']:.2f} s, reload {r['reload']['load_seconds']:.2f} s, pipeline from the folder "
                  f"(load + {len(r['examples'])} inputs) {r['reload']['pipeline_seconds']:.2f} s, ONNX export + validation {t['onnx_export']:.1f} s, "
                  f"ONNX Runtime pipeline {t['onnx_run']:.2f} s. ONNX files: {', '.join(r['onnx']['files'])} "
                  f"({r['onnx']['fused_attention_nodes']} fused attention nodes)."]
    lines += ["", "## Checks", "", "| variant | check | result | detail |", "|---|---|---|---|"]
    lines += [f"| {c['variant']} | {c['name']} | {_status(c['passed'])} | {c['detail']} |" for c in summary["checks"]]
    return "\n".join(lines) + "\n"


def write_outputs(summary: dict, folder: Path) -> dict[str, Path]:
    """loss_curves.png, report.md and summary.json in `folder`; returns their paths by kind."""
    paths = {"png": folder / "loss_curves.png", "report": folder / "report.md", "summary": folder / "summary.json"}
    plot_losses(summary["variants"], paths["png"])
    paths["report"].write_text(markdown(summary, paths["png"].name))
    paths["summary"].write_text(json.dumps(summary, indent=1))
    return paths
