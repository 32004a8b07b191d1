"""The parity gate: source and converted models on the same random inputs (with padding) must agree."""

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import torch

from .generation_settings import differing_settings, settings_summary

FP32_TOLERANCE = 1e-5
# The gate decodes under the checkpoint's own settings (beam search included) for at most this many new tokens, so
# a large checkpoint's max_length (BART-CNN: 142, 4 beams) does not make the gate slow; every other setting is kept.
OWN_SETTINGS_MAX_NEW_TOKENS = 32


@dataclass
class ParityReport:
    max_abs_diff: float
    greedy_identical: Optional[bool]
    # generate() with no arguments, i.e. under each model's generation_config (the source's own settings)
    own_settings_identical: Optional[bool] = None
    generation_settings: Optional[str] = None  # those settings, as settings_summary() shows them


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


def _first_output(output) -> torch.Tensor:
    for name in ("logits", "logits_per_image", "start_logits", "last_hidden_state"):
        if getattr(output, name, None) is not None:
            return getattr(output, name)
    return output[0]


def _router_logits_difference(expected_outputs, actual_outputs, keep: torch.Tensor) -> float:
    """Max-abs difference of every MoE layer's (batch * seq, experts) router logits over the real tokens."""
    expected, actual = expected_outputs.router_logits, actual_outputs.router_logits
    if len(expected) != len(actual):
        raise ValueError(f"parity check failed: {len(actual)} layers return router logits, the source's "
                         f"{len(expected)}; nothing was written.")
    rows = keep.reshape(-1) if keep.dim() == 2 else slice(None)
    return max((float((a[rows] - e[rows]).abs().max()) for e, a in zip(expected, actual)), default=0.0)


def check_parity(reference: torch.nn.Module, converted: torch.nn.Module) -> ParityReport:
    """Max-abs difference over real (unpadded) positions; greedy tokens for generative models. Raises ValueError."""
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
    expected, actual = _first_output(expected_outputs), _first_output(actual_outputs)
    if expected.shape != actual.shape:
        raise ValueError(f"parity check failed: output shapes differ, {tuple(actual.shape)} vs {tuple(expected.shape)}.")
    keep = inputs["attention_mask"].bool() if "attention_mask" in inputs and actual.dim() >= 2 and \
        "decoder_input_ids" not in extra and \
        actual.shape[:2] == inputs["input_ids"].shape else torch.ones(actual.shape[:1], dtype=torch.bool)
    difference = float((actual[keep] - expected[keep]).abs().max())
    for name in ("pooler_output", "text_embeds", "image_embeds", "logits_per_text"):
        pooled = [getattr(output, name, None) for output in (expected_outputs, actual_outputs)]
        if None not in pooled:  # both pool (ViT's pooler) or project (CLIP): those weights are checked too
            difference = max(difference, float((pooled[0] - pooled[1]).abs().max()))
    if "output_router_logits" in extra:
        difference = max(difference, _router_logits_difference(expected_outputs, actual_outputs, keep))
    if difference > FP32_TOLERANCE:
        raise ValueError(f"parity check failed: max |Δ| = {difference:.3e} > {FP32_TOLERANCE:.0e}; nothing was written.")
    greedy = None
    if hasattr(converted, "generate") and converted.can_generate():
        prompt = inputs[main][:1]
        kwargs = dict(max_new_tokens=8, do_sample=False, num_beams=1, pad_token_id=converted.config.pad_token_id,
                      forced_eos_token_id=None, forced_bos_token_id=None)
        greedy = torch.equal(reference.generate(prompt, **kwargs), converted.generate(prompt, **kwargs))
        if not greedy:
            raise ValueError("parity check failed: greedy tokens differ; nothing was written.")
        report = ParityReport(difference, greedy, generation_settings=settings_summary(converted.generation_config))
        report.own_settings_identical = _same_generation_under_own_settings(reference, converted, inputs)
        if not report.own_settings_identical:
            differing = differing_settings(reference.generation_config, converted.generation_config)
            raise ValueError("parity check failed: generate() under the checkpoint's own generation settings "
                             f"({settings_summary(reference.generation_config)}) gives different tokens"
                             + (f"; the settings differ (source vs converted): {'; '.join(differing)}" if differing
                                else "") + "; nothing was written.")
        return report
    return ParityReport(difference, greedy)


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
