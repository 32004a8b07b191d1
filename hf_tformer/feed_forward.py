"""Position-wise feed-forward networks: dense (act(x W1) W2) and gated (act(x Wg) * (x W1)) W2."""

from typing import Optional

import torch
from torch import nn
from transformers.activations import ACT2FN

from .linear import TformerLinear

# A gated activation names the nonlinearity applied to its gate branch.
_GATE_ACTIVATION = {"swiglu": "silu", "geglu": "gelu", "geglu_new": "gelu_new"}


def activation_function(name: str) -> nn.Module:
    """The nonlinearity of `hidden_act`: itself, or for a gated name the one on its gate branch."""
    return ACT2FN[_GATE_ACTIVATION.get(name, name)]


class TformerFeedForward(nn.Module):
    """`intermediate_size` overrides the config's (the experts and shared expert of a sparse MoE layer, moe.py)."""

    def __init__(self, config, intermediate_size: Optional[int] = None) -> None:
        super().__init__()
        inner = config.intermediate_size if intermediate_size is None else intermediate_size
        self.is_gated = config.is_gated
        self.up_proj = TformerLinear(config.hidden_size, inner, bias=config.mlp_bias)
        if self.is_gated:
            self.gate_proj = TformerLinear(config.hidden_size, inner, bias=config.mlp_bias)
        self.act_fn = activation_function(config.hidden_act)
        self.dropout = nn.Dropout(config.activation_dropout)
        self.down_proj = TformerLinear(inner, config.hidden_size, bias=config.mlp_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.is_gated:
            inner = self.act_fn(self.gate_proj(hidden_states)) * self.up_proj(hidden_states)
        else:
            inner = self.act_fn(self.up_proj(hidden_states))
        return self.down_proj(self.dropout(inner))
