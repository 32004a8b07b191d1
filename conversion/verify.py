"""The parity gate: source and converted models on the same random inputs (with padding) must agree."""

from dataclasses import dataclass
from typing import Optional

import torch

FP32_TOLERANCE = 1e-5


@dataclass
class ParityReport:
    max_abs_diff: float
    greedy_identical: Optional[bool]


def _random_inputs(config, batch: int = 2, length: int = 12, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, config.vocab_size, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, length // 2:] = 0  # right padding in the second row
    if config.pad_token_id is not None:
        ids[mask == 0] = config.pad_token_id  # as a tokenizer pads: heads that find the last token by id agree
    return {"input_ids": ids, "attention_mask": mask}


def _first_output(output) -> torch.Tensor:
    for name in ("logits", "start_logits", "last_hidden_state"):
        if getattr(output, name, None) is not None:
            return getattr(output, name)
    return output[0]


def check_parity(reference: torch.nn.Module, converted: torch.nn.Module) -> ParityReport:
    """Max-abs difference over real (unpadded) positions; greedy tokens for generative models. Raises ValueError."""
    inputs = _random_inputs(converted.config)
    extra = {}
    if converted.config.is_encoder_decoder:
        extra["decoder_input_ids"] = inputs["input_ids"][:, :5]
    with torch.no_grad():
        expected = _first_output(reference(**inputs, **extra))
        actual = _first_output(converted(**inputs, **extra))
    if expected.shape != actual.shape:
        raise ValueError(f"parity check failed: output shapes differ, {tuple(actual.shape)} vs {tuple(expected.shape)}.")
    keep = inputs["attention_mask"].bool() if actual.dim() >= 2 and not extra and actual.shape[:2] == inputs[
        "input_ids"].shape else torch.ones(actual.shape[:1], dtype=torch.bool)
    difference = float((actual[keep] - expected[keep]).abs().max())
    if difference > FP32_TOLERANCE:
        raise ValueError(f"parity check failed: max |Δ| = {difference:.3e} > {FP32_TOLERANCE:.0e}; nothing was written.")
    greedy = None
    if hasattr(converted, "generate") and converted.can_generate():
        prompt = inputs["input_ids"][:1]
        kwargs = dict(max_new_tokens=8, do_sample=False, num_beams=1, pad_token_id=converted.config.pad_token_id,
                      forced_eos_token_id=None, forced_bos_token_id=None)
        greedy = torch.equal(reference.generate(prompt, **kwargs), converted.generate(prompt, **kwargs))
        if not greedy:
            raise ValueError("parity check failed: greedy tokens differ; nothing was written.")
    return ParityReport(difference, greedy)
