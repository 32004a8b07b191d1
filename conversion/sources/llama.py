"""Llama-style -> decoder (pre-RMSNorm, rotary in Llama's half-split layout, SwiGLU, GQA, untied head)."""

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import I, P, Source, carried_fields, common_fields


def _rope_theta(config: dict) -> float:
    """4.57 stores rope_theta / rope_scaling; 5.x stores rope_parameters. Only plain rotary converts."""
    parameters = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = parameters.get("rope_type", parameters.get("type", "default"))
    if kind != "default":
        raise ValueError(f"rope_type={kind!r} is not supported; only the default (unscaled) rotary converts.")
    return float(parameters.get("rope_theta", config.get("rope_theta", 10000.0)))


def _llama_config(config: dict, family: str = "Llama", **extra) -> ht.TformerDecoderConfig:
    """`extra`: the fields a Llama-derived family (Mistral, Qwen) sets on top (sliding window, biases, QK-norm)."""
    if config.get("hidden_act", "silu") != "silu":
        raise ValueError(f"hidden_act={config['hidden_act']!r} is not supported for {family}; only 'silu' (SwiGLU).")
    head_dim = config.get("head_dim")
    if head_dim is not None and head_dim != config["hidden_size"] // config["num_attention_heads"]:
        raise ValueError(f"head_dim={head_dim} differs from hidden_size // num_attention_heads; hf_tformer derives "
                         "head_dim from them.")
    fields = common_fields(config, hidden_size="hidden_size", num_hidden_layers="num_hidden_layers",
                           num_attention_heads="num_attention_heads", num_key_value_heads="num_key_value_heads",
                           intermediate_size="intermediate_size", max_position_embeddings="max_position_embeddings",
                           layer_norm_eps="rms_norm_eps", attention_dropout="attention_dropout")
    fields.update(
        hidden_act="swiglu", rotary_base=_rope_theta(config), position_embedding_type="rotary",
        norm_type="rmsnorm", norm_placement="pre", hidden_dropout=0.0,
        attention_bias=bool(config.get("attention_bias", False)), mlp_bias=bool(config.get("mlp_bias", False)),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        pad_token_id=config.get("pad_token_id") if config.get("pad_token_id") is not None else 0,
    )
    fields.update(extra)
    return ht.TformerDecoderConfig(**fields)


def _llama_native(config: ht.TformerConfig) -> dict:
    if config.hidden_act != "swiglu":
        raise ValueError(f"hidden_act={config.hidden_act!r}: Llama's feed-forward is SwiGLU ('swiglu').")
    return dict(
        carried_fields(config), hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, num_key_value_heads=config.num_key_value_heads,
        intermediate_size=config.intermediate_size, max_position_embeddings=config.max_position_embeddings,
        rms_norm_eps=config.layer_norm_eps, attention_dropout=config.attention_dropout, hidden_act="silu",
        attention_bias=config.attention_bias, mlp_bias=config.mlp_bias,
        # 4.57 reads rope_theta; 5.x reads rope_parameters (and ignores what it does not know)
        rope_theta=config.rotary_base, rope_parameters={"rope_type": "default", "rope_theta": config.rotary_base},
    )


def _llama_rules(config: dict, target: type) -> list[Rule]:
    m, layer, ours = r"(?:model\.)?", rf"(?:model\.)?layers\.{I}\.", "model.decoder.layers.{i}."
    return [
        rule(rf"{layer}self_attn\.(?P<n>q_norm|k_norm)\.weight", ours + "self_attn.{n}.weight"),  # Qwen3's QK-norm
        rule(rf"{m}embed_tokens\.weight", "model.embed_tokens.weight"),
        rule(rf"{m}norm\.weight", "model.decoder.final_norm.weight"),
        rule(rf"{layer}self_attn\.(?P<n>q_proj|k_proj|v_proj|o_proj)\.{P}", ours + "self_attn.{n}.{p}"),
        rule(rf"{layer}mlp\.(?P<n>gate_proj|up_proj|down_proj)\.{P}", ours + "mlp.{n}.{p}"),
        rule(rf"{layer}input_layernorm\.weight", ours + "self_attn_norm.weight"),
        rule(rf"{layer}post_attention_layernorm\.weight", ours + "mlp_norm.weight"),
        rule(rf"{layer}self_attn\.rotary_emb\.inv_freq"),  # older checkpoints stored the frequencies
        rule(r"lm_head\.weight", "lm_head.weight"),
        rule(r"score\.weight", "score.weight"),
    ]


LLAMA = Source(
    model_types=("llama",),
    classes={
        "LlamaModel": ("LlamaModel", ht.TformerDecoderModel),
        "LlamaForCausalLM": ("LlamaForCausalLM", ht.TformerDecoderForCausalLM),
        "LlamaForSequenceClassification": ("LlamaForSequenceClassification", ht.TformerDecoderForSequenceClassification),
    },
    translate_config=_llama_config,
    native_config=_llama_native,
    rules=_llama_rules,
)
