"""GPT-2 -> decoder (pre-LN, learned positions): Conv1D weights transposed, the fused c_attn split into q, k, v."""

import torch

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import I, P, Source, activation, carried_fields, common_fields, plain_activation, transpose


def _gpt2_config(config: dict) -> ht.TformerDecoderConfig:
    hidden = config["n_embd"]
    fields = common_fields(config, hidden_size="n_embd", num_hidden_layers="n_layer", num_attention_heads="n_head",
                           max_position_embeddings="n_positions", layer_norm_eps="layer_norm_epsilon",
                           hidden_dropout="resid_pdrop", attention_dropout="attn_pdrop")
    fields.update(hidden_act=activation(config.get("activation_function", "gelu_new")),
                  intermediate_size=config.get("n_inner") or 4 * hidden, norm_placement="pre",
                  position_embedding_type="learned", pad_token_id=fields.get("pad_token_id", 0))
    return ht.TformerDecoderConfig(**fields)


def _gpt2_native(config: ht.TformerConfig) -> dict:
    return dict(
        carried_fields(config), n_embd=config.hidden_size, n_layer=config.num_hidden_layers,
        n_head=config.num_attention_heads, n_positions=config.max_position_embeddings,
        n_inner=config.intermediate_size, activation_function=plain_activation(config, "GPT-2"),
        layer_norm_epsilon=config.layer_norm_eps, resid_pdrop=config.hidden_dropout,
        embd_pdrop=config.hidden_dropout, attn_pdrop=config.attention_dropout,
    )


def _split_qkv(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """c_attn holds q, k, v side by side along its output dimension."""
    return tuple(transpose(tensor).chunk(3, dim=0))


def _gpt2_rules(config: dict, target: type) -> list[Rule]:
    if config.get("scale_attn_by_inverse_layer_idx") or config.get("reorder_and_upcast_attn"):
        raise ValueError("GPT-2 with scale_attn_by_inverse_layer_idx or reorder_and_upcast_attn is not supported.")
    t, block, ours = r"(?:transformer\.)?", rf"(?:transformer\.)?h\.{I}\.", "model.decoder.layers.{i}."
    return [
        rule(rf"{t}wte\.weight", "model.embed_tokens.weight"),
        rule(rf"{t}wpe\.weight", "model.decoder.embeddings.position_embeddings.weight"),
        rule(rf"{t}ln_f\.{P}", "model.decoder.final_norm.{p}"),
        rule(rf"{block}attn\.(bias|masked_bias)"),  # causal-mask buffers of older checkpoints
        rule(rf"{block}attn\.c_attn\.{P}", *(ours + f"self_attn.{n}_proj.{{p}}" for n in "qkv"), transform=_split_qkv),
        rule(rf"{block}attn\.c_proj\.{P}", ours + "self_attn.o_proj.{p}", transform=transpose),
        rule(rf"{block}mlp\.c_fc\.{P}", ours + "mlp.up_proj.{p}", transform=transpose),
        rule(rf"{block}mlp\.c_proj\.{P}", ours + "mlp.down_proj.{p}", transform=transpose),
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
    native_config=_gpt2_native,
    rules=_gpt2_rules,
)
