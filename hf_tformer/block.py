"""One Transformer block: self attention, optional cross attention and a feed-forward network, each wrapped in a
residual connection with its norm before (`pre`, GPT-2 and later) or after (`post`, 2017 paper / BERT) the sublayer.

    pre:  x = x + Dropout(Sublayer(Norm(x)))
    post: x = Norm(x + Dropout(Sublayer(x)))
    parallel (GPT-NeoX, pre-norm): x = x + Dropout(Attn(Norm1(x))) + Dropout(MLP(Norm2(x)))
The feed-forward is the sparse mixture of experts (moe.py) in the layers `config.is_moe_layer` names; the block then
also returns that layer's router logits (None otherwise).
"""

from typing import Any, Optional

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention import TformerAttention
from .feed_forward import TformerFeedForward
from .moe import TformerSparseMoe
from .norms import build_norm


class TformerBlock(GradientCheckpointingLayer):
    def __init__(self, config, layer_idx: int, *, is_causal: bool, has_cross_attention: bool = False) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.parallel_residual = config.parallel_residual
        self.self_attn = TformerAttention(config, layer_idx, is_causal=is_causal)
        self.self_attn_norm = build_norm(config)
        if has_cross_attention:
            self.cross_attn = TformerAttention(config, layer_idx, is_causal=False, is_cross_attention=True)
            self.cross_attn_norm = build_norm(config)
        self.mlp = TformerSparseMoe(config) if config.is_moe_layer(layer_idx) else TformerFeedForward(config)
        self.mlp_norm = build_norm(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def _sublayer_input(self, hidden_states: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        return norm(hidden_states) if self.pre_norm else hidden_states

    def _add_residual(self, residual: torch.Tensor, update: torch.Tensor, norm: nn.Module) -> torch.Tensor:
        hidden_states = residual + self.dropout(update)
        return hidden_states if self.pre_norm else norm(hidden_states)

    def _feed_forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """(update, router logits of a sparse MoE layer or None)."""
        update = self.mlp(hidden_states)
        return update if isinstance(update, tuple) else (update, None)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        position_embeddings: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        past_key_values: Optional[Cache] = None,
        cache_position: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
        update, self_weights = self.self_attn(
            self._sublayer_input(hidden_states, self.self_attn_norm),
            attention_mask,
            position_embeddings=position_embeddings,
            past_key_values=past_key_values,
            cache_position=cache_position,
            **kwargs,
        )
        if self.parallel_residual:  # the MLP reads the block's input, not the attention's output
            mlp_update, router_logits = self._feed_forward(self.mlp_norm(hidden_states))
            return hidden_states + self.dropout(update) + self.dropout(mlp_update), self_weights, None, router_logits
        hidden_states = self._add_residual(hidden_states, update, self.self_attn_norm)

        cross_weights = None
        if hasattr(self, "cross_attn"):
            update, cross_weights = self.cross_attn(
                self._sublayer_input(hidden_states, self.cross_attn_norm),
                encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states,
                past_key_values=past_key_values,
                **kwargs,
            )
            hidden_states = self._add_residual(hidden_states, update, self.cross_attn_norm)

        update, router_logits = self._feed_forward(self._sublayer_input(hidden_states, self.mlp_norm))
        hidden_states = self._add_residual(hidden_states, update, self.mlp_norm)
        return hidden_states, self_weights, cross_weights, router_logits
