"""What each supported source family needs: its config translation, its key rules and its class pairs.

A source is data over the shared machinery in keymap.py: no per-key code.
"""

from dataclasses import dataclass
from typing import Callable

import torch
import transformers

import hf_tformer as ht

from .keymap import Rule, rule

P = r"(?P<p>weight|bias)"
I = r"(?P<i>\d+)"


@dataclass(frozen=True)
class Source:
    model_types: tuple[str, ...]
    classes: dict[str, tuple[str, type]]  # source architecture -> (reference class name in transformers, our class)
    translate_config: Callable[[dict], ht.TformerConfig]
    rules: Callable[[dict, type], list[Rule]]

    def reference_class(self, architecture: str) -> type:
        return getattr(transformers, self.classes[architecture][0])

    def target_class(self, architecture: str) -> type:
        return self.classes[architecture][1]


def _common(config: dict, **mapping: str) -> dict:
    """Copy fields that keep their meaning, renaming where the source names them differently."""
    out = {ours: config[theirs] for ours, theirs in mapping.items() if config.get(theirs) is not None}
    for name in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "initializer_range", "id2label",
                 "label2id", "problem_type", "tie_word_embeddings"):
        if config.get(name) is not None:
            out.setdefault(name, config[name])
    if "id2label" in out:
        out["id2label"] = {int(k): v for k, v in out["id2label"].items()}
    return out


# --- BERT -------------------------------------------------------------------------------------------------------

def _bert_config(config: dict) -> ht.TformerEncoderConfig:
    return ht.TformerEncoderConfig(
        **_common(config, hidden_size="hidden_size", num_hidden_layers="num_hidden_layers",
                  num_attention_heads="num_attention_heads", intermediate_size="intermediate_size",
                  hidden_act="hidden_act", max_position_embeddings="max_position_embeddings",
                  type_vocab_size="type_vocab_size", layer_norm_eps="layer_norm_eps",
                  hidden_dropout="hidden_dropout_prob", attention_dropout="attention_probs_dropout_prob",
                  classifier_dropout="classifier_dropout"),
        norm_placement="post", position_embedding_type="learned", embedding_layernorm=True,
    )


def _bert_rules(config: dict, target: type) -> list[Rule]:
    b, layer = r"(?:bert\.)?", rf"(?:bert\.)?encoder\.layer\.{I}\."
    ours = "model.encoder.layers.{i}."
    rules = [
        rule(rf"{b}embeddings\.word_embeddings\.weight", "model.embed_tokens.weight"),
        rule(rf"{b}embeddings\.position_embeddings\.weight", "model.encoder.embeddings.position_embeddings.weight"),
        rule(rf"{b}embeddings\.token_type_embeddings\.weight", "model.encoder.embeddings.token_type_embeddings.weight"),
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
        rule(r"cls\.predictions\.transform\.dense\." + P, "lm_head.dense.{p}"),
        rule(r"cls\.predictions\.transform\.LayerNorm\." + P, "lm_head.layernorm.{p}"),
        rule(r"cls\.predictions\.decoder\.weight", "lm_head.decoder.weight"),
        rule(r"cls\.predictions\.(?:decoder\.)?bias", "lm_head.decoder.bias"),
        rule(r"qa_outputs\." + P, "qa_outputs.{p}"),
    ]
    if target is ht.TformerEncoderForSequenceClassification:
        rules += [rule(rf"{b}pooler\.dense\.{P}", "classifier.dense.{p}"), rule(r"classifier\." + P, "classifier.out_proj.{p}")]
    else:  # the pooler only serves sequence classification; elsewhere it is dropped on purpose
        rules += [rule(rf"{b}pooler\.dense\.{P}"), rule(r"classifier\." + P, "classifier.{p}")]
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
    rules=_bert_rules,
)


# --- GPT-2 ------------------------------------------------------------------------------------------------------

def _gpt2_config(config: dict) -> ht.TformerDecoderConfig:
    hidden = config["n_embd"]
    return ht.TformerDecoderConfig(
        **_common(config, hidden_size="n_embd", num_hidden_layers="n_layer", num_attention_heads="n_head",
                  hidden_act="activation_function", max_position_embeddings="n_positions",
                  layer_norm_eps="layer_norm_epsilon", hidden_dropout="resid_pdrop", attention_dropout="attn_pdrop"),
        intermediate_size=config.get("n_inner") or 4 * hidden,
        norm_placement="pre", position_embedding_type="learned",
        pad_token_id=config.get("pad_token_id") if config.get("pad_token_id") is not None else 0,
    )


def _conv1d(tensor: torch.Tensor) -> torch.Tensor:
    """Conv1D keeps (in, out); nn.Linear wants (out, in). Biases pass unchanged."""
    return tensor.t() if tensor.dim() == 2 else tensor


def _split_qkv(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """c_attn holds q, k, v side by side along its output dimension."""
    tensor = _conv1d(tensor)
    return tuple(tensor.chunk(3, dim=0))


def _gpt2_rules(config: dict, target: type) -> list[Rule]:
    t, block, ours = r"(?:transformer\.)?", rf"(?:transformer\.)?h\.{I}\.", "model.decoder.layers.{i}."
    return [
        rule(rf"{t}wte\.weight", "model.embed_tokens.weight"),
        rule(rf"{t}wpe\.weight", "model.decoder.embeddings.position_embeddings.weight"),
        rule(rf"{t}ln_f\.{P}", "model.decoder.final_norm.{p}"),
        rule(rf"{block}attn\.(bias|masked_bias)"),  # causal-mask buffers of older checkpoints
        rule(rf"{block}attn\.c_attn\.{P}", *(ours + f"self_attn.{n}_proj.{{p}}" for n in "qkv"), transform=_split_qkv),
        rule(rf"{block}attn\.c_proj\.{P}", ours + "self_attn.o_proj.{p}", transform=_conv1d),
        rule(rf"{block}mlp\.c_fc\.{P}", ours + "mlp.up_proj.{p}", transform=_conv1d),
        rule(rf"{block}mlp\.c_proj\.{P}", ours + "mlp.down_proj.{p}", transform=_conv1d),
        rule(rf"{block}ln_1\.{P}", ours + "self_attn_norm.{p}"),
        rule(rf"{block}ln_2\.{P}", ours + "mlp_norm.{p}"),
        rule(r"lm_head\.weight", "lm_head.weight"),
        rule(r"score\.weight", "score.weight"),
    ]


GPT2 = Source(
    model_types=("gpt2",),
    classes={
        "GPT2Model": ("GPT2Model", ht.TformerDecoderModel),
        "GPT2LMHeadModel": ("GPT2LMHeadModel", ht.TformerDecoderForCausalLM),
        "GPT2ForSequenceClassification": ("GPT2ForSequenceClassification", ht.TformerDecoderForSequenceClassification),
    },
    translate_config=_gpt2_config,
    rules=_gpt2_rules,
)


# --- BART -------------------------------------------------------------------------------------------------------

def _bart_config(config: dict) -> ht.TformerEncoderDecoderConfig:
    for ours, (enc, dec) in {"heads": ("encoder_attention_heads", "decoder_attention_heads"),
                             "ffn": ("encoder_ffn_dim", "decoder_ffn_dim")}.items():
        if config.get(enc) != config.get(dec):
            raise ValueError(f"BART with {enc}={config.get(enc)} != {dec}={config.get(dec)} is not supported: "
                             f"hf_tformer's encoder and decoder share one {ours} setting.")
    return ht.TformerEncoderDecoderConfig(
        **_common(config, hidden_size="d_model", encoder_layers="encoder_layers", decoder_layers="decoder_layers",
                  num_attention_heads="encoder_attention_heads", intermediate_size="encoder_ffn_dim",
                  hidden_act="activation_function", max_position_embeddings="max_position_embeddings",
                  hidden_dropout="dropout", attention_dropout="attention_dropout",
                  activation_dropout="activation_dropout", classifier_dropout="classifier_dropout",
                  decoder_start_token_id="decoder_start_token_id"),
        scale_embeddings=bool(config.get("scale_embedding", False)), position_embedding_type="learned",
        norm_placement="post", embedding_layernorm=True, lm_head_bias=True, layer_norm_eps=1e-5,
    )


def _drop_position_offset(tensor: torch.Tensor) -> torch.Tensor:
    """BART's learned position table starts at row 2 (fairseq's offset)."""
    return tensor[2:]


def _flatten_bias(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1)


def _bart_rules(config: dict, target: type) -> list[Rule]:
    m = r"(?:model\.)?"
    names = {"self_attn.q_proj": "self_attn.q_proj", "self_attn.k_proj": "self_attn.k_proj",
             "self_attn.v_proj": "self_attn.v_proj", "self_attn.out_proj": "self_attn.o_proj",
             "self_attn_layer_norm": "self_attn_norm", "encoder_attn.q_proj": "cross_attn.q_proj",
             "encoder_attn.k_proj": "cross_attn.k_proj", "encoder_attn.v_proj": "cross_attn.v_proj",
             "encoder_attn.out_proj": "cross_attn.o_proj", "encoder_attn_layer_norm": "cross_attn_norm",
             "fc1": "mlp.up_proj", "fc2": "mlp.down_proj", "final_layer_norm": "mlp_norm"}
    rules = [
        rule(rf"{m}shared\.weight", "model.shared.weight"),
        rule(rf"{m}(?P<s>encoder|decoder)\.embed_tokens\.weight"),  # the shared table, stored again when tied
        rule(rf"{m}(?P<s>encoder|decoder)\.embed_positions\.weight",
             "model.{s}.embeddings.position_embeddings.weight", transform=_drop_position_offset),
        rule(rf"{m}(?P<s>encoder|decoder)\.layernorm_embedding\.{P}", "model.{s}.embeddings.layernorm.{p}"),
        rule(r"final_logits_bias", "lm_head.bias", transform=_flatten_bias),
        rule(r"lm_head\.weight", "lm_head.weight"),
    ]
    for theirs, ours in names.items():
        rules.append(rule(rf"{m}(?P<s>encoder|decoder)\.layers\.{I}\.{re_escape(theirs)}\.{P}",
                          "model.{s}.layers.{i}." + ours + ".{p}"))
    return rules


def re_escape(name: str) -> str:
    return name.replace(".", r"\.")


BART = Source(
    model_types=("bart",),
    classes={
        "BartModel": ("BartModel", ht.TformerEncoderDecoderModel),
        "BartForConditionalGeneration": ("BartForConditionalGeneration", ht.TformerEncoderDecoderForConditionalGeneration),
    },
    translate_config=_bart_config,
    rules=_bart_rules,
)

SOURCES = {model_type: source for source in (BERT, GPT2, BART) for model_type in source.model_types}
