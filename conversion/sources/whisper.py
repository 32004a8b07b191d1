"""Whisper -> speech encoder-decoder (pre-LN, audio front end, learned decoder positions, tied output projection).

Whisper's key projections have no bias. Ours have one; the converted bias is zero, and on the way back it is
dropped: a bias on the keys adds q·b to every score of a query, which softmax cancels, so dropping it is exact
whatever it has become. The encoder's stored position table is carried as it is (both ways): Whisper's are
sinusoids rounded to the checkpoint's dtype, and recomputing them in fp32 would be a different function.
"""

import torch

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import I, P, Source, activation, carried_fields, common_fields, escape, plain_activation, require_equal

_LAYER_NAMES = {
    "self_attn.q_proj": "self_attn.q_proj", "self_attn.v_proj": "self_attn.v_proj",
    "self_attn.out_proj": "self_attn.o_proj", "self_attn_layer_norm": "self_attn_norm",
    "encoder_attn.q_proj": "cross_attn.q_proj", "encoder_attn.v_proj": "cross_attn.v_proj",
    "encoder_attn.out_proj": "cross_attn.o_proj", "encoder_attn_layer_norm": "cross_attn_norm",
    "fc1": "mlp.up_proj", "fc2": "mlp.down_proj", "final_layer_norm": "mlp_norm",
}
# Where each of Whisper's two stacks of layers lives in ours.
_STACKS = {"encoder": "model.encoder.stack", "decoder": "model.decoder"}
_UNSUPPORTED = {"apply_spec_augment": False, "use_weighted_layer_sum": False}
# generation_config fields transformers' Whisper generation (WhisperGenerationMixin and its timestamp logits
# processor) reads on top of the generic ones; `alignment_heads` gives word-level timestamps.
_GENERATION_FIELDS = ("alignment_heads", "lang_to_id", "task_to_id", "language", "task", "is_multilingual",
                      "no_timestamps_token_id", "prev_sot_token_id", "max_initial_timestamp_index", "return_timestamps",
                      "condition_on_prev_tokens", "compression_ratio_threshold", "logprob_threshold",
                      "no_speech_threshold", "prompt_condition_type")


def _with_zero_bias(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whisper's key weight -> ours and a zero bias. Traced with integer positions (reverse.py), the bias positions
    are -1: made up here, with no native place."""
    fill = 0 if weight.is_floating_point() else -1
    return weight, weight.new_full((weight.shape[0],), fill)


def _whisper_config(config: dict) -> ht.TformerWhisperConfig:
    require_equal(config, "Whisper", "head count", "encoder_attention_heads", "decoder_attention_heads")
    require_equal(config, "Whisper", "feed-forward size", "encoder_ffn_dim", "decoder_ffn_dim")
    for name, supported in _UNSUPPORTED.items():
        if config.get(name, supported) != supported:
            raise ValueError(f"{name}={config[name]!r} is not supported (a training / audio-classification option); "
                             f"set it to {supported} before converting.")
    return ht.TformerWhisperConfig(
        **common_fields(config, hidden_size="d_model", encoder_layers="encoder_layers",
                        decoder_layers="decoder_layers", num_attention_heads="encoder_attention_heads",
                        intermediate_size="encoder_ffn_dim", num_mel_bins="num_mel_bins",
                        max_source_positions="max_source_positions", max_target_positions="max_target_positions",
                        hidden_dropout="dropout", attention_dropout="attention_dropout",
                        activation_dropout="activation_dropout", decoder_start_token_id="decoder_start_token_id",
                        median_filter_width="median_filter_width", initializer_range="init_std"),
        hidden_act=activation(config.get("activation_function", "gelu")),
        scale_embeddings=bool(config.get("scale_embedding", False)),
    )


def _whisper_native(config: ht.TformerConfig) -> dict:
    if not isinstance(config, ht.TformerWhisperConfig):
        raise ValueError(f"a {config.model_type} checkpoint is not a speech model; Whisper takes hf_tformer_whisper.")
    if config.norm_type != "layernorm" or not config.attention_bias or not config.mlp_bias or config.lm_head_bias \
            or config.embedding_layernorm or config.attention_scale is not None or \
            config.num_key_value_heads != config.num_attention_heads:
        raise ValueError("Whisper is a pre-LayerNorm MHA encoder-decoder with biases, no embedding norm and a "
                         "bias-free output projection; this checkpoint's norm_type / biases / embedding_layernorm / "
                         "attention_scale / num_key_value_heads differ.")
    fields = carried_fields(config)
    fields.pop("initializer_range")
    return dict(
        fields, d_model=config.hidden_size, encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers, encoder_attention_heads=config.num_attention_heads,
        decoder_attention_heads=config.num_attention_heads, encoder_ffn_dim=config.intermediate_size,
        decoder_ffn_dim=config.intermediate_size, num_mel_bins=config.num_mel_bins,
        max_source_positions=config.max_source_positions, max_target_positions=config.max_target_positions,
        activation_function=plain_activation(config, "Whisper"), dropout=config.hidden_dropout,
        attention_dropout=config.attention_dropout, activation_dropout=config.activation_dropout,
        scale_embedding=config.scale_embeddings, decoder_start_token_id=config.decoder_start_token_id,
        median_filter_width=config.median_filter_width, init_std=config.initializer_range,
    )


def _whisper_rules(config: dict, target: type) -> list[Rule]:
    m = r"(?:model\.)?"
    found = [
        rule(rf"{m}decoder\.embed_tokens\.weight", "model.shared.weight"),
        rule(rf"{m}decoder\.embed_positions\.weight", "model.decoder.embeddings.position_embeddings.weight"),
        rule(rf"{m}encoder\.embed_positions\.weight", "model.encoder.front_end.position_embeddings"),
        rule(rf"{m}encoder\.(?P<c>conv1|conv2)\.{P}", "model.encoder.front_end.{c}.{p}"),
        rule(rf"{m}encoder\.layer_norm\.{P}", "model.encoder.stack.final_norm.{p}"),
        rule(rf"{m}decoder\.layer_norm\.{P}", "model.decoder.final_norm.{p}"),
        rule(r"proj_out\.weight", "lm_head.weight"),
    ]
    for stack, ours in _STACKS.items():
        layer = rf"{m}{stack}\.layers\.{I}\."
        for attention in ("self_attn", "encoder_attn"):
            ours_attention = "self_attn" if attention == "self_attn" else "cross_attn"
            found.append(rule(rf"{layer}{attention}\.k_proj\.weight", ours + ".layers.{i}." + ours_attention +
                              ".k_proj.weight", ours + ".layers.{i}." + ours_attention + ".k_proj.bias",
                              transform=_with_zero_bias))
        for theirs, name in _LAYER_NAMES.items():
            found.append(rule(rf"{layer}{escape(theirs)}\.{P}", ours + ".layers.{i}." + name + ".{p}"))
    return found


WHISPER = Source(
    model_types=("whisper",),
    classes={
        "WhisperModel": ("WhisperModel", ht.TformerWhisperModel),
        "WhisperForConditionalGeneration": ("WhisperForConditionalGeneration",
                                            ht.TformerWhisperForConditionalGeneration),
    },
    translate_config=_whisper_config,
    native_config=_whisper_native,
    rules=_whisper_rules,
    generation_fields=_GENERATION_FIELDS,
    notes="The converted model takes fewer than 2 * max_source_positions frames too (Whisper refuses them); on "
          "full windows (2 * max_source_positions frames) it computes the same function. The key projections gain a "
          "zero bias (softmax-invariant).",
)
