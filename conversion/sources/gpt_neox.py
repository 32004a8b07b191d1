"""GPT-NeoX (Pythia) -> decoder: pre-LayerNorm, partial rotary, parallel attention + MLP residual, fused q/k/v.

The fused query_key_value projection is laid out per head: its output rows are (heads, [q | k | v], head_dim).
"""

import torch

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import I, P, Source, activation, carried_fields, common_fields, plain_activation
from .llama import _rope_theta


def _rotary_factor(config: dict) -> float:
    """5.x keeps it in rope_parameters; 4.57 as rotary_pct (and partial_rotary_factor)."""
    parameters = config.get("rope_parameters") or {}
    return float(parameters.get("partial_rotary_factor", config.get("rotary_pct", 1.0)))


def _neox_config(config: dict) -> ht.TformerDecoderConfig:
    fields = common_fields(config, hidden_size="hidden_size", num_hidden_layers="num_hidden_layers",
                           num_attention_heads="num_attention_heads", intermediate_size="intermediate_size",
                           max_position_embeddings="max_position_embeddings", layer_norm_eps="layer_norm_eps",
                           attention_dropout="attention_dropout", hidden_dropout="hidden_dropout",
                           classifier_dropout="classifier_dropout")
    fields.update(
        hidden_act=activation(config.get("hidden_act", "gelu")), position_embedding_type="rotary",
        rotary_base=_rope_theta(config), partial_rotary_factor=_rotary_factor(config), norm_type="layernorm",
        norm_placement="pre", parallel_residual=bool(config.get("use_parallel_residual", True)),
        attention_bias=bool(config.get("attention_bias", True)), mlp_bias=True,
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        pad_token_id=config.get("pad_token_id") if config.get("pad_token_id") is not None else 0,
    )
    return ht.TformerDecoderConfig(**fields)


def _neox_native(config: ht.TformerConfig) -> dict:
    if config.num_key_value_heads != config.num_attention_heads or not config.mlp_bias \
            or config.attention_out_bias != config.attention_bias:
        raise ValueError(f"num_key_value_heads={config.num_key_value_heads}, mlp_bias={config.mlp_bias}, "
                         f"attention_out_bias={config.attention_out_bias}: GPT-NeoX has multi-head attention, MLP "
                         "biases and one bias setting for all attention projections.")
    return dict(
        carried_fields(config), hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings, layer_norm_eps=config.layer_norm_eps,
        attention_dropout=config.attention_dropout, hidden_dropout=config.hidden_dropout,
        classifier_dropout=config.classifier_dropout, hidden_act=plain_activation(config, "GPT-NeoX"),
        use_parallel_residual=config.parallel_residual, attention_bias=config.attention_bias,
        # 4.57 reads rotary_pct / rotary_emb_base; 5.x reads rope_parameters
        rotary_pct=config.partial_rotary_factor, rotary_emb_base=config.rotary_base,
        rope_parameters={"rope_type": "default", "rope_theta": config.rotary_base,
                         "partial_rotary_factor": config.partial_rotary_factor},
    )


def _split_heads_qkv(config: dict):
    heads = config["num_attention_heads"]

    def split(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # (heads * 3 * head_dim, ...) -> (heads, 3, head_dim, ...) -> q, k, v of (heads * head_dim, ...)
        per_head = tensor.reshape(heads, 3, -1, *tensor.shape[1:])
        return tuple(per_head[:, part].reshape(-1, *tensor.shape[1:]) for part in range(3))

    return split


def _neox_rules(config: dict, target: type) -> list[Rule]:
    m, layer, ours = r"(?:gpt_neox\.)?", rf"(?:gpt_neox\.)?layers\.{I}\.", "model.decoder.layers.{i}."
    return [
        rule(rf"{m}embed_in\.weight", "model.embed_tokens.weight"),
        rule(rf"{m}final_layer_norm\.{P}", "model.decoder.final_norm.{p}"),
        rule(rf"{layer}attention\.(bias|masked_bias|rotary_emb\.inv_freq)"),  # buffers of older checkpoints
        rule(rf"{layer}attention\.query_key_value\.{P}", *(ours + f"self_attn.{n}_proj.{{p}}" for n in "qkv"),
             transform=_split_heads_qkv(config)),
        rule(rf"{layer}attention\.dense\.{P}", ours + "self_attn.o_proj.{p}"),
        rule(rf"{layer}mlp\.dense_h_to_4h\.{P}", ours + "mlp.up_proj.{p}"),
        rule(rf"{layer}mlp\.dense_4h_to_h\.{P}", ours + "mlp.down_proj.{p}"),
        rule(rf"{layer}input_layernorm\.{P}", ours + "self_attn_norm.{p}"),
        rule(rf"{layer}post_attention_layernorm\.{P}", ours + "mlp_norm.{p}"),
        rule(r"(?:embed_out|lm_head)\.weight", "lm_head.weight"),  # 5.x's module is lm_head (saved as embed_out)
        rule(r"score\.weight", "score.weight"),
    ]


GPT_NEOX = Source(
    model_types=("gpt_neox",),
    classes={
        "GPTNeoXModel": ("GPTNeoXModel", ht.TformerDecoderModel),
        "GPTNeoXForCausalLM": ("GPTNeoXForCausalLM", ht.TformerDecoderForCausalLM),
        "GPTNeoXForSequenceClassification": ("GPTNeoXForSequenceClassification",
                                             ht.TformerDecoderForSequenceClassification),
    },
    translate_config=_neox_config,
    native_config=_neox_native,
    rules=_neox_rules,
)
