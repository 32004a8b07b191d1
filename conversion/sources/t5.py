"""T5 -> encoder-decoder (pre-RMSNorm, relative position bias, unscaled attention, no biases).

T5 keeps one relative-position table per stack in its first block (`block.0...relative_attention_bias`); ours is
owned by the stack. Its attention does not divide scores by sqrt(head_dim) (attention_scale=1.0), and with tied
embeddings it rescales the decoder output by d_model**-0.5 before the LM head (lm_head_input_scale).
T5 v1.0 uses a ReLU feed-forward; v1.1 / Flan-T5 a gated GELU (tanh approximation): our `geglu_new`.
"""

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import I, Source, carried_fields, common_fields, escape

# feed_forward_proj -> our hidden_act
_FEED_FORWARD = {"relu": "relu", "gelu": "gelu", "gated-gelu": "geglu_new", "gated-silu": "swiglu"}


def _t5_config(config: dict) -> ht.TformerEncoderDecoderConfig:
    projection = config.get("feed_forward_proj", "relu")
    if projection not in _FEED_FORWARD:
        raise ValueError(f"feed_forward_proj={projection!r} is not supported; supported: {sorted(_FEED_FORWARD)}.")
    hidden, heads = config["d_model"], config["num_heads"]
    if config.get("d_kv", hidden // heads) * heads != hidden:
        raise ValueError(f"d_kv={config['d_kv']} x num_heads={heads} != d_model={hidden}; hf_tformer derives "
                         "head_dim as d_model // num_heads.")
    # v1.0 ties the LM head to the embeddings and rescales its input; v1.1 does neither. transformers 4.x tells
    # them apart by tie_word_embeddings; 5.x always writes tie_word_embeddings=True and scale_decoder_outputs.
    tied = bool(config.get("scale_decoder_outputs", config.get("tie_word_embeddings", True)))
    fields = common_fields(config, hidden_size="d_model", num_attention_heads="num_heads", intermediate_size="d_ff",
                           encoder_layers="num_layers", layer_norm_eps="layer_norm_epsilon",
                           relative_attention_num_buckets="relative_attention_num_buckets",
                           relative_attention_max_distance="relative_attention_max_distance",
                           hidden_dropout="dropout_rate", attention_dropout="dropout_rate",
                           decoder_start_token_id="decoder_start_token_id")
    fields.update(
        decoder_layers=config.get("num_decoder_layers") or config["num_layers"],
        hidden_act=_FEED_FORWARD[projection], position_embedding_type="relative", attention_scale=1.0,
        lm_head_input_scale=hidden**-0.5 if tied else 1.0, norm_type="rmsnorm", norm_placement="pre",
        attention_bias=False, mlp_bias=False, lm_head_bias=False, embedding_layernorm=False, scale_embeddings=False,
        type_vocab_size=0, tie_word_embeddings=tied, bos_token_id=None,
    )
    fields.setdefault("decoder_start_token_id", fields.get("pad_token_id", 0))
    return ht.TformerEncoderDecoderConfig(**fields)


def _t5_native(config: ht.TformerConfig) -> dict:
    projections = {ours: theirs for theirs, ours in _FEED_FORWARD.items()}
    if config.hidden_act not in projections:
        raise ValueError(f"hidden_act={config.hidden_act!r} has no T5 feed_forward_proj; T5 takes "
                         f"{sorted(projections)}.")
    return dict(
        carried_fields(config), d_model=config.hidden_size, d_kv=config.head_dim, d_ff=config.intermediate_size,
        num_layers=config.encoder_layers, num_decoder_layers=config.decoder_layers,
        num_heads=config.num_attention_heads, relative_attention_num_buckets=config.relative_attention_num_buckets,
        relative_attention_max_distance=config.relative_attention_max_distance,
        layer_norm_epsilon=config.layer_norm_eps, dropout_rate=config.hidden_dropout,
        feed_forward_proj=projections[config.hidden_act], decoder_start_token_id=config.decoder_start_token_id,
    )


# T5's sublayer module names -> ours, by (stack, sublayer index) of `{stack}.block.{i}.layer.{index}.{name}.weight`
def _attention(theirs: str, ours: str, norm: str) -> dict[str, str]:
    return {**{f"{theirs}.{n}": f"{ours}.{n}_proj" for n in "qkvo"}, "layer_norm": norm}


_FEED_FORWARD_NAMES = {"DenseReluDense.wi": "mlp.up_proj", "DenseReluDense.wi_0": "mlp.gate_proj",
                       "DenseReluDense.wi_1": "mlp.up_proj", "DenseReluDense.wo": "mlp.down_proj",
                       "layer_norm": "mlp_norm"}
_SUBLAYERS = {
    ("encoder", "0"): _attention("SelfAttention", "self_attn", "self_attn_norm"),
    ("encoder", "1"): _FEED_FORWARD_NAMES,
    ("decoder", "0"): _attention("SelfAttention", "self_attn", "self_attn_norm"),
    ("decoder", "1"): _attention("EncDecAttention", "cross_attn", "cross_attn_norm"),
    ("decoder", "2"): _FEED_FORWARD_NAMES,
}


def _t5_rules(config: dict, target: type) -> list[Rule]:
    found = [
        rule(r"shared\.weight", "model.shared.weight"),
        rule(r"(?:encoder|decoder)\.embed_tokens\.weight"),  # the shared table, stored again when tied
        rule(r"(?P<s>encoder|decoder)\.block\.0\.layer\.0\.SelfAttention\.relative_attention_bias\.weight",
             "model.{s}.relative_position_bias.embeddings.weight"),
        rule(r"(?P<s>encoder|decoder)\.final_layer_norm\.weight", "model.{s}.final_norm.weight"),
        rule(r"lm_head\.weight", "lm_head.weight"),
    ]
    for (stack, index), names in _SUBLAYERS.items():
        for theirs, ours in names.items():
            found.append(rule(rf"{stack}\.block\.{I}\.layer\.{index}\.{escape(theirs)}\.weight",
                              f"model.{stack}.layers.{{i}}.{ours}.weight"))
    return found


T5 = Source(
    model_types=("t5",),
    classes={
        "T5Model": ("T5Model", ht.TformerEncoderDecoderModel),
        "T5ForConditionalGeneration": ("T5ForConditionalGeneration", ht.TformerEncoderDecoderForConditionalGeneration),
    },
    translate_config=_t5_config,
    native_config=_t5_native,
    rules=_t5_rules,
    notes="T5's relative position bias, unscaled attention and d_model**-0.5 LM-head rescaling (tied embeddings) "
          "are config fields here (position_embedding_type='relative', attention_scale, lm_head_input_scale).",
)
