"""Validation of an export: ONNX Runtime against PyTorch on fresh random inputs with padding (text) or random
pixel values (images, a batch size other than the export's dummy one).

fp32 exports must match output by output on every real (unpadded) position, within the tolerance rule shared with
the conversion gate (hf_tformer_conversion.tolerance: max(1e-4, rtol x max |PyTorch|, k x PyTorch's own sdpa-vs-eager
spread)), with no NaN / inf on either side, and generative exports must produce exactly PyTorch's greedy tokens on a
padded batch. A quantized export is compared with the fp32 one instead and reported (max-abs and task agreement),
since INT8 is meant to differ.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from hf_tformer_conversion.tolerance import (EXPORT_TOLERANCE, Compared, OutputCheck, ToleranceRule, gate,
                                            other_attention)

from .runtime import load_ort_model
from .tasks import AUTO_CLASSES, VISION, WHISPER, is_generative, is_seq2seq
from .validate_clip import clip_model_type, clip_quantization_report, validate_clip_export

FP32_ATOL = EXPORT_TOLERANCE.floor  # the absolute floor of the validation (the whole rule: EXPORT_TOLERANCE)


@dataclass
class ValidationReport:
    file_name: str
    max_abs_diff: float  # over every compared output
    greedy_identical: Optional[bool] = None
    agreement: Optional[float] = None  # share of positions / rows whose argmax matches (quantized exports)
    checks: list[OutputCheck] = field(default_factory=list)  # per output: max |Δ|, max |ref|, spread, tolerance
    rule: Optional[ToleranceRule] = None  # the gate they were held to; None: no gate (INT8 report)


def _inputs(config, task: str, seed: int) -> dict[str, torch.Tensor]:
    """Batch 2 x 9 with the second row padded: on the left for decoders (as generation pads), else on the right.
    Images: 3 random ones of the config's size (optimum exports with a dummy batch of 2: batch stays dynamic).
    Speech: 3 random full log-mel windows (every frame is attended: there is no padding to mask)."""
    generator = torch.Generator().manual_seed(seed)
    if config.model_type == VISION:
        size = config.image_size
        return {"pixel_values": torch.randn(3, config.num_channels, size, size, generator=generator)}
    if config.model_type == WHISPER:
        frames = 2 * config.max_source_positions
        return {"input_features": torch.randn(3, config.num_mel_bins, frames, generator=generator)}
    ids = torch.randint(3, config.vocab_size, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    if task.startswith("text-generation"):
        mask[1, :4] = 0
    else:
        mask[1, 5:] = 0
    ids[mask == 0] = config.pad_token_id if config.pad_token_id is not None else 0
    return {"input_ids": ids, "attention_mask": mask}


def _output_names(task: str) -> tuple[str, ...]:
    if task == "question-answering":
        return ("start_logits", "end_logits")
    if task == "feature-extraction":
        return ("last_hidden_state",)
    if task.startswith("automatic-speech-recognition"):
        return ("logits", "encoder_last_hidden_state")
    return ("logits",)


def _per_position(task: str) -> bool:
    return task not in ("text-classification",)


def _decoder_input_ids(config, inputs: dict, seed: int) -> torch.Tensor:
    """Four decoder tokens per row: the source's first four (text), or the start token + random ids (speech)."""
    if "input_ids" in inputs:
        return inputs["input_ids"][:, :4]
    rows = next(iter(inputs.values())).shape[0]
    ids = torch.randint(0, config.vocab_size, (rows, 4), generator=torch.Generator().manual_seed(seed + 1))
    ids[:, 0] = config.decoder_start_token_id
    return ids


def _run(model, task: str, inputs: dict, seed: int) -> list[torch.Tensor]:
    """The task's outputs (_output_names) of a PyTorch or ORT model on `inputs` (+ decoder tokens for seq2seq)."""
    extra = {"decoder_input_ids": _decoder_input_ids(model.config, inputs, seed)} if is_seq2seq(task) else {}
    with torch.no_grad():
        output = model(**inputs, **extra)
    return [torch.as_tensor(getattr(output, name)) for name in _output_names(task)]


def run_both(reference, exported, task: str, inputs: dict, seed: int = 0) -> tuple[list[torch.Tensor],
                                                                                     list[torch.Tensor]]:
    return _run(reference, task, inputs, seed), _run(exported, task, inputs, seed)


def _keep(output: torch.Tensor, task: str, mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """The real positions of `output` (bool over its leading (batch, seq) dims), None where every one is real:
    images, sequence-level outputs (sequence classification), seq2seq decoder tokens."""
    if (mask is not None and _per_position(task) and output.dim() >= 2 and output.shape[:2] == mask.shape
            and not is_seq2seq(task)):
        return mask.bool()
    return None


def _compare(expected, actual, task: str, mask: Optional[torch.Tensor]) -> tuple[float, float]:
    """Max-abs difference and argmax agreement over real positions (rows for sequence classification); mask None:
    every position is real (images)."""
    worst, agree, total = 0.0, 0, 0
    for e, a in zip(expected, actual):
        if e.shape != a.shape:
            raise ValueError(f"validation failed: ONNX output shape {tuple(a.shape)} != PyTorch {tuple(e.shape)}.")
        keep = _keep(e, task, mask)
        if keep is not None:
            e, a = e[keep], a[keep]
        worst = max(worst, float((e - a).abs().max()))
        agree += int((e.argmax(-1) == a.argmax(-1)).sum())
        total += e.argmax(-1).numel()
    return worst, agree / max(total, 1)


def _greedy(model, inputs: dict, use_cache: bool) -> torch.Tensor:
    return model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False, num_beams=1,
                          use_cache=use_cache)


def validate_export(checkpoint: str | Path, folder: str | Path, task: str,
                    tolerance: ToleranceRule = EXPORT_TOLERANCE, seed: int = 1234) -> ValidationReport:
    """Raise ValueError when an output of ONNX Runtime holds NaN / inf, differs from PyTorch's beyond its tolerance
    (hf_tformer_conversion.tolerance: scaled to the output and to PyTorch's own sdpa / eager spread), or when the
    greedy tokens differ."""
    import transformers

    if clip_model_type(checkpoint):  # every output of the graph, by name (validate_clip.py)
        return validate_clip_export(checkpoint, folder, task, tolerance, seed)
    reference = getattr(transformers, AUTO_CLASSES[task]).from_pretrained(str(checkpoint), trust_remote_code=True,
        dtype=torch.float32)  # fp32 whatever the checkpoint stores (5.x loads its own dtype by default)
    reference.eval()
    exported = load_ort_model(folder, task)
    inputs = _inputs(reference.config, task, seed)
    expected, actual = run_both(reference, exported, task, inputs, seed)
    with other_attention(reference) as other:  # PyTorch's own float32 noise on these inputs
        alternative = _run(reference, task, inputs, seed) if other else [None] * len(expected)
    mask = inputs.get("attention_mask")
    name = "every graph" if is_seq2seq(task) else "model.onnx"
    checks = gate([Compared(output, e, a, alt, _keep(e, task, mask)) for output, e, a, alt in
                   zip(_output_names(task), expected, actual, alternative)],
                  tolerance, f"validation failed for {name}", ("PyTorch", "ONNX Runtime"))
    greedy = None
    if is_generative(task):
        with_past = task.endswith("with-past")  # an export without past cannot reuse a cache in ORT
        greedy = torch.equal(_greedy(reference, inputs, with_past), _greedy(exported, inputs, with_past))
        if not greedy:
            raise ValueError(f"validation failed for {name}: ONNX Runtime greedy tokens differ from PyTorch's; "
                             "nothing was written.")
    worst = max((check.max_abs_diff for check in checks), default=0.0)
    return ValidationReport(name, worst, greedy, checks=checks, rule=tolerance)


def quantization_report(folder: str | Path, task: str, seed: int = 1234) -> ValidationReport:
    """How far the INT8 graphs are from the fp32 ones: max-abs and argmax agreement (no threshold)."""
    if clip_model_type(folder):
        return clip_quantization_report(folder, seed)
    fp32 = load_ort_model(folder, task)
    quantized = load_ort_model(folder, task, variant="quantized")
    inputs = _inputs(fp32.config, task, seed)
    worst, agreement = _compare(*run_both(fp32, quantized, task, inputs, seed), task, inputs.get("attention_mask"))
    return ValidationReport("INT8 graphs", worst, agreement=agreement)
