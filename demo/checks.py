"""The demo's checks after training: reload as remote code in a fresh process, and ONNX export + ONNX Runtime."""

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

from .reload_check import first_output, make_pipeline, pipeline_input

SCORE_ATOL = 1e-4  # pipeline scores from ONNX Runtime vs PyTorch (the export's own gate uses the same bound)


@torch.no_grad()
def reference_inputs(model, inputs: dict, tokenizer, targets: list, logits_field: str = "logits") -> dict:
    """The example batch and the trained model's logits on it: the fresh process must reproduce them bit for bit."""
    if model.config.is_encoder_decoder:
        text_tokenizer = getattr(tokenizer, "tokenizer", tokenizer)  # a processor (speech) holds the tokenizer
        labels = text_tokenizer(targets, padding=True, return_tensors="pt")["input_ids"]
        inputs["decoder_input_ids"] = model.prepare_decoder_input_ids_from_labels(labels)
    return {"inputs": inputs, "logits": getattr(model.eval()(**inputs), logits_field)}


def reload_in_fresh_process(items: list[dict], scratch: Path) -> dict[str, dict]:
    """Run reload_check.py on every checkpoint in one fresh interpreter without hf_tformer; results by variant.

    items: variant, folder, auto_class, pipeline_task, pipeline_kwargs, logits_field, examples, reference (a
    torch.save file)."""
    spec, result = scratch / "reload_spec.json", scratch / "reload_result.json"
    spec.write_text(json.dumps(items))
    # PYTHONPATH cleared and a private modules cache: the checkpoint's own code is all the child can run.
    env = {**os.environ, "PYTHONPATH": "", "HF_MODULES_CACHE": str(scratch / "modules"), "HF_HUB_OFFLINE": "1"}
    script = Path(__file__).with_name("reload_check.py")
    done = subprocess.run([sys.executable, str(script), str(spec), str(result)], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"reloading in a fresh process failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return {entry["variant"]: entry for entry in json.loads(result.read_text())}


def outputs_match(actual: list[dict], expected: list[dict], atol: float = SCORE_ATOL) -> bool:
    """Same labels / texts; float fields (pipeline scores) within atol."""
    if len(actual) != len(expected):
        return False
    for got, want in zip(actual, expected):
        if got.keys() != want.keys():
            return False
        for key, value in want.items():
            if isinstance(value, float) and abs(got[key] - value) > atol:
                return False
            if not isinstance(value, float) and got[key] != value:
                return False
    return True


def export_and_run_onnx(checkpoint: Path, destination: Path, onnx_task: str, pipeline_task: str, preprocessor: dict,
                        examples: list[str], pipeline_kwargs: dict) -> dict:
    """Export with hf_tformer_export (validated against PyTorch on padded random inputs before it is written), then
    run the same pipeline on ONNX Runtime over the examples. `preprocessor`: {"tokenizer": ...},
    {"image_processor": ...}, {"tokenizer": ..., "feature_extractor": ..., "pipeline_class": ...}, as pipeline()
    takes them."""
    from hf_tformer_export.export import export_onnx
    from hf_tformer_export.runtime import load_ort_model

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings from the export; the validation below is what counts
        report = export_onnx(str(checkpoint), str(destination), onnx_task)
    export_seconds = time.perf_counter() - start
    start = time.perf_counter()
    pipe = make_pipeline(pipeline_task, load_ort_model(destination, onnx_task), **preprocessor)
    outputs = [first_output(pipe(pipeline_input(example), **pipeline_kwargs)) for example in examples]
    check = report.validation[0]
    return {"task": onnx_task, "export_seconds": export_seconds, "run_seconds": time.perf_counter() - start,
            "max_abs_diff": check.max_abs_diff, "greedy_identical": check.greedy_identical,
            "fused_attention_nodes": sum(counts.get("Attention", 0) + counts.get("MultiHeadAttention", 0)
                                         for counts in report.node_counts.values()),
            "files": report.files, "pipeline_outputs": outputs}
