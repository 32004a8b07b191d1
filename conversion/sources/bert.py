"""BERT and RoBERTa -> encoder (post-LN, learned positions, token types). One rule set, two prefixes and heads."""

from typing import Callable

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import I, P, Source, activation, carried_fields, common_fields, drop_rows, plain_activation


def _encoder_config(config: dict, **extra) -> ht.TformerEncoderConfig:
    return ht.TformerEncoderConfig(
        **common_fields(config, hidden_size="hidden_size", num_hidden_layers="num_hidden_layers",
                        num_attention_heads="num_attention_heads", intermediate_size="intermediate_size",
                        max_position_embeddings="max_position_embeddings", type_vocab_size="type_vocab_size",
                        layer_norm_eps="layer_norm_eps", hidden_dropout="hidden_dropout_prob",
                        attention_dropout="attention_probs_dropout_prob", classifier_dropout="classifier_dropout"),
        hidden_act=activation(config.get("hidden_act", "gelu")),
        norm_placement="post", position_embedding_type="learned", embedding_layernorm=True, **extra,
    )


def _bert_native(config: ht.TformerConfig, position_offset: int = 0) -> dict:
    return dict(
        carried_fields(config), hidden_size=config.hidden_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads, intermediate_size=config.intermediate_size,
        hidden_act=plain_activation(config, "BERT"),
        max_position_embeddings=config.max_position_embeddings + position_offset,
        type_vocab_size=config.type_vocab_size, layer_norm_eps=config.layer_norm_eps,
        hidden_dropout_prob=config.hidden_dropout, attention_probs_dropout_prob=config.attention_dropout,
        classifier_dropout=config.classifier_dropout,
    )


def _roberta_native(config: ht.TformerConfig) -> dict:
    return _bert_native(config, position_offset=_roberta_offset({"pad_token_id": config.pad_token_id}))


def _check_absolute_positions(config: dict) -> None:
    kind = config.get("position_embedding_type", "absolute")
    if kind != "absolute":
        raise ValueError(f"position_embedding_type={kind!r} is not supported; only 'absolute' positions convert.")


def _bert_config(config: dict) -> ht.TformerEncoderConfig:
    _check_absolute_positions(config)
    return _encoder_config(config)


def _roberta_offset(config: dict) -> int:
    # RoBERTa numbers real tokens from padding_idx + 1; rows up to padding_idx only ever serve padding.
    return config.get("pad_token_id", 1) + 1


def _roberta_config(config: dict) -> ht.TformerEncoderConfig:
    _check_absolute_positions(config)
    translated = _encoder_config(config)
    translated.max_position_embeddings = config["max_position_embeddings"] - _roberta_offset(config)
    translated.validate_tformer()
    return translated


def _encoder_rules(prefix: str, lm_head: list[Rule], position_transform=None) -> Callable[[dict, type], list[Rule]]:
    def rules(config: dict, target: type) -> list[Rule]:
        b, layer, ours = rf"(?:{prefix}\.)?", rf"(?:{prefix}\.)?encoder\.layer\.{I}\.", "model.encoder.layers.{i}."
        positions = {"transform": position_transform(config)} if position_transform else {}
        found = [
            rule(rf"{b}embeddings\.word_embeddings\.weight", "model.embed_tokens.weight"),
            rule(rf"{b}embeddings\.position_embeddings\.weight",
                 "model.encoder.embeddings.position_embeddings.weight", **positions),
            rule(rf"{b}embeddings\.token_type_embeddings\.weight",
                 "model.encoder.embeddings.token_type_embeddings.weight"),
            rule(rf"{b}embeddings\.LayerNorm\.{P}", "model.encoder.embeddings.layernorm.{p}"),
            rule(rf"{b}embeddings\.(position_ids|token_type_ids)"),  # buffers we recompute
            rule(rf"{layer}attention\.self\.query\.{P}", ours + "self_attn.q_proj.{p}"),
            rule(rf"{layer}attention\.self\.key\.{P}", ours + "self_attn.k_proj.{p}"),
            rule(rf"{layer}attention\.self\.value\.{P}", ours + "self_attn.v_proj.{p}"),
            rule(rf"{layer}attention\.output\.dense\.{P}", ours + "self_attn.o_proj.{p}"),
            rule(rf"{layer}attention\.output\.LayerNorm\.{P}", ours + "self_attn_norm.{p}"),
            rule(rf"{layer}intermediate\.dense\.{P}", ours + "mlp.up_proj.{p}"),
            rule(rf"{layer}output\.dense\.{P}", ours + "mlp.down_proj.{p}"),
            rule(rf"{layer}output\.LayerNorm\.{P}", ours + "mlp_norm.{p}"),
            rule(r"qa_outputs\." + P, "qa_outputs.{p}"),
            *lm_head,
        ]
        if target is ht.TformerEncoderForSequenceClassification and prefix == "bert":
            # BERT pools with its pooler and classifies with `classifier`: together, our pooled head.
            found += [rule(rf"{b}pooler\.dense\.{P}", "classifier.dense.{p}"),
                      rule(r"classifier\." + P, "classifier.out_proj.{p}")]
        elif target is ht.TformerEncoderForSequenceClassification:
            found += [rule(r"classifier\.(?P<n>dense|out_proj)\." + P, "classifier.{n}.{p}")]
        else:  # the pooler only serves sequence classification; elsewhere it is dropped on purpose
            found += [rule(rf"{b}pooler\.dense\.{P}"), rule(r"classifier\." + P, "classifier.{p}")]
        return found

    return rules


BERT = Source(
    model_types=("bert",),
    classes={
        "BertModel": ("BertModel", ht.TformerEncoderModel),
        "BertForMaskedLM": ("BertForMaskedLM", ht.TformerEncoderForMaskedLM),
        "BertForSequenceClassification": ("BertForSequenceClassification", ht.TformerEncoderForSequenceClassification),
        "BertForTokenClassification": ("BertForTokenClassification", ht.TformerEncoderForTokenClassification),
        "BertForQuestionAnswering": ("BertForQuestionAnswering", ht.TformerEncoderForQuestionAnswering),
    },
    translate_config=_bert_config,
    native_config=_bert_native,
    rules=_encoder_rules("bert", [
        rule(r"cls\.predictions\.transform\.dense\." + P, "lm_head.dense.{p}"),
        rule(r"cls\.predictions\.transform\.LayerNorm\." + P, "lm_head.layernorm.{p}"),
        rule(r"cls\.predictions\.decoder\.weight", "lm_head.decoder.weight"),
        rule(r"cls\.predictions\.(?:decoder\.)?bias", "lm_head.decoder.bias"),
    ]),
)

ROBERTA = Source(
    model_types=("roberta", "xlm-roberta"),
    classes={
        f"{family}{head}": (f"{family}{head}", ours)
        for family in ("Roberta", "XLMRoberta")
        for head, ours in (("Model", ht.TformerEncoderModel), ("ForMaskedLM", ht.TformerEncoderForMaskedLM),
                           ("ForSequenceClassification", ht.TformerEncoderForSequenceClassification),
                           ("ForTokenClassification", ht.TformerEncoderForTokenClassification),
                           ("ForQuestionAnswering", ht.TformerEncoderForQuestionAnswering))
    },
    translate_config=_roberta_config,
    native_config=_roberta_native,
    rules=_encoder_rules("roberta", [
        rule(r"lm_head\.dense\." + P, "lm_head.dense.{p}"),
        rule(r"lm_head\.layer_norm\." + P, "lm_head.layernorm.{p}"),
        rule(r"lm_head\.decoder\.weight", "lm_head.decoder.weight"),
        rule(r"lm_head\.(?:decoder\.)?bias", "lm_head.decoder.bias"),
    ], position_transform=lambda config: drop_rows(_roberta_offset(config))),
    notes="Positions count from the first token, as RoBERTa's do for right-padded input (its tokenizers pad "
          "right); left-padded input numbers positions differently from RoBERTa.",
)
