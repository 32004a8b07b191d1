"""Packed self attention in the exported graph: one com.microsoft.Attention node per bidirectional self attention.

The fused MultiHeadAttention path (fused_attention.py) still leaves three q/k/v MatMuls and their bias Adds in the
graph. ONNX Runtime's `Attention` contrib op takes the layer input and one packed (hidden, 3 * hidden) weight and
does the projection as a single GEMM with the attention itself, taking the key padding as a raw (batch, keys) 0/1
mask (or no mask at all: the image encoder attends everywhere). That is the op ORT's optimizer produces for native
BERT / ViT exports; here it is emitted directly.

It applies where the op's semantics are exactly ours: bidirectional (encoder) self attention, one key/value head
per query head, no rotary or relative positions, no cache. Every other attention call keeps the MultiHeadAttention path.
"""

from types import MethodType
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from .fused_attention import _is_none


class _PackedAttention(torch.autograd.Function):
    """hidden (batch, seq, hidden); weight (hidden, 3 * width) as [q | k | v]; bias (3 * width,);
    key_mask (batch, seq) int32 of 0/1, or None (no padding). Returns (batch, seq, width)."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, key_mask, num_heads: int, scale: float):
        batch, seq, _ = hidden.shape
        query, key, value = (hidden @ weight + bias).chunk(3, dim=-1)  # each (batch, seq, width)
        heads = [s.view(batch, seq, num_heads, -1).transpose(1, 2) for s in (query, key, value)]  # (b, h, s, d)
        additive = None
        if key_mask is not None:
            additive = torch.zeros(key_mask.shape, dtype=hidden.dtype, device=hidden.device)
            additive = additive.masked_fill(key_mask == 0, torch.finfo(hidden.dtype).min)[:, None, None, :]
        out = F.scaled_dot_product_attention(*heads, attn_mask=additive, scale=scale)
        return out.transpose(1, 2).reshape(batch, seq, -1)

    @staticmethod
    def symbolic(g, hidden, weight, bias, key_mask, num_heads: int, scale: float):
        inputs = [hidden, weight, bias] + ([] if _is_none(key_mask) else [key_mask])
        output = g.op("com.microsoft::Attention", *inputs, num_heads_i=num_heads, scale_f=scale)
        output.setType(hidden.type())
        return output


def is_packable(module: nn.Module) -> bool:
    """Bidirectional self attention with as many key/value heads as query heads and a mask that is key padding
    only (a relative-position bias differs per head and query): the Attention op's semantics."""
    return (type(module).__name__ == "TformerAttention" and not module.is_causal
            and not module.is_cross_attention and module.num_key_value_groups == 1
            and module.config.position_embedding_type != "relative"
            # a banded (sliding-window) mask is not key padding; QK-norm sits between the projection and the scores
            and getattr(module, "sliding_window", None) is None and not hasattr(module, "q_norm"))


def _packed_forward(
    self: nn.Module,
    hidden_states: torch.Tensor,
    attention_mask: Optional[torch.Tensor] = None,
    position_embeddings: Optional[tuple[torch.Tensor, torch.Tensor]] = None,
    past_key_values: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    if position_embeddings is not None or past_key_values is not None:
        # rotary / cache: the op cannot express it; the MultiHeadAttention path can
        return self._hf_tformer_unpacked_forward(hidden_states, attention_mask, position_embeddings=position_embeddings,
                                                 past_key_values=past_key_values, **kwargs)
    projections = (self.q_proj, self.k_proj, self.v_proj)
    weight = torch.cat([p.weight for p in projections]).t()  # (hidden, 3 * width); constant-folded by the export
    if self.q_proj.bias is not None:
        bias = torch.cat([p.bias for p in projections])
    else:
        bias = weight.new_zeros(weight.shape[1])
    # Bidirectional masks repeat one key-padding row for every query: (batch, 1, query, key) -> (batch, key).
    # None: nothing to mask (the image encoder attends over every patch).
    key_mask = None if attention_mask is None else (attention_mask[:, 0, 0, :] == 0).to(torch.int32)
    out = _PackedAttention.apply(hidden_states, weight, bias, key_mask, self.config.num_attention_heads, self.scaling)
    return self.o_proj(out), None


def pack_self_attention(model: nn.Module) -> int:
    """Route every packable attention module of `model` through the Attention op; returns how many were packed."""
    packed = 0
    for module in model.modules():
        if is_packable(module) and not hasattr(module, "_hf_tformer_unpacked_forward"):
            module._hf_tformer_unpacked_forward = module.forward
            module.forward = MethodType(_packed_forward, module)
            packed += 1
    return packed
