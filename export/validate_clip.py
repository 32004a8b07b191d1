"""Validation of a CLIP-style export (the dual encoder or one of its towers): every output of the graph, by name,
against the PyTorch model's output of the same name, with ONNX Runtime on padded texts and random pixel values.

optimum's ORTModel classes return only some of these graphs' outputs (ORTModelForFeatureExtraction: last_hidden_state
alone), so the graph runs in a plain InferenceSession here and nothing it returns goes unchecked.
"""

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from hf_tformer_conversion.tolerance import Compared, ToleranceRule, gate, other_attention

from .runtime import variant_name
from .tasks import CLIP, CLIP_TEXT, CLIP_VISION

CLIP_TYPES = (CLIP, CLIP_TEXT, CLIP_VISION)
TEXT_LENGTHS = (9, 5, 7)  # three texts, right-padded to the longest, as CLIP's tokenizer pads
IMAGES = 4  # an image batch other than the text batch and optimum's dummy batch of 2


def clip_model_type(folder: str | Path) -> Optional[str]:
    """The CLIP model type of a checkpoint or export folder, None for any other folder."""
    path = Path(folder) / "config.json"
    model_type = json.loads(path.read_text()).get("model_type") if path.is_file() else None
    return model_type if model_type in CLIP_TYPES else None


def clip_inputs(config: dict[str, Any], input_names: list[str], seed: int) -> dict[str, torch.Tensor]:
    """Inputs for the graph's `input_names` from a config.json dict (the dual encoder's or a tower's): texts of
    TEXT_LENGTHS ending in the end-of-text token and padded after it (attention_mask 0 there), IMAGES random images
    of the configured size."""
    generator = torch.Generator().manual_seed(seed)
    text = config.get("text_config", config)
    vision = config.get("vision_config", config)
    inputs = {}
    if "input_ids" in input_names:
        eos, pad = text["eos_token_id"], text.get("pad_token_id")
        ids = torch.randint(0, min(eos, text["vocab_size"] - 1), (len(TEXT_LENGTHS), max(TEXT_LENGTHS)),
                            generator=generator)
        mask = torch.zeros_like(ids)
        for row, length in enumerate(TEXT_LENGTHS):
            mask[row, :length] = 1
            ids[row, length - 1] = eos
        ids[mask == 0] = pad if pad is not None else eos
        inputs["input_ids"] = ids
        if "attention_mask" in input_names:
            inputs["attention_mask"] = mask
    if "pixel_values" in input_names:
        size = vision["image_size"]
        inputs["pixel_values"] = torch.randn(IMAGES, vision.get("num_channels", 3), size, size, generator=generator)
    return inputs


def run_session(path: Path, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every output of the graph at `path`, by name (CPU)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {name: np.asarray(value) for name, value in inputs.items()})
    return {meta.name: torch.as_tensor(value) for meta, value in zip(session.get_outputs(), outputs)}


def _session_inputs(path: Path, folder: Path, seed: int) -> dict[str, torch.Tensor]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return clip_inputs(json.loads((folder / "config.json").read_text()), [i.name for i in graph.input], seed)


def _max_diff(expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]) -> float:
    worst = 0.0
    for name, value in actual.items():
        if expected[name].shape != value.shape:
            raise ValueError(f"validation failed: ONNX output {name} has shape {tuple(value.shape)}, PyTorch "
                             f"{tuple(expected[name].shape)}.")
        worst = max(worst, float((expected[name] - value).abs().max()))
    return worst


def validate_clip_export(checkpoint: str | Path, folder: str | Path, task: str, tolerance: ToleranceRule,
                         seed: int = 1234):
    """Raise ValueError when an output of model.onnx holds NaN / inf or differs from PyTorch's beyond its tolerance
    (hf_tformer_conversion.tolerance); else a ValidationReport."""
    from .torch_onnx import checkpoint_class
    from .validate import ValidationReport

    auto = "AutoModelForZeroShotImageClassification" if task == "zero-shot-image-classification" else "AutoModel"
    reference = checkpoint_class(Path(checkpoint), auto).from_pretrained(str(checkpoint), trust_remote_code=True,
        dtype=torch.float32)  # fp32 whatever the checkpoint stores (5.x loads its own dtype by default)
    reference.eval()
    path = Path(folder) / "model.onnx"
    inputs = _session_inputs(path, Path(folder), seed)
    actual = run_session(path, inputs)
    with torch.no_grad():
        output = reference(**inputs)
        with other_attention(reference) as other:  # PyTorch's own float32 noise on these inputs
            alternative = reference(**inputs) if other else None
    checks = gate([Compared(name, getattr(output, name), value, getattr(alternative, name, None))
                   for name, value in actual.items()],
                  tolerance, f"validation failed for model.onnx ({', '.join(actual)})", ("PyTorch", "ONNX Runtime"))
    worst = max((check.max_abs_diff for check in checks), default=0.0)
    return ValidationReport("model.onnx", worst, checks=checks, rule=tolerance)


def clip_quantization_report(folder: str | Path, seed: int = 1234):
    """INT8 vs fp32 graph: max-abs over every output and argmax agreement of the first (scores or embeddings)."""
    from .validate import ValidationReport

    folder = Path(folder)
    inputs = _session_inputs(folder / "model.onnx", folder, seed)
    fp32 = run_session(folder / "model.onnx", inputs)
    quantized = run_session(folder / variant_name("model.onnx", "quantized"), inputs)
    first = next(iter(fp32))
    agreement = float((fp32[first].argmax(-1) == quantized[first].argmax(-1)).float().mean())
    return ValidationReport("INT8 graphs", _max_diff(fp32, quantized), agreement=agreement)
