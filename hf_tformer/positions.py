"""Position encodings: sinusoidal (2017 paper), learned (a table, in embeddings.py), rotary (RoFormer / Llama) and
relative (T5: a learned per-head bias over bucketed key - query distances, added to the attention scores).

Sinusoidal and rotary tables are computed from `position_ids` in forward rather than stored as buffers: nothing to
load or save, no length cap, and no non-persistent buffer to re-create after meta-device initialisation.
"""

import math
from typing import Optional

import torch
from torch import nn


def _inverse_frequencies(dim: int, base: float, device: torch.device) -> torch.Tensor:
    # (dim / 2,): 1 / base^(2i / dim)
    return 1.0 / (base ** (torch.arange(0, dim, 2, device=device, dtype=torch.float32) / dim))


def sinusoidal_position_embeddings(position_ids: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """(batch, seq) -> (batch, seq, dim): sin in the first half, cos in the second (tensor2tensor / fairseq / Marian)."""
    angles = position_ids.to(torch.float32)[..., None] * _inverse_frequencies(dim, 10000.0, position_ids.device)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(dtype)


def rotary_cos_sin(
    position_ids: torch.Tensor, head_dim: int, base: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, seq) -> cos, sin of shape (batch, seq, head_dim), halves repeated (the Llama layout)."""
    angles = position_ids.to(torch.float32)[..., None] * _inverse_frequencies(head_dim, base, position_ids.device)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def apply_rotary(
    tensor: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rotary_dim: Optional[int] = None
) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) query or key states by cos/sin of shape (batch, seq, rotary_dim).

    rotary_dim (a Python int, so tracing sees no shape test): partial rotary (GPT-NeoX), only the first rotary_dim
    dims rotate and the rest pass unchanged; None rotates all of them."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, seq, rotary_dim)
    if rotary_dim is None:
        return tensor * cos + _rotate_half(tensor) * sin
    rotated, passed = tensor[..., :rotary_dim], tensor[..., rotary_dim:]
    return torch.cat([rotated * cos + _rotate_half(rotated) * sin, passed], dim=-1)


def relative_position_buckets(
    relative: torch.Tensor, *, bidirectional: bool, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """key - query distances (any shape, int64) -> bucket ids in [0, num_buckets) (T5 / Mesh TensorFlow).

    Bidirectional attention gives each direction half the buckets; causal attention only ever sees keys at or
    before the query. Within a direction, distances below half the buckets get one bucket each, longer ones share
    log-spaced buckets, and everything from `max_distance` on falls into the last.
    """
    offset = torch.zeros_like(relative)
    if bidirectional:
        num_buckets //= 2
        offset = (relative > 0).to(relative.dtype) * num_buckets
        distance = relative.abs()
    else:
        distance = (-relative).clamp(min=0)
    exact = num_buckets // 2
    # clamp: log(0) would be -inf; those distances take the exact branch anyway
    spread = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact) * (num_buckets - exact)
    far = (exact + spread.to(relative.dtype)).clamp(max=num_buckets - 1)
    return offset + torch.where(distance < exact, distance, far)


class RelativePositionBias(nn.Module):
    """One learned bias per (bucket, head); a stack owns one and adds it to every self-attention layer's scores."""

    def __init__(self, config, *, bidirectional: bool) -> None:
        super().__init__()
        self.bidirectional = bidirectional
        self.num_buckets = config.relative_attention_num_buckets
        self.max_distance = config.relative_attention_max_distance
        self.embeddings = nn.Embedding(self.num_buckets, config.num_attention_heads)

    def forward(self, cache_position: torch.Tensor, kv_length: int, dtype: torch.dtype) -> torch.Tensor:
        """cache_position (query,): absolute query positions -> (1, heads, query, kv_length) additive bias."""
        keys = torch.arange(kv_length, device=cache_position.device)
        relative = keys[None, :] - cache_position[:, None].to(keys.dtype)  # (query, key)
        buckets = relative_position_buckets(relative, bidirectional=self.bidirectional, num_buckets=self.num_buckets,
                                            max_distance=self.max_distance)
        return self.embeddings(buckets).permute(2, 0, 1).unsqueeze(0).to(dtype)  # (1, heads, query, key)


def local_heads(query_weight: torch.Tensor, head_dim: int) -> slice:
    """The heads this rank computes: all of them, or under tensor parallelism (the query projection sharded by
    rows, a DTensor) this rank's chunk. Per-head tensors built outside the attention, like the relative-position
    bias, are sliced with it; no transformers TP style shards an embedding's columns locally on both 4.57 and 5.x."""
    rows = query_weight.shape[0]  # global rows for a DTensor
    placement = getattr(query_weight, "placements", (None,))[0]
    if placement is None or not placement.is_shard() or placement.dim not in (0, -query_weight.dim()):
        return slice(0, rows // head_dim)
    mesh = query_weight.device_mesh
    per_rank = -(-rows // mesh.size())  # DTensor shards like torch.chunk: ceil(rows / ranks) each
    start = min(mesh.get_local_rank() * per_rank, rows)
    stop = min(start + per_rank, rows)
    return slice(start // head_dim, stop // head_dim)
