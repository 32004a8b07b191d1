"""The demo's stages for one variant (train + save, then ONNX) and the checks over everything they measured."""

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .checks import export_and_run_onnx, outputs_match, reference_inputs
from .reload_check import first_output, make_pipeline, pipeline_input
from .report import display, format_diff
from .train import fit
from .variants import Variant

SEED = 0
QUALITY_FLOOR = 0.9  # the full demo's held-out metric must reach this (quick mode trains too briefly to ask it)
EXAMPLES = 4  # held-out inputs shown through the reloaded pipeline
ONNX_ATOL = 1e-4  # hf_tformer_export's fp32 validation bound
RELOAD_SCORE_ATOL = 1e-6


@dataclass
class Trained:
    result: dict  # what the report shows (JSON-serialisable)
    tokenizer: object
    reload_item: dict  # what the fresh process needs (see checks.reload_in_fresh_process)


def pick(values: list, count: int) -> list:
    """`count` items spread evenly over `values` (held-out sets are grouped or shuffled: this mixes both)."""
    return [values[index * len(values) // count] for index in range(min(count, len(values)))]


def preprocessor_name(preprocessor) -> str:
    """'WordPiece tokenizer' (a fast tokenizer's model) or the class name ('ViTImageProcessor')."""
    backend = getattr(preprocessor, "backend_tokenizer", None)
    return f"{type(backend.model).__name__} tokenizer" if backend else type(preprocessor).__name__


def train_and_save(variant: Variant, folder: Path, scratch: Path, steps: int, progress: bool) -> Trained:
    """Train, evaluate on held-out data, run the pipeline in process, save checkpoint + tokenizer to `folder`."""
    torch.manual_seed(SEED)
    task_data = variant.data()
    tokenizer, model = variant.build(task_data)
    start = time.perf_counter()
    losses = fit(model, variant.encode(tokenizer, task_data.train), steps=steps, batch_size=variant.batch_size,
                 lr=variant.lr, seed=SEED, progress=progress, description=f"{variant.name}: train",
                 forward_kwargs=variant.forward_kwargs)
    timings = {"train": time.perf_counter() - start}
    start = time.perf_counter()
    metric = variant.evaluate(model, tokenizer, task_data.held_out)
    timings["evaluate"] = time.perf_counter() - start
    examples, targets = pick(task_data.held_out.inputs, EXAMPLES), pick(task_data.held_out.targets, EXAMPLES)
    shown = examples
    if variant.example_files:  # images, audio: written as files the pipelines read; the report shows their paths
        examples = variant.example_files(examples, folder.parent / "examples" / variant.name)
        shown = [str(Path(path).relative_to(folder.parent)) for path in examples]
    pipe = make_pipeline(variant.pipeline_task, model, **variant.pipeline_preprocessors(tokenizer))
    in_process = [first_output(pipe(pipeline_input(example), **variant.pipeline_kwargs)) for example in examples]
    start = time.perf_counter()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    timings["save"] = time.perf_counter() - start
    reference = scratch / f"{variant.name}.pt"
    torch.save(reference_inputs(model, variant.model_inputs(tokenizer, examples), tokenizer, targets,
                                variant.logits_field), reference)
    window = max(1, steps // 20)
    result = {
        "variant": variant.name, "task": variant.task, "short_task": variant.short_task,
        "model_class": type(model).__name__, "auto_class": variant.auto_class, "pipeline_task": variant.pipeline_task,
        "tokenizer": preprocessor_name(tokenizer), "parameters": model.num_parameters(),
        "steps": steps, "batch_size": variant.batch_size, "lr": variant.lr, "losses": [round(x, 6) for x in losses],
        "initial_loss": losses[0], "final_loss": sum(losses[-window:]) / window, "final_window": window,
        "note": variant.note, "metric_name": variant.metric, "metric": metric,
        "held_out_size": len(task_data.held_out.inputs),
        "examples": [{"input": text, "expected": (variant.label_names or model.config.id2label)[t]
                      if isinstance(t, int) else t}
                     for text, t in zip(shown, targets)],
        "in_process_outputs": in_process, "timings": timings,
    }
    reload_item = {"variant": variant.name, "folder": str(folder), "auto_class": variant.auto_class,
                   "pipeline_task": variant.pipeline_task, "pipeline_kwargs": variant.pipeline_kwargs,
                   "logits_field": variant.logits_field,
                   "examples": examples, "reference": str(reference)}
    return Trained(result, tokenizer, reload_item)


def add_reload(result: dict, reloaded: dict) -> None:
    # Labels and texts identical; scores within 1e-6: a one-image pipeline call can differ from the in-process one in
    # the last bit of a score (the logits on the shared example batch are compared bit for bit separately).
    reloaded["pipeline_identical"] = outputs_match(reloaded["pipeline_outputs"], result["in_process_outputs"],
                                                   atol=RELOAD_SCORE_ATOL)
    result["reload"] = reloaded


def add_onnx(variant: Variant, trained: Trained, checkpoint: Path, destination: Path) -> None:
    """Export + ONNX Runtime pipeline; a failure (a ValueError from the validation, or any other error of the export
    or the runtime) is recorded as a failed check with its type, not raised: the other variants and the report
    still complete, and the demo exits non-zero."""
    result = trained.result
    try:
        onnx = export_and_run_onnx(checkpoint, destination, variant.onnx_task, variant.pipeline_task,
                                   variant.pipeline_preprocessors(trained.tokenizer), trained.reload_item["examples"],
                                   variant.pipeline_kwargs)
    except Exception as error:  # noqa: BLE001 (reported, see above)
        onnx = {"task": variant.onnx_task, "error": f"{type(error).__name__}: {error}", "export_seconds": 0.0, "run_seconds": 0.0,
                "max_abs_diff": None, "greedy_identical": False, "fused_attention_nodes": 0, "files": [],
                "pipeline_outputs": []}
    result["onnx"] = onnx
    result["timings"].update(onnx_export=onnx["export_seconds"], onnx_run=onnx["run_seconds"])
    reloaded = result["reload"]["pipeline_outputs"]
    for example, in_process, again, on_ort in zip(result["examples"], result["in_process_outputs"], reloaded,
                                                  onnx["pipeline_outputs"] or [None] * len(reloaded)):
        example.update(in_process=display(in_process), reloaded=display(again),
                       onnx=display(on_ort) if on_ort else "-")


def checks(result: dict, quick: bool) -> list[dict]:
    """Every pass/fail line of one variant (the report's table; the demo's exit status is their conjunction)."""
    reload, onnx = result["reload"], result["onnx"]
    lines = [
        ("loss decreased", result["final_loss"] < result["initial_loss"],
         f"{result['initial_loss']:.3f} -> {result['final_loss']:.4f}"),
        ("loaded as remote code, hf_tformer not importable",
         reload["class"].startswith("transformers_modules.") and not reload["hf_tformer_loaded"], reload["class"]),
        ("reloaded logits bit-identical", reload["logits_identical"], "torch.equal on the example batch"),
        ("reloaded pipeline outputs identical", reload["pipeline_identical"],
         f"{len(result['examples'])} examples; labels/texts equal, scores {RELOAD_SCORE_ATOL:g}"),
        (f"ONNX validated (max abs diff <= {ONNX_ATOL:g}, greedy tokens identical)",
         "error" not in onnx and onnx["max_abs_diff"] <= ONNX_ATOL and onnx["greedy_identical"] is not False,
         onnx["error"] if "error" in onnx else
         f"max abs diff {format_diff(onnx['max_abs_diff'])}, greedy {onnx['greedy_identical']}"),
        ("ONNX Runtime pipeline matches PyTorch", "error" not in onnx
         and outputs_match(onnx["pipeline_outputs"], reload["pipeline_outputs"]), "labels/texts equal, scores 1e-4"),
    ]
    # --quick trains too briefly for the quality floor: that check is listed as skipped (passed None), not dropped,
    # so a quick run never reads as a full pass
    lines.append((f"held-out quality >= {QUALITY_FLOOR:.0%}", None if quick else result["metric"] >= QUALITY_FLOOR,
                  f"{result['metric_name']} {result['metric']:.1%}" + (
                      f" (skipped in --quick: training is too short for it; run without --quick)" if quick else "")))
    return [{"variant": result["variant"], "name": name, "passed": None if passed is None else bool(passed),
             "detail": detail}
            for name, passed, detail in lines]
