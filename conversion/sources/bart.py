"""BART and Marian -> encoder-decoder (post-LN, shared embeddings, final_logits_bias as the LM-head bias).

The two differ only in positions: BART learns a table offset by 2 (fairseq) and normalises the embeddings;
Marian (the 2017 Transformer) uses fixed sinusoids, which we compute, and scales the embeddings by sqrt(d_model).
"""

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import (I, P, Source, activation, carried_fields, common_fields, drop_rows, escape, flatten,
                   plain_activation, require_equal)

# Their layer module names -> ours (both stacks).
_LAYER_NAMES = {
    "self_attn.q_proj": "self_attn.q_proj", "self_attn.k_proj": "self_attn.k_proj",
    "self_attn.v_proj": "self_attn.v_proj", "self_attn.out_proj": "self_attn.o_proj",
    "self_attn_layer_norm": "self_attn_norm", "encoder_attn.q_proj": "cross_attn.q_proj",
    "encoder_attn.k_proj": "cross_attn.k_proj", "encoder_attn.v_proj": "cross_attn.v_proj",
    "encoder_attn.out_proj": "cross_attn.o_proj", "encoder_attn_layer_norm": "cross_attn_norm",
    "fc1": "mlp.up_proj", "fc2": "mlp.down_proj", "final_layer_norm": "mlp_norm",
}


def _seq2seq_config(config: dict, family: str, **extra) -> ht.TformerEncoderDecoderConfig:
    require_equal(config, family, "head count", "encoder_attention_heads", "decoder_attention_heads")
    require_equal(config, family, "feed-forward size", "encoder_ffn_dim", "decoder_ffn_dim")
    return ht.TformerEncoderDecoderConfig(
        **common_fields(config, hidden_size="d_model", encoder_layers="encoder_layers",
                        decoder_layers="decoder_layers", num_attention_heads="encoder_attention_heads",
                        intermediate_size="encoder_ffn_dim", max_position_embeddings="max_position_embeddings",
                        hidden_dropout="dropout", attention_dropout="attention_dropout",
                        activation_dropout="activation_dropout", classifier_dropout="classifier_dropout",
                        decoder_start_token_id="decoder_start_token_id"),
        hidden_act=activation(config.get("activation_function", "gelu")),
        scale_embeddings=bool(config.get("scale_embedding", False)), norm_placement="post", lm_head_bias=True,
        layer_norm_eps=1e-5, **extra,
    )


def _bart_config(config: dict) -> ht.TformerEncoderDecoderConfig:
    return _seq2seq_config(config, "BART", position_embedding_type="learned", embedding_layernorm=True)


def _marian_config(config: dict) -> ht.TformerEncoderDecoderConfig:
    if not config.get("share_encoder_decoder_embeddings", True) or \
            config.get("decoder_vocab_size", config["vocab_size"]) != config["vocab_size"]:
        raise ValueError("Marian with separate source and target vocabularies (share_encoder_decoder_embeddings="
                         "False) is not supported: hf_tformer's encoder-decoder shares one embedding table.")
    return _seq2seq_config(config, "Marian", position_embedding_type="sinusoidal", embedding_layernorm=False)


def _seq2seq_native(config: ht.TformerConfig, family: str, **extra) -> dict:
    return dict(
        carried_fields(config), d_model=config.hidden_size, encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers, encoder_attention_heads=config.num_attention_heads,
        decoder_attention_heads=config.num_attention_heads, encoder_ffn_dim=config.intermediate_size,
        decoder_ffn_dim=config.intermediate_size, max_position_embeddings=config.max_position_embeddings,
        activation_function=plain_activation(config, family), dropout=config.hidden_dropout,
        attention_dropout=config.attention_dropout, activation_dropout=config.activation_dropout,
        classifier_dropout=config.classifier_dropout or 0.0, scale_embedding=config.scale_embeddings,
        decoder_start_token_id=config.decoder_start_token_id, **extra,
    )


def _bart_native(config: ht.TformerConfig) -> dict:
    return _seq2seq_native(config, "BART")


def _marian_native(config: ht.TformerConfig) -> dict:
    return _seq2seq_native(config, "Marian", decoder_vocab_size=config.vocab_size,
                           share_encoder_decoder_embeddings=True)


def _seq2seq_rules(positions: Rule, *extra: Rule):
    def rules(config: dict, target: type) -> list[Rule]:
        m = r"(?:model\.)?"
        found = [
            rule(rf"{m}shared\.weight", "model.shared.weight"),
            rule(rf"{m}(?P<s>encoder|decoder)\.embed_tokens\.weight"),  # the shared table, stored again when tied
            positions,
            *extra,
            rule(r"final_logits_bias", "lm_head.bias", transform=flatten),
            rule(r"lm_head\.weight", "lm_head.weight"),
        ]
        for theirs, ours in _LAYER_NAMES.items():
            found.append(rule(rf"{m}(?P<s>encoder|decoder)\.layers\.{I}\.{escape(theirs)}\.{P}",
                              "model.{s}.layers.{i}." + ours + ".{p}"))
        return found

    return rules


_STACK = r"(?:model\.)?(?P<s>encoder|decoder)\."

BART = Source(
    model_types=("bart",),
    classes={
        "BartModel": ("BartModel", ht.TformerEncoderDecoderModel),
        "BartForConditionalGeneration": ("BartForConditionalGeneration", ht.TformerEncoderDecoderForConditionalGeneration),
    },
    translate_config=_bart_config,
    native_config=_bart_native,
    rules=_seq2seq_rules(
        rule(_STACK + r"embed_positions\.weight", "model.{s}.embeddings.position_embeddings.weight",
             transform=drop_rows(2)),
        rule(_STACK + rf"layernorm_embedding\.{P}", "model.{s}.embeddings.layernorm.{p}"),
    ),
)

MARIAN = Source(
    model_types=("marian",),
    classes={
        "MarianModel": ("MarianModel", ht.TformerEncoderDecoderModel),
        "MarianMTModel": ("MarianMTModel", ht.TformerEncoderDecoderForConditionalGeneration),
    },
    translate_config=_marian_config,
    native_config=_marian_native,
    # The stored sinusoid tables are dropped: hf_tformer computes the same sinusoids (the parity gate proves it).
    rules=_seq2seq_rules(rule(_STACK + r"embed_positions\.weight")),
)
