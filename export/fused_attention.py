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
    """query (batch, heads, seq, head_dim), as the attention interface passes it; key/value (batch, heads, kv_seq,
    head_dim); bias additive, broadcastable to (batch, heads, seq, kv_seq) or None. Returns (batch, seq, heads,
    head_dim), as the interface returns it.

    The layout changes around the op are emitted in the symbolic with constant shapes (Reshape's 0 = "this input
    dimension"), not traced from tensor shapes: traced, each became a Shape / Gather / Unsqueeze / Concat chain per
    layer that ONNX Runtime evaluates on every decoding step (~8 nodes a layer, ~5% of a small decoder's step)."""

    @staticmethod
    def forward(ctx, query, key, value, bias, num_heads: int, head_dim: int, scale: float):
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=bias, scale=scale)
        return out.transpose(1, 2)  # (batch, seq, heads, head_dim)

    @staticmethod
    def symbolic(g, query, key, value, bias, num_heads: int, head_dim: int, scale: float):
        flat = _viewed_source(query)  # (batch, seq, heads * head_dim) when the query is a plain view of it
        if flat is None:
            by_position = g.op("Transpose", query, perm_i=[0, 2, 1, 3])  # (batch, seq, heads, head_dim)
            shape = g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64))
            flat = g.op("Reshape", by_position, shape)  # (batch, seq, heads * head_dim): the op's layout
        absent = g.op("prim::Constant").setType(torch._C.OptionalType.ofTensor())
        inputs = [flat, key, value, absent, absent] + ([] if _is_none(bias) else [bias])
        output = g.op("com.microsoft::MultiHeadAttention", *inputs, num_heads_i=num_heads, scale_f=scale)
        # (batch, seq, heads * head_dim), not reshaped to the forward's (batch, seq, heads, head_dim): every caller
        # merges the heads right after (attention.py reshapes to (batch, seq, -1)), and a Reshape here would be one
        # more node per layer and step.
        output.setType(query.type().with_sizes([None, None, num_heads * head_dim]))
        return output


def _viewed_source(query):
    """The attention module makes the query as x.view(batch, seq, heads, head_dim).transpose(1, 2) from its
    (batch, seq, heads * head_dim) projection x; in the traced graph Transpose(perm 0,2,1,3) of a Reshape of x.
    Return x when the query is exactly that (no rotary, no norm in between), else None."""
    transpose = query.node()
    if transpose.kind() != "onnx::Transpose" or _attribute(transpose, "perm") != [0, 2, 1, 3]:
        return None
    reshape = next(transpose.inputs()).node()
    if reshape.kind() != "onnx::Reshape":
        return None
    source = next(reshape.inputs())
    rank = source.type().dim() if hasattr(source.type(), "dim") else None
    return source if rank == 3 else None


def _attribute(node, name: str):
    """A TorchScript node's attribute, through the accessor its kind names ("is" for int lists, "i", "f", ...)."""
    if not node.hasAttribute(name):
        return None
    value = getattr(node, node.kindOf(name))(name)
    return list(value) if isinstance(value, (list, tuple)) else value


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
    if attention_mask is None and module.is_causal:
        raise ValueError("the fused ONNX attention needs an explicit mask for causal attention; export passes one.")
    if attention_mask is not None:
        attention_mask = attention_mask[:, :, :, : key.shape[-2]].to(query.dtype)
    scale = float(scaling if scaling is not None else head_dim**-0.5)
    out = _MultiHeadAttention.apply(query, key.contiguous(), value.contiguous(), attention_mask, heads, head_dim,
                                    scale)
    return out, None  # (batch, seq, heads, head_dim)


def register_fused_attention() -> None:
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, onnx_multi_head_attention)
