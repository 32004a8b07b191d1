"""The parity gate: source and converted models on the same random inputs (with padding) must agree, output by
output, within the tolerance rule of tolerance.py (scaled to the outputs and to the reference's own float32 noise),
and decode the same tokens."""

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional

import torch

from .generation_settings import differing_settings, settings_summary
from .tolerance import CONVERSION_TOLERANCE, Compared, OutputCheck, ToleranceRule, gate, other_attention, summary

FP32_TOLERANCE = CONVERSION_TOLERANCE.floor  # the absolute floor of the gate (tolerance.py has the whole rule)
# The gate decodes under the checkpoint's own settings (beam search included) for at most this many new tokens, so
# a large checkpoint's max_length (BART-CNN: 142, 4 beams) does not make the gate slow; every other setting is kept.
OWN_SETTINGS_MAX_NEW_TOKENS = 32


@dataclass
class ParityReport:
    max_abs_diff: float  # over every compared output
    greedy_identical: Optional[bool]
    # generate() with no arguments, i.e. under each model's generation_config (the source's own settings)
    own_settings_identical: Optional[bool] = None
    generation_settings: Optional[str] = None  # those settings, as settings_summary() shows them
    checks: list[OutputCheck] = field(default_factory=list)  # per output: max |Δ|, max |ref|, spread, tolerance
    rule: ToleranceRule = CONVERSION_TOLERANCE  # the gate they were held to

    def gate_summary(self) -> str:
        """The gate actually used, with its numbers, in one line (a command's output)."""
        return summary(self.checks, self.rule)


def _random_inputs(model: torch.nn.Module, batch: int = 2, length: int = 12, seed: int = 0) -> dict:
    """Random padded token ids, or for a model fed by pixels / log-mel frames (main_input_name) random pixel values /
    features (a full window of 2 * max_source_positions frames, as Whisper requires)."""
    config = model.config
    if getattr(config, "text_config", None) is not None and getattr(config, "vision_config", None) is not None:
        # a dual encoder (CLIP) scores texts against images: pixels for its image tower, padded ids for its text one
        towers = (SimpleNamespace(config=config.vision_config, main_input_name="pixel_values"),
                  SimpleNamespace(config=config.text_config, main_input_name="input_ids"))
        return {name: value for tower in towers for name, value in _random_inputs(tower, batch, length, seed).items()}
    generator = torch.Generator().manual_seed(seed)
    if model.main_input_name == "pixel_values":
        shape = (batch, config.num_channels, config.image_size, config.image_size)
        return {"pixel_values": torch.randn(shape, generator=generator)}
    if model.main_input_name == "input_features":
        shape = (batch, config.num_mel_bins, 2 * config.max_source_positions)
        return {"input_features": torch.randn(shape, generator=generator)}
    ids = torch.randint(3, config.vocab_size, (batch, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, length // 2:] = 0  # right padding in the second row
    if config.pad_token_id is not None:
        ids[mask == 0] = config.pad_token_id  # as a tokenizer pads: heads that find the last token by id agree
    return {"input_ids": ids, "attention_mask": mask}


_FIRST_OUTPUTS = ("logits", "logits_per_image", "start_logits", "last_hidden_state")


def _main_output_name(output) -> str:
    return next((name for name in _FIRST_OUTPUTS if getattr(output, name, None) is not None), "output[0]")


def _first_output(output) -> torch.Tensor:
    name = _main_output_name(output)
    return output[0] if name == "output[0]" else getattr(output, name)


def _router_logits(outputs) -> torch.Tensor:
    """Every MoE layer's router logits as one (batch * seq, layers, experts) tensor: rows are tokens."""
    return torch.stack(tuple(outputs.router_logits), dim=1)


def _compared(reference_outputs, converted_outputs, alternative_outputs, keep: torch.Tensor) -> list[Compared]:
    """The outputs the gate holds to the tolerance: the first (logits, scores or states) over the real positions,
    the pooled / projected outputs both sides return, and a sparse MoE's router logits over the real tokens."""
    compared = [Compared(_main_output_name(reference_outputs), _first_output(reference_outputs),
                         _first_output(converted_outputs),
                         None if alternative_outputs is None else _first_output(alternative_outputs), keep)]
    for name in ("end_logits", "pooler_output", "text_embeds", "image_embeds", "logits_per_text"):
        pooled = [getattr(output, name, None) for output in (reference_outputs, converted_outputs)]
        if None not in pooled:  # both pool (ViT's pooler), project (CLIP) or answer (QA's end): checked too
            compared.append(Compared(name, *pooled, getattr(alternative_outputs, name, None)))
    if getattr(reference_outputs, "router_logits", None) is not None:
        expected, actual = reference_outputs.router_logits, converted_outputs.router_logits
        if len(expected) != len(actual):
            raise ValueError(f"parity check failed: {len(actual)} layers return router logits, the source's "
                             f"{len(expected)}; nothing was written.")
        rows = keep.reshape(-1) if keep.dim() == 2 else None
        compared.append(Compared("router_logits", _router_logits(reference_outputs), _router_logits(converted_outputs),
                                 None if alternative_outputs is None else _router_logits(alternative_outputs), rows))
    return compared


def check_parity(reference: torch.nn.Module, converted: torch.nn.Module,
                 rule: ToleranceRule = CONVERSION_TOLERANCE) -> ParityReport:
    """Every compared output within its tolerance (tolerance.py: scaled to the reference's magnitude and its own
    sdpa / eager spread) over real (unpadded) positions, no NaN / inf on either side; greedy and own-settings
    tokens identical for generative models. Raises ValueError."""
    inputs = _random_inputs(converted)
    main = converted.main_input_name
    extra = {}
    if converted.config.is_encoder_decoder:
        ids = inputs.get("input_ids")
        if ids is None:  # speech: random decoder tokens
            ids = torch.randint(3, converted.config.vocab_size, (inputs[main].shape[0], 5),
                                generator=torch.Generator().manual_seed(1))
        extra["decoder_input_ids"] = ids[:, :5]
    if getattr(converted.config, "num_experts", 0):  # a sparse MoE's router logits must agree too
        extra["output_router_logits"] = True
    with torch.no_grad():
        expected_outputs = reference(**inputs, **extra)
        actual_outputs = converted(**inputs, **extra)
        with other_attention(reference) as other:  # the reference's own float32 noise on these inputs
            alternative_outputs = reference(**inputs, **extra) if other else None
    actual = _first_output(actual_outputs)
    keep = inputs["attention_mask"].bool() if "attention_mask" in inputs and actual.dim() >= 2 and \
        "decoder_input_ids" not in extra and \
        actual.shape[:2] == inputs["input_ids"].shape else torch.ones(actual.shape[:1], dtype=torch.bool)
    compared = _compared(expected_outputs, actual_outputs, alternative_outputs, keep)
    sides = (f"the reference ({type(reference).__name__})", f"the converted model ({type(converted).__name__})")
    checks = gate(compared, rule, "parity check failed", sides)
    difference = max((check.max_abs_diff for check in checks), default=0.0)
    greedy = None
    if hasattr(converted, "generate") and converted.can_generate():
        prompt = inputs[main][:1]
        kwargs = dict(max_new_tokens=8, do_sample=False, num_beams=1, pad_token_id=converted.config.pad_token_id,
                      forced_eos_token_id=None, forced_bos_token_id=None)
        greedy = torch.equal(reference.generate(prompt, **kwargs), converted.generate(prompt, **kwargs))
        if not greedy:
            raise ValueError("parity check failed: greedy tokens differ; nothing was written.")
        report = ParityReport(difference, greedy, generation_settings=settings_summary(converted.generation_config),
                              checks=checks, rule=rule)
        report.own_settings_identical = _same_generation_under_own_settings(reference, converted, inputs)
        if not report.own_settings_identical:
            differing = differing_settings(reference.generation_config, converted.generation_config)
            raise ValueError("parity check failed: generate() under the checkpoint's own generation settings "
                             f"({settings_summary(reference.generation_config)}) gives different tokens"
                             + (f"; the settings differ (source vs converted): {'; '.join(differing)}" if differing
                                else "") + "; nothing was written.")
        return report
    return ParityReport(difference, greedy, checks=checks, rule=rule)


def _length_caps(generation_config, prompt_length: int) -> dict:
    """Cap the new tokens at OWN_SETTINGS_MAX_NEW_TOKENS (min_length clipped to fit); {} when already within."""
    wanted = generation_config.max_new_tokens
    if wanted is None and generation_config.max_length is not None:  # None (transformers 5): generate()'s 20
        wanted = generation_config.max_length - prompt_length
    if wanted is None or wanted <= OWN_SETTINGS_MAX_NEW_TOKENS:
        return {}
    return {"max_new_tokens": OWN_SETTINGS_MAX_NEW_TOKENS,
            "min_length": min(generation_config.min_length or 0, prompt_length + OWN_SETTINGS_MAX_NEW_TOKENS)}


def _same_generation_under_own_settings(reference: torch.nn.Module, converted: torch.nn.Module,
                                        inputs: dict) -> bool:
    """Both models decode with their own generation_config (forced tokens, beams, n-gram blocking, ...): a padded
    batch of two for an encoder-decoder, one prompt for a decoder (no left padding to agree on). Sampling settings
    draw from the same seed on both sides."""
    rows = slice(None) if converted.config.is_encoder_decoder else slice(0, 1)
    prompt = {name: tensor[rows] for name, tensor in inputs.items()}
    prompt_length = 0 if converted.config.is_encoder_decoder else prompt["input_ids"].shape[1]
    caps = _length_caps(converted.generation_config, prompt_length)
    outputs = []
    for model in (reference, converted):
        torch.manual_seed(0)
        output = model.generate(**prompt, **caps)
        outputs.append(output if isinstance(output, torch.Tensor) else output.sequences)
    return outputs[0].shape == outputs[1].shape and torch.equal(*outputs)
