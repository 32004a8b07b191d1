"""Fused attention in the exported graph: one com.microsoft.MultiHeadAttention node per attention call.

ONNX Runtime's transformer optimizer only fuses attention in graphs shaped like the native BERT / GPT-2 exports.
Rather than imitate those shapes, the export swaps our attention function (through transformers' attention
interface, which every hf_tformer attention module calls) for one whose TorchScript symbolic *is* the fused op.
In PyTorch it computes exactly SDPA, so optimum's export-time validation compares like with like.
"""

from typing import Optional

import torch
from torch.nn import functional as F

ATTN_IMPLEMENTATION = "hf_tformer_onnx_mha"


class _MultiHeadAttention(torch.autograd.Function):
    """query (batch, seq, heads*head_dim); key/value (batch, heads, kv_seq, head_dim); bias additive, broadcastable
    to (batch, heads, seq, kv_seq) or None. Returns (batch, seq, heads*head_dim)."""

    @staticmethod
    def forward(ctx, query, key, value, bias, num_heads: int, scale: float):
        batch, seq, width = query.shape
        query = query.view(batch, seq, num_heads, width // num_heads).transpose(1, 2)  # (batch, heads, seq, head_dim)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale)
        return out.transpose(1, 2).reshape(batch, seq, width)

    @staticmethod
    def symbolic(g, query, key, value, bias, num_heads: int, scale: float):
        absent = g.op("prim::Constant").setType(torch._C.OptionalType.ofTensor())
        inputs = [query, key, value, absent, absent] + ([] if _is_none(bias) else [bias])
        output = g.op("com.microsoft::MultiHeadAttention", *inputs, num_heads_i=num_heads, scale_f=scale)
        output.setType(query.type())
        return output


def _is_none(value) -> bool:
    return value is None or (hasattr(value, "node") and value.node().mustBeNone())


def onnx_multi_head_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """The attention-interface signature: (batch, heads, seq, head_dim) in, (batch, seq, heads, head_dim) out."""
    # Head counts from the module, not from tensor shapes: under the ONNX tracer shapes are tensors.
    heads, head_dim = module.config.num_attention_heads, module.head_dim
    groups = module.num_key_value_groups
    if groups > 1:  # GQA / MQA: the fused op wants one key/value head per query head
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    batch, seq = query.shape[0], query.shape[2]
    if attention_mask is None and module.is_causal:
        raise ValueError("the fused ONNX attention needs an explicit mask for causal attention; export passes one.")
    if attention_mask is not None:
        attention_mask = attention_mask[:, :, :, : key.shape[-2]].to(query.dtype)
    scale = float(scaling if scaling is not None else head_dim**-0.5)
    flat = query.transpose(1, 2).reshape(batch, seq, heads * head_dim)  # (batch, seq, heads * head_dim)
    out = _MultiHeadAttention.apply(flat, key.contiguous(), value.contiguous(), attention_mask, heads, scale)
    return out.view(batch, seq, heads, head_dim), None


def register_fused_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, onnx_multi_head_attention)
