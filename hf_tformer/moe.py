"""Sparse mixture-of-experts feed-forward (Mixtral, Qwen2-MoE) and its load-balancing loss.

A router picks `num_experts_per_tok` of `num_experts` gated MLPs per token; an optional shared expert, scaled by a
sigmoid gate, sees every token (Qwen2-MoE):

    probs = softmax(x W_router)                 (tokens, experts), in fp32
    w, e  = top_k(probs)                        renormalised to sum 1 when norm_topk_prob (Mixtral)
    y     = sum_j w_j * Expert_{e_j}(x)  [+ sigmoid(x W_shared_gate) * Shared(x)]

Eager path: the (token, expert) assignments are sorted by expert, the tokens gathered once, each active expert runs
once on its contiguous slice and the weighted results are scatter-added back: no loop over tokens. Under tracing,
export or compilation every expert runs over every token, weighted by a dense routing matrix (zero where a token did
not pick the expert): the same sum with static shapes and no data-dependent Python.
"""

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from .feed_forward import TformerFeedForward
from .linear import TformerLinear


def route(router_logits: torch.Tensor, top_k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights, experts), each (tokens, top_k): the top-k softmax probabilities (fp32) and the experts they pick."""
    probs = F.softmax(router_logits, dim=-1, dtype=torch.float32)
    weights, experts = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, experts


def group_by_expert(experts: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(order, counts): `order` sorts the flattened (tokens * top_k,) assignments by expert (stable, so a token's
    picks keep their rank order), `counts[e]` is how many assignments expert e received."""
    flat = experts.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=num_experts)
    return order, counts


def _static_shapes_needed() -> bool:
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


class TformerSparseMoe(nn.Module):
    """Drop-in for TformerFeedForward in the layers `config.is_moe_layer` names; returns (output, router_logits)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.num_experts = config.num_experts
        self.top_k = config.num_experts_per_tok
        self.norm_topk_prob = config.norm_topk_prob
        self.gate = TformerLinear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(
            TformerFeedForward(config, intermediate_size=config.expert_intermediate_size)
            for _ in range(config.num_experts)
        )
        if config.shared_expert_intermediate_size:
            self.shared_expert = TformerFeedForward(config, intermediate_size=config.shared_expert_intermediate_size)
            self.shared_expert_gate = TformerLinear(config.hidden_size, 1, bias=False)

    def _grouped(self, tokens: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        order, counts = group_by_expert(experts, self.num_experts)
        token_index = order // self.top_k  # the token of each sorted assignment
        gathered = tokens.index_select(0, token_index)  # (tokens * top_k, hidden), grouped by expert
        scale = weights.reshape(-1).index_select(0, order).to(tokens.dtype).unsqueeze(-1)  # (tokens * top_k, 1)
        outputs, start = [], 0
        for expert, count in zip(self.experts, counts.tolist()):  # one call per active expert
            if count:
                outputs.append(expert(gathered[start:start + count]))
            start += count
        mixed = torch.cat(outputs) * scale
        return torch.zeros_like(tokens).index_add_(0, token_index, mixed)

    def _dense(self, tokens: torch.Tensor, weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
        # (tokens, top_k, experts) one-hot picks weighted and summed over k -> (tokens, experts)
        routing = (F.one_hot(experts, self.num_experts).to(weights.dtype) * weights.unsqueeze(-1)).sum(1)
        routing = routing.to(tokens.dtype)
        output = torch.zeros_like(tokens)
        for index, expert in enumerate(self.experts):
            output = output + expert(tokens) * routing[:, index:index + 1]
        return output

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = hidden_states.shape
        tokens = hidden_states.reshape(-1, shape[-1])  # (batch * seq, hidden)
        router_logits = self.gate(tokens)  # (batch * seq, experts)
        weights, experts = route(router_logits, self.top_k, self.norm_topk_prob)
        combine = self._dense if _static_shapes_needed() or tokens.shape[0] == 0 else self._grouped
        output = combine(tokens, weights, experts)
        if hasattr(self, "shared_expert"):
            output = output + torch.sigmoid(self.shared_expert_gate(tokens)) * self.shared_expert(tokens)
        return output.reshape(shape), router_logits


def load_balancing_loss(
    router_logits: tuple[torch.Tensor, ...], num_experts: int, top_k: int, attention_mask: Optional[torch.Tensor]
) -> torch.Tensor:
    """Switch Transformer's auxiliary loss over every MoE layer's (tokens, experts) router logits:
    num_experts * sum_e (share of top-k picks going to e) * (mean router probability of e), over real tokens only
    (`attention_mask` (batch, seq) of the tokens the logits belong to; its last `seq` columns when it is longer)."""
    device = router_logits[0].device
    logits = torch.cat([layer.to(device) for layer in router_logits])  # (layers * tokens, experts)
    probs = F.softmax(logits, dim=-1, dtype=torch.float32)
    picks = F.one_hot(torch.topk(probs, top_k, dim=-1).indices, num_experts).to(probs.dtype)  # (rows, k, experts)
    if attention_mask is None:
        real = torch.ones(probs.shape[0], dtype=probs.dtype, device=device)
    else:
        per_layer = router_logits[0].shape[0]
        mask = attention_mask[:, -(per_layer // attention_mask.shape[0]):]  # the tokens this forward routed
        real = mask.reshape(-1).to(device=device, dtype=probs.dtype).repeat(len(router_logits))  # (rows,)
    count = real.sum()
    tokens_per_expert = (picks * real[:, None, None]).sum(0) / count  # (k, experts)
    prob_per_expert = (probs * real[:, None]).sum(0) / count  # (experts,)
    return num_experts * (tokens_per_expert * prob_per_expert).sum()
