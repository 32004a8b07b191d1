"""Position encodings: sinusoidal (2017 paper), learned (a table, in embeddings.py) and rotary (RoFormer / Llama).

Sinusoidal and rotary tables are computed from `position_ids` in forward rather than stored as buffers: nothing to
load or save, no length cap, and no non-persistent buffer to re-create after meta-device initialisation.
"""

import torch


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


def apply_rotary(tensor: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) query or key states by cos/sin of shape (batch, seq, head_dim)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (batch, 1, seq, head_dim)
    return tensor * cos + _rotate_half(tensor) * sin
