"""The one attention module: bidirectional self attention, causal self attention and cross attention.

Query heads attend in groups over shared key/value heads (MHA: groups of 1, GQA: several, MQA: one kv head):

    q heads:  q0 q1 | q2 q3 | q4 q5 | q6 q7
    kv heads:   k0  |   k1  |   k2  |   k3        num_key_value_groups = 8 / 4 = 2

The score computation goes through transformers' attention interface (`config._attn_implementation`: sdpa by
default, flash_attention_2, flex_attention, ...) with `eager_attention_forward` as the fallback. A sliding-window
layer hands the kernel its window as the `sliding_window` kwarg (flash attention reads it); every other kernel gets
the banded mask built in masks.py. QK-norm (Qwen3) normalises each head's query and key before rotary.
"""

from typing import Any, Optional

import torch
from torch import nn
from transformers.cache_utils import Cache, EncoderDecoderCache
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from .config_checks import check_vllm_head_dim
from .linear import TformerLinear
from .norms import build_norm
from .positions import apply_rotary


def repeat_kv(states: torch.Tensor, groups: int) -> torch.Tensor:
    """(batch, kv_heads, seq, head_dim) -> (batch, kv_heads * groups, seq, head_dim)."""
    if groups == 1:
        return states
    batch, kv_heads, seq, head_dim = states.shape
    states = states[:, :, None].expand(batch, kv_heads, groups, seq, head_dim)
    return states.reshape(batch, kv_heads * groups, seq, head_dim)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T * scaling + mask) v, in plain torch ops; returns (batch, query, heads, head_dim) and the weights."""
    key = repeat_kv(key, module.num_key_value_groups)
    value = repeat_kv(value, module.num_key_value_groups)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (batch, heads, query, key)
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    output = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (batch, query, heads, head_dim)
    return output, weights


class TformerAttention(nn.Module):
    def __init__(self, config, layer_idx: int, *, is_causal: bool, is_cross_attention: bool = False) -> None:
        super().__init__()
        check_vllm_head_dim(config)  # vLLM's CPU attention takes a few head sizes only: refused before serving
        self.config = config
        self.layer_idx = layer_idx
        self.is_causal = is_causal  # read by the sdpa / flash kernels
        self.is_cross_attention = is_cross_attention
        self.head_dim = config.head_dim
        self.rotary_dim = config.rotary_dim
        self.num_key_value_groups = config.num_attention_heads // config.num_key_value_heads
        self.scaling = config.attention_scale if config.attention_scale is not None else self.head_dim**-0.5
        self.attention_dropout = config.attention_dropout
        q_width = config.num_attention_heads * self.head_dim
        kv_width = config.num_key_value_heads * self.head_dim
        self.q_proj = TformerLinear(config.hidden_size, q_width, bias=config.attention_bias)
        self.k_proj = TformerLinear(config.hidden_size, kv_width, bias=config.attention_bias)
        self.v_proj = TformerLinear(config.hidden_size, kv_width, bias=config.attention_bias)
        self.o_proj = TformerLinear(q_width, config.hidden_size, bias=config.attention_out_bias)
        if config.qk_norm:
            self.q_norm = build_norm(config, self.head_dim)
            self.k_norm = build_norm(config, self.head_dim)
        local = not is_cross_attention and config.layer_type(layer_idx) == "sliding_attention"
        self.sliding_window = config.sliding_window if local else None

    def _heads(self, states: torch.Tensor) -> torch.Tensor:
        batch, seq = states.shape[:2]
        return states.view(batch, seq, -1, self.head_dim).transpose(1, 2)  # (batch, heads, seq, head_dim)

    def _cross_key_value(
        self, encoder_states: Optional[torch.Tensor], past_key_values: Optional[Cache]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Project the encoder states once; later decoding steps read them back from the cross-attention cache."""
        cache = past_key_values.cross_attention_cache if isinstance(past_key_values, EncoderDecoderCache) else None
        if cache is not None and past_key_values.is_updated.get(self.layer_idx):
            layer = cache.layers[self.layer_idx]
            return layer.keys, layer.values
        if encoder_states is None:
            raise ValueError("cross attention needs encoder_hidden_states (or a filled EncoderDecoderCache).")
        key, value = self._heads(self.k_proj(encoder_states)), self._heads(self.v_proj(encoder_states))
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)
            past_key_values.is_updated[self.layer_idx] = True
        return key, value

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        position_embeddings: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
        past_key_values: Optional[Cache] = None,
        cache_position: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        batch, query_length = hidden_states.shape[:2]
        query = self._heads(self.q_proj(hidden_states))
        if self.is_cross_attention:
            key, value = self._cross_key_value(encoder_hidden_states, past_key_values)
        else:
            key, value = self._heads(self.k_proj(hidden_states)), self._heads(self.v_proj(hidden_states))
            if hasattr(self, "q_norm"):
                query, key = self.q_norm(query), self.k_norm(key)
            if position_embeddings is not None:
                cos, sin = position_embeddings
                partial = self.rotary_dim if self.rotary_dim < self.head_dim else None
                query, key = apply_rotary(query, cos, sin, partial), apply_rotary(key, cos, sin, partial)
            if past_key_values is not None:
                cache = past_key_values
                if isinstance(cache, EncoderDecoderCache):
                    cache = cache.self_attention_cache
                key, value = cache.update(key, value, self.layer_idx, {"cache_position": cache_position})

        implementation = self.config._attn_implementation or "sdpa"
        if implementation == "eager" or kwargs.get("output_attentions"):
            attention_function = eager_attention_forward
        else:
            attention_function = ALL_ATTENTION_FUNCTIONS[implementation]
        kwargs.pop("output_attentions", None)
        output, weights = attention_function(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=self.attention_dropout if self.training else 0.0,
            scaling=self.scaling,
            sliding_window=self.sliding_window,
            **kwargs,
        )
        output = output.reshape(batch, query_length, -1).contiguous()  # (batch, query, heads * head_dim)
        return self.o_proj(output), weights
