"""Packed causal self attention for CLIP's text tower: one com.microsoft.Attention node with `unidirectional=1`.

The tower is a causal stack without a cache, so ONNX Runtime's `Attention` contrib op covers it whole: the packed
q/k/v GEMM, the causal mask (`unidirectional`) and the key padding as a raw (batch, keys) 0/1 mask — the op ORT's
optimizer makes for native GPT-2 graphs without past. Decoders that export with past keep the MultiHeadAttention
path (fused_attention.py): the op's past input is a single stacked (2, batch, heads, past, head_dim) tensor, not
optimum's per-layer key / value pairs.
"""

from types import MethodType
from typing import Any, Optional

import torch
from torch import nn
from torch.nn import functional as F

from .fused_attention import _is_none

CLIP_TEXT_MODEL_TYPE = "hf_tformer_clip_text"


class _CausalPackedAttention(torch.autograd.Function):
    """hidden (batch, seq, hidden); weight (hidden, 3 * width) as [q | k | v]; bias (3 * width,); key_mask
    (batch, seq) int32 of 0/1. Returns (batch, seq, width): causal attention over the unmasked keys."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, key_mask, num_heads: int, scale: float):
        batch, seq, _ = hidden.shape
        query, key, value = (hidden @ weight + bias).chunk(3, dim=-1)  # each (batch, seq, width)
        heads = [s.view(batch, seq, num_heads, -1).transpose(1, 2) for s in (query, key, value)]  # (b, h, s, d)
        causal = torch.ones(seq, seq, dtype=torch.bool, device=hidden.device).tril()  # (query, key)
        allowed = causal[None, None] & (key_mask != 0)[:, None, None, :]  # (batch, 1, query, key)
        out = F.scaled_dot_product_attention(*heads, attn_mask=allowed, scale=scale)
        return out.transpose(1, 2).reshape(batch, seq, -1)

    @staticmethod
    def symbolic(g, hidden, weight, bias, key_mask, num_heads: int, scale: float):
        output = g.op("com.microsoft::Attention", hidden, weight, bias, key_mask, num_heads_i=num_heads,
                      scale_f=scale, unidirectional_i=1)
        output.setType(hidden.type())
        return output


def is_causal_packable(module: nn.Module) -> bool:
    """A self attention of CLIP's text tower (causal, learned positions, no cache, one key/value head per query)."""
    return (type(module).__name__ == "TformerAttention" and module.is_causal and not module.is_cross_attention
            and module.config.model_type == CLIP_TEXT_MODEL_TYPE and module.num_key_value_groups == 1
            and getattr(module, "sliding_window", None) is None and not hasattr(module, "q_norm"))


def _causal_packed_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                           **kwargs: Any) -> tuple[torch.Tensor, None]:
    if _is_none(attention_mask) or any(kwargs.get(name) is not None
                                       for name in ("position_embeddings", "past_key_values")):
        raise ValueError("the packed causal attention takes an explicit mask, no rotary positions and no cache; "
                         "export CLIP's text tower with fused attention only.")
    q, k, v = self.q_proj, self.k_proj, self.v_proj
    weight = torch.cat([q.weight, k.weight, v.weight]).t()  # (hidden, 3 * width); constant-folded by the export
    bias = weight.new_zeros(weight.shape[1]) if q.bias is None else torch.cat([q.bias, k.bias, v.bias])
    # The last query of a causal mask sees every key that is not padding: (batch, 1, query, key) -> (batch, key).
    key_mask = (attention_mask[:, 0, -1, :] == 0).to(torch.int32)
    out = _CausalPackedAttention.apply(hidden_states, weight, bias, key_mask, self.config.num_attention_heads,
                                       self.scaling)
    return self.o_proj(out), None


def pack_causal_self_attention(model: nn.Module) -> int:
    """Route CLIP text-tower attention modules of `model` through the Attention op; returns how many were packed."""
    modules = [m for m in model.modules() if is_causal_packable(m) and not hasattr(m, "_hf_tformer_unpacked_forward")]
    for module in modules:  # the marker pack_self_attention uses too: a module is routed once
        module._hf_tformer_unpacked_forward, module.forward = module.forward, MethodType(_causal_packed_forward, module)
    return len(modules)
