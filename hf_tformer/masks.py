"""Every attention mask is built here, once per stack forward, traceably (shapes and dtypes only, never values).

Masks are additive: 0 where a key may be attended, the dtype's minimum where not, shaped (batch, 1, query, key) in
full (ONNX Runtime's fused attention wants it expanded). A fully masked row then softmaxes to a uniform distribution
instead of NaN. `None` means "no mask": SDPA and flash attention then apply causality themselves from the module's
`is_causal`, which keeps their fast kernels. Flash attention takes the 2D padding mask unchanged (it unpads
internally); flex attention gets a BlockMask over the same boolean pattern (torch 2.13's CPU flex kernel corrupts
memory when a score_mod reads a captured additive mask, and a BlockMask also lets it skip masked blocks).

Packed rows (padding-free training, DataCollatorWithFlattening): several sequences in one row, their position_ids
restarting, no attention_mask. As transformers' masking_utils decides it, a new sequence starts wherever a position
is not its predecessor + 1, and each query then sees only its own sequence's keys (a block-diagonal causal mask).
A custom 4-D mask, (batch, 1, query, key) boolean (True = attend) or additive, is taken as given, as transformers'
models take it: it replaces the padding and causal masks.
"""

from typing import Optional

import torch
from transformers.cache_utils import Cache, EncoderDecoderCache

_KERNELS_WITH_OWN_CAUSALITY = ("sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4")
# vLLM's Transformers backend registers these: they take causality and sequence boundaries from vLLM's own batch
# metadata and never read the mask, so none is built (a packed batch's (1, 1, N, N) mask would cost N^2 memory).
MASK_FREE_IMPLEMENTATIONS = ("vllm", "vllm_mla")


def _is_flash(attn_implementation: Optional[str]) -> bool:
    return bool(attn_implementation) and attn_implementation.startswith("flash_attention")


def _finish(allowed: torch.Tensor, dtype: torch.dtype, attn_implementation: Optional[str]):
    """(batch, 1, query, key) bool -> the mask form the attention implementation takes."""
    if attn_implementation == "flex_attention":
        from torch.nn.attention.flex_attention import create_block_mask

        batch_size, _, query_length, kv_length = allowed.shape

        def mask_mod(batch, head, query, key):
            return allowed[batch, 0, query, key]

        return create_block_mask(mask_mod, batch_size, None, query_length, kv_length, device=allowed.device)
    # in place: one (batch, 1, query, key) float tensor at the peak, not two (a 16k-token mask is 1 GiB in fp32)
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min
    )


def validating_inputs() -> bool:
    """Input checks run eagerly only: under tracing/compilation they would bake branches into the graph."""
    return not (torch.jit.is_tracing() or torch.compiler.is_compiling())


def check_padding_mask(attention_mask: torch.Tensor, batch_size: int, expected_length: int, name: str) -> None:
    """Raise `ValueError` unless `attention_mask` is (batch_size, expected_length)."""
    if not validating_inputs():
        return
    if attention_mask.dim() != 2 or tuple(attention_mask.shape) != (batch_size, expected_length):
        raise ValueError(
            f"{name} has shape {tuple(attention_mask.shape)} but the inputs need ({batch_size}, {expected_length}) "
            "(batch, past + current tokens); pass one 0/1 entry per token."
        )


def packed_sequence_ids(position_ids: torch.Tensor, batch_size: int) -> Optional[torch.Tensor]:
    """(batch, query) index of the sequence each token belongs to in rows packed with several sequences: a new one
    starts wherever a position is not its predecessor + 1 (position_ids of [[0, 1, 2, 0, 1]] give [[0, 0, 0, 1, 1]]).
    None when no row restarts: read eagerly only (a device sync), so unpacked inputs keep a mask-free kernel; under
    tracing the ids are always returned and the graph serves both."""
    position_ids = position_ids.expand(batch_size, -1)  # (batch, query): given positions may be (1, query)
    previous = torch.cat([position_ids[:, :1] - 1, position_ids[:, :-1]], dim=-1)
    sequence_ids = (position_ids != previous + 1).cumsum(-1)  # (batch, query)
    if validating_inputs() and not bool(sequence_ids[:, -1].any()):
        return None
    return sequence_ids


def custom_attention_mask(
    attention_mask: torch.Tensor,
    *,
    batch_size: int,
    query_length: int,
    kv_length: int,
    dtype: torch.dtype,
    attn_implementation: Optional[str],
) -> Optional[torch.Tensor]:
    """A caller's 4-D mask, (batch or 1, 1, query, kv_length), boolean (True = attend) or additive (0 = attend,
    a large negative value = not), as the attention implementation takes it (additive, or flex's BlockMask)."""
    expected = (query_length, kv_length)
    if validating_inputs() and (
        attention_mask.shape[0] not in (1, batch_size) or attention_mask.shape[1] != 1
        or tuple(attention_mask.shape[2:]) != expected
    ):
        raise ValueError(
            f"a 4-D attention_mask has shape {tuple(attention_mask.shape)} but these inputs need ({batch_size}, 1, "
            f"{query_length}, {kv_length}) (batch, 1, query, past + current keys), boolean (True = attend) or "
            "additive (0 = attend); or pass a 2-D (batch, keys) padding mask."
        )
    if attn_implementation in MASK_FREE_IMPLEMENTATIONS:
        return None
    if _is_flash(attn_implementation):
        raise ValueError(
            f"attn_implementation={attn_implementation!r} takes a 2-D (batch, keys) padding mask only, not a 4-D "
            "attention_mask; use 'sdpa', 'eager' or 'flex_attention' for a custom mask."
        )
    if attention_mask.dtype == torch.bool:
        allowed = attention_mask
    elif attn_implementation == "flex_attention":
        allowed = attention_mask == 0
    else:
        return attention_mask.to(dtype).expand(batch_size, 1, query_length, kv_length)
    return _finish(allowed.expand(batch_size, 1, query_length, kv_length), dtype, attn_implementation)


def self_attention_mask(
    attention_mask: Optional[torch.Tensor],
    *,
    batch_size: int,
    query_length: int,
    kv_length: int,
    cache_position: torch.Tensor,
    is_causal: bool,
    dtype: torch.dtype,
    attn_implementation: Optional[str],
    force_explicit: bool = False,
    sliding_window: Optional[int] = None,
    kv_offset: int = 0,
    sequence_ids: Optional[torch.Tensor] = None,
) -> Optional[torch.Tensor]:
    """Mask for self attention over `kv_length` keys, of which the last `query_length` are the queries.

    attention_mask: (batch, past + query) of 0/1, or None for "attend everywhere allowed"; a 4-D mask is taken as
        given (`custom_attention_mask`).
    cache_position: (query,) absolute position of each query in the key sequence.
    kv_length may exceed past + query (a static cache); those slots are masked as padding.
    sliding_window: a causal query sees the keys in (query - window, query]; a bidirectional one those with
        |key - query| < window. Flash attention applies it itself (its `sliding_window` kwarg).
    kv_offset: absolute position of the first key (a sliding-window cache keeps only the last window - 1 keys).
    sequence_ids: (batch, query) from `packed_sequence_ids`, for a row of packed sequences with nothing cached
        before it (queries = keys): a query then sees only the keys of its own sequence.
    """
    if attention_mask is not None and attention_mask.dim() == 4:
        return custom_attention_mask(attention_mask, batch_size=batch_size, query_length=query_length,
                                     kv_length=kv_length, dtype=dtype, attn_implementation=attn_implementation)
    if attn_implementation in MASK_FREE_IMPLEMENTATIONS:
        return None
    if attention_mask is not None and kv_offset:
        attention_mask = attention_mask[:, kv_offset:]  # (batch, kv_length): the keys the cache still holds
    if _is_flash(attn_implementation):
        return attention_mask
    if attention_mask is None and not force_explicit and sliding_window is None and sequence_ids is None:
        if not is_causal or attn_implementation in _KERNELS_WITH_OWN_CAUSALITY:
            return None
    device = cache_position.device
    keys = (torch.arange(kv_length, device=device) + kv_offset)[None, :]  # (1, key)
    queries = cache_position[:, None]  # (query, 1); comparisons broadcast to (query, key) bools, no int64 grid
    if is_causal:
        allowed = keys <= queries
        if sliding_window is not None:
            allowed = allowed & (keys > queries - sliding_window)
    elif sliding_window is not None:
        allowed = (keys > queries - sliding_window) & (keys < queries + sliding_window)
    else:
        allowed = torch.ones(query_length, kv_length, dtype=torch.bool, device=device)
    allowed = allowed[None, None]  # (1, 1, query, key)
    if sequence_ids is not None:  # packed rows: (batch, 1, query, key), True within one sequence
        allowed = allowed & (sequence_ids[:, None, :, None] == sequence_ids[:, None, None, :])
    if attention_mask is not None:
        padding = attention_mask.to(device=device, dtype=torch.bool)
        padding = torch.nn.functional.pad(padding, (0, kv_length - padding.shape[-1]))  # static cache slots
        allowed = allowed & padding[:, None, None, :]
    return _finish(allowed.expand(batch_size, 1, query_length, kv_length), dtype, attn_implementation)


def cross_attention_mask(
    encoder_attention_mask: Optional[torch.Tensor],
    *,
    query_length: int,
    dtype: torch.dtype,
    attn_implementation: Optional[str],
) -> Optional[torch.Tensor]:
    """(batch, source) of 0/1 -> (batch, 1, query, source) additive."""
    if encoder_attention_mask is None or _is_flash(attn_implementation):
        return encoder_attention_mask
    batch_size, source_length = encoder_attention_mask.shape
    allowed = encoder_attention_mask.to(torch.bool)[:, None, None, :]
    return _finish(allowed.expand(batch_size, 1, query_length, source_length), dtype, attn_implementation)


def static_cache_capacity(past_key_values: Optional[Cache]) -> Optional[int]:
    """Key slots of a preallocated (static) self-attention cache, or None for dynamic / no cache."""
    if isinstance(past_key_values, EncoderDecoderCache):
        past_key_values = past_key_values.self_attention_cache
    layers = getattr(past_key_values, "layers", None)
    if not layers or not getattr(layers[0], "is_compileable", False):
        return None
    return getattr(layers[0], "max_cache_len", None)


def cached_key_span(past_key_values: Optional[Cache], layer_idx: int, kv_length: int) -> tuple[int, int]:
    """(keys, absolute position of the first key) that layer `layer_idx` attends over once this step's keys are in.

    A full layer sees all `kv_length` keys from position 0. A sliding-window cache layer (DynamicCache(config=...)
    builds them from `sliding_window` / `layer_types`) keeps only the last window - 1 keys before the new ones, so
    its keys start later; the mask must be built over those."""
    if isinstance(past_key_values, EncoderDecoderCache):
        past_key_values = past_key_values.self_attention_cache
    layers = getattr(past_key_values, "layers", None) or []
    if layer_idx >= len(layers) or not getattr(layers[layer_idx], "is_sliding", False):
        return kv_length, 0
    layer = layers[layer_idx]
    if getattr(layer, "is_compileable", False):
        raise ValueError(
            f"a static sliding-window cache ({type(layer).__name__}) is not supported; use the dynamic cache "
            "(generate()'s default, or DynamicCache(config=model.config)): its sliding layers keep window - 1 keys."
        )
    past = layer.get_seq_length()
    kept = min(past, layer.sliding_window - 1)
    query_length = kv_length - past
    return kept + query_length, past - kept
