"""Mixtral and Qwen2-MoE -> decoder with sparse mixture-of-experts feed-forwards (hf_tformer/moe.py).

Both are Llama's layout plus a router (`gate`) and experts per MoE layer; Qwen2-MoE adds a sigmoid-gated shared
expert, q/k/v biases without an output bias, and dense layers where `mlp_only_layers` / `decoder_sparse_step` say.
Expert weights come in two layouts: one Linear per expert (what transformers 4.57 and 5.x write to disk, and 4.57's
modules: Mixtral `block_sparse_moe.experts.E.w1/w3/w2`, Qwen2-MoE `mlp.experts.E.gate/up/down_proj`) and 5.x's
modules, which fuse them into 3-D tensors (`mlp.experts.gate_up_proj` (experts, 2 * inner, hidden), gate rows
first, and `mlp.experts.down_proj` (experts, hidden, inner)). The rules read both, so the way back fills whichever
the running transformers builds.
"""

from typing import Optional

import torch

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import Source
from .llama import _llama_config, _llama_native, _llama_rules
from .mistral_qwen import _classes

_OURS = "model.decoder.layers.{i}."
_LAYER = r"(?:model\.)?layers\.(?P<i>\d+)\."


def _split_gate_up(num_experts: int):
    def split(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # (experts, 2 * inner, hidden) -> expert 0 gate (inner, hidden), expert 0 up, expert 1 gate, ...
        return tuple(part for index in range(num_experts) for part in tensor[index].chunk(2, dim=0))

    return split


def _unbind(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(tensor.unbind(0))  # (experts, hidden, inner) -> one (hidden, inner) per expert


def _expert_rules(num_experts: int, block: str, names: dict[str, str]) -> list[Rule]:
    """Router and experts of every MoE layer; `names`: the per-expert Linear names -> ours."""
    experts = [f"{_OURS}mlp.experts.{index}." for index in range(num_experts)]
    rules = [rule(rf"{_LAYER}(?:{block}|mlp)\.gate\.weight", _OURS + "mlp.gate.weight")]
    rules += [rule(rf"{_LAYER}{block}\.experts\.(?P<e>\d+)\.{theirs}\.weight",
                   _OURS + "mlp.experts.{e}." + ours + ".weight") for theirs, ours in names.items()]
    rules.append(rule(rf"{_LAYER}mlp\.experts\.gate_up_proj",
                      *[expert + f"{name}.weight" for expert in experts for name in ("gate_proj", "up_proj")],
                      transform=_split_gate_up(num_experts)))
    rules.append(rule(rf"{_LAYER}mlp\.experts\.down_proj", *[expert + "down_proj.weight" for expert in experts],
                      transform=_unbind))
    return rules


def _moe_fields(config: dict, num_experts: int) -> dict:
    return dict(num_experts=num_experts, num_experts_per_tok=config.get("num_experts_per_tok", 2),
                router_aux_loss_coef=config.get("router_aux_loss_coef", 0.001),
                output_router_logits=bool(config.get("output_router_logits", False)))


def _moe_native(config: ht.TformerConfig, family: str) -> dict:
    """Llama's native fields less the biases these families do not take, plus the router settings."""
    native = _llama_native(config)
    for name in ("attention_bias", "mlp_bias"):
        native.pop(name)
    if config.mlp_bias:
        raise ValueError(f"mlp_bias=True: {family}'s experts have no biases; only mlp_bias=False converts.")
    return dict(native, num_experts_per_tok=config.num_experts_per_tok, router_aux_loss_coef=config.router_aux_loss_coef,
                output_router_logits=config.output_router_logits)


def _mixtral_config(config: dict) -> ht.TformerDecoderConfig:
    return _llama_config(config, "Mixtral", sliding_window=config.get("sliding_window"), norm_topk_prob=True,
                         **_moe_fields(config, config.get("num_local_experts", 8)))


def _mixtral_native(config: ht.TformerConfig) -> dict:
    if not config.num_experts or config.moe_layers is not None or config.shared_expert_intermediate_size:
        raise ValueError(f"num_experts={config.num_experts}, moe_layers={config.moe_layers}, shared_expert_"
                         f"intermediate_size={config.shared_expert_intermediate_size}: Mixtral routes every layer "
                         "through experts (moe_layers=None) and has no shared expert; try qwen2_moe.")
    if not config.norm_topk_prob or config.layer_types is not None:
        raise ValueError(f"norm_topk_prob={config.norm_topk_prob}, layer_types={config.layer_types}: Mixtral "
                         "renormalises the top-k weights and slides its window over every layer or none.")
    return dict(_moe_native(config, "Mixtral"), intermediate_size=config.expert_intermediate_size,
                num_local_experts=config.num_experts, sliding_window=config.sliding_window)


def _mixtral_rules(config: dict, target: type) -> list[Rule]:
    names = {"w1": "gate_proj", "w3": "up_proj", "w2": "down_proj"}
    return _llama_rules(config, target) + _expert_rules(config.get("num_local_experts", 8), "block_sparse_moe", names)


def _sparse_layers(config: dict) -> Optional[list[int]]:
    """Qwen2-MoE's per-layer choice as the list of MoE layers (None: every layer)."""
    count, step = config["num_hidden_layers"], config.get("decoder_sparse_step", 1)
    dense = set(config.get("mlp_only_layers") or ())
    layers = [index for index in range(count) if index not in dense and (index + 1) % step == 0]
    return None if len(layers) == count else layers


def _qwen2_moe_config(config: dict) -> ht.TformerDecoderConfig:
    if config.get("use_sliding_window"):
        raise ValueError("use_sliding_window=True is not supported for Qwen2-MoE (its window layers follow "
                         "max_window_layers differently on 4.57 and 5.x); only full attention converts.")
    experts = config.get("num_experts", 60)
    return _llama_config(
        config, "Qwen2-MoE", attention_bias=bool(config.get("qkv_bias", True)), attention_out_bias=False,
        norm_topk_prob=bool(config.get("norm_topk_prob", False)), moe_intermediate_size=config["moe_intermediate_size"],
        shared_expert_intermediate_size=config["shared_expert_intermediate_size"],
        moe_layers=_sparse_layers(config) if experts else None, **_moe_fields(config, experts))


def _qwen2_moe_native(config: ht.TformerConfig) -> dict:
    if not config.num_experts or not config.shared_expert_intermediate_size or config.attention_out_bias:
        raise ValueError(f"num_experts={config.num_experts}, shared_expert_intermediate_size="
                         f"{config.shared_expert_intermediate_size}, attention_out_bias={config.attention_out_bias}: "
                         "Qwen2-MoE has experts, a shared expert and no output-projection bias.")
    if config.sliding_window is not None:
        raise ValueError(f"sliding_window={config.sliding_window}: only full attention converts to Qwen2-MoE.")
    layers = range(config.num_hidden_layers)
    return dict(_moe_native(config, "Qwen2-MoE"), qkv_bias=config.attention_bias, num_experts=config.num_experts,
                norm_topk_prob=config.norm_topk_prob, moe_intermediate_size=config.expert_intermediate_size,
                shared_expert_intermediate_size=config.shared_expert_intermediate_size, decoder_sparse_step=1,
                mlp_only_layers=[index for index in layers if not config.is_moe_layer(index)],
                use_sliding_window=False)


def _qwen2_moe_rules(config: dict, target: type) -> list[Rule]:
    names = {name: name for name in ("gate_proj", "up_proj", "down_proj")}
    shared = [rule(rf"{_LAYER}mlp\.shared_expert\.(?P<n>gate_proj|up_proj|down_proj)\.weight",
                   _OURS + "mlp.shared_expert.{n}.weight"),
              rule(rf"{_LAYER}mlp\.shared_expert_gate\.weight", _OURS + "mlp.shared_expert_gate.weight")]
    return _llama_rules(config, target) + _expert_rules(config.get("num_experts", 60), "mlp", names) + shared


_NOTES = "router_jitter_noise (Mixtral's training-time input noise) is not applied."
MIXTRAL = Source(model_types=("mixtral",), classes=_classes("Mixtral"), translate_config=_mixtral_config,
                 native_config=_mixtral_native, rules=_mixtral_rules, notes=_NOTES)
QWEN2_MOE = Source(model_types=("qwen2_moe",), classes=_classes("Qwen2Moe"), translate_config=_qwen2_moe_config,
                   native_config=_qwen2_moe_native, rules=_qwen2_moe_rules)
