"""Checks of what a forward is given: token ids and embeddings, positions, token types, labels, keyword arguments.

Every check raises a ValueError (TypeError for a wrong type or dtype) naming the input, the bad value and the fix,
where transformers' own models crash with an IndexError, a reshape error or a CUDA device-side assert.

Shape and dtype checks cost nothing. Value checks (ids in the vocabulary, positions in the table, labels in range)
read the tensor: free on the CPU, a device sync elsewhere. So on an accelerator per-token inputs are read once per
forward but not on one-token decoding steps, whose ids and positions generate() made itself (an argmax over the
vocabulary, a count of the attention mask): generate()'s hot path gains no sync. Labels are read once per loss.
All checks run eagerly only (`validating_inputs`): under tracing / torch.compile they would bake branches into
the graph.
"""

from typing import Any, Optional

import torch

from .masks import validating_inputs

IGNORE_INDEX = -100  # labels equal to it are ignored by every loss

# Names transformers' own models take that ours do not honour: refused rather than silently dropped.
UNSUPPORTED_KWARGS = {
    "head_mask": "masking whole attention heads is not supported (transformers 5 dropped it too); drop the argument "
                 "(an all-ones mask changes nothing), or zero a head's columns of each layer's o_proj weight",
    "decoder_head_mask": "masking whole attention heads is not supported; drop the argument",
    "cross_attn_head_mask": "masking whole attention heads is not supported; drop the argument",
    "num_items_in_batch": "each loss is a mean over its own batch (`accepts_loss_kwargs = False` tells Trainer to "
                          "divide by the gradient-accumulation steps itself); drop the argument",
    "labels": "it reached a model that takes none: a base model computes no loss (use a task head, e.g. "
              "...ForCausalLM), question answering takes start_positions / end_positions, CLIP return_loss=True",
    "past_key_value": "the cache argument is named past_key_values",
}
# Keyword arguments that may pass through a stack to the attention function: transformers' TransformersKwargs /
# FlashAttentionKwargs (4.57 and 5.x) and what generate(), pipelines and Trainer hand every model.
PASS_THROUGH_KWARGS = frozenset({
    "use_cache", "return_dict", "cache_position", "logits_to_keep", "output_attentions", "output_hidden_states",
    "output_router_logits", "position_ids", "is_causal", "seq_idx", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
    "max_length_k", "max_seqlen_q", "max_seqlen_k", "block_table", "cache_seqlens", "s_aux",
})
# Attention implementations that take no keyword argument outside PASS_THROUGH_KWARGS. Any other (vLLM's, a paged
# variant, a function registered with AttentionInterface) may take its own, which then pass through unchecked.
BUILTIN_ATTENTION = ("eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3", "flash_attention_4")


# What embedding tables index with (and losses take, cast to long). Set membership: a per-step check must cost next
# to nothing (is_floating_point() & co. cost ~10x more).
_INTEGER_DTYPES = frozenset({torch.int32, torch.int64})


def reads_values(tensor: torch.Tensor) -> bool:
    """Whether a check may read this per-token input's values now: eagerly, on the CPU (free) or, elsewhere (a
    device sync), unless it holds one token per row (a decoding step, whose ids generate() made)."""
    return validating_inputs() and (tensor.is_cpu or tensor.shape[-1] != 1)  # shapes not read under compile


def _extremes(tensor: torch.Tensor) -> tuple[int, int]:
    if tensor.numel() == 1:  # a decoding step's id or position: one read, no reduction
        value = int(tensor)
        return value, value
    low, high = torch.aminmax(tensor)
    return int(low), int(high)


def check_not_empty(tensor: torch.Tensor, name: str, layout: str) -> None:
    """A batch of no rows, or rows without a token, has nothing to attend over (transformers' models crash)."""
    if validating_inputs() and 0 in tensor.shape:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)} {layout}, which is empty: nothing to attend over; "
                         "skip the call for an empty batch, and give every row at least one element.")


def check_index_range(tensor: torch.Tensor, name: str, limit: int, fix: str, *, table: str = "") -> None:
    """Values in [0, limit) (`table` names that range), read only where `reads_values` allows."""
    if not reads_values(tensor) or tensor.numel() == 0:
        return
    low, high = _extremes(tensor)
    if low < 0 or high >= limit:
        raise ValueError(f"{name} contains {low if low < 0 else high}, outside {table}[0, {limit}); {fix}.")


def _check_integer(tensor: Any, name: str, what: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}; use the tokenizer with "
                        "return_tensors='pt' (or torch.tensor(...)).")
    if tensor.dtype not in _INTEGER_DTYPES:
        raise TypeError(f"{name} has dtype {tensor.dtype}; {what} are integers (torch.long or torch.int): pass "
                        f"{name}.long() if the values are whole numbers.")


def check_token_ids(input_ids: Any, vocab_size: int, name: str = "input_ids") -> None:
    """(batch, seq) integer ids, not empty, each in [0, vocab_size)."""
    _check_integer(input_ids, name, "token ids")
    if input_ids.dim() != 2:
        raise ValueError(f"{name} must be (batch, seq), got shape {tuple(input_ids.shape)}; add a batch dimension with "
                         f"{name}[None] for one sequence.")
    check_not_empty(input_ids, name, "(batch, seq)")
    check_index_range(input_ids, name, vocab_size, "check that the tokenizer matches this model's vocab_size",
                      table="the vocabulary ")


def check_inputs_embeds(inputs_embeds: Any, hidden_size: int, name: str = "inputs_embeds") -> None:
    """(batch, seq, hidden_size) floating point, not empty."""
    if not isinstance(inputs_embeds, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(inputs_embeds).__name__}.")
    if not inputs_embeds.is_floating_point():
        raise TypeError(f"{name} has dtype {inputs_embeds.dtype}; embeddings are floating point (token ids go in "
                        "input_ids).")
    if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != hidden_size:
        raise ValueError(f"{name} has shape {tuple(inputs_embeds.shape)} but the model needs (batch, seq, "
                         f"{hidden_size}) (hidden_size={hidden_size}); embed with model.get_input_embeddings().")
    check_not_empty(inputs_embeds, name, "(batch, seq, hidden)")


def check_token_types(token_type_ids: Any, type_vocab_size: int) -> None:
    """Integer segment ids in [0, type_vocab_size); a model without segment embeddings takes only all-zero ones."""
    _check_integer(token_type_ids, "token_type_ids", "segment ids")
    if type_vocab_size > 0:
        check_index_range(token_type_ids, "token_type_ids", type_vocab_size,
                          f"this model has type_vocab_size={type_vocab_size} segments: use ids below it")
    elif reads_values(token_type_ids) and token_type_ids.numel() and bool(token_type_ids.any()):
        # All-zero types are what a generic tokenizer returns for single sentences (sentence-transformers passes
        # them on): nothing to add. Real segment ids would be silently lost, so those are an error.
        raise ValueError("token_type_ids with non-zero segments were given but this model has type_vocab_size=0 "
                         "(no segment embeddings); drop them, or use a model made with type_vocab_size > 1.")


def check_learned_positions(position_ids: Optional[torch.Tensor], kv_length: int, limit: int) -> None:
    """Positions that index a learned table of `limit` rows. Without position_ids the positions are 0 .. kv_length-1.
    Given ones are what index the table: a packed row (vLLM flattens a batch into one row whose positions restart
    per sequence) holds more tokens than any one sequence has positions, and explicit ones may exceed the length."""
    if not validating_inputs():
        return
    needed, given = kv_length, ""
    if position_ids is not None and position_ids.numel():
        _check_integer(position_ids, "position_ids", "positions")
        # a decoding step on an accelerator is not read (see above), unless past the table's length
        if not (reads_values(position_ids) or kv_length > limit):
            return
        low, high = _extremes(position_ids)
        if low < 0:
            raise ValueError(f"position_ids contains {low}; positions start at 0.")
        needed, given = high + 1, f"position_ids contains {high}: "
    if needed > limit:
        raise ValueError(f"{given}{needed} positions are needed but max_position_embeddings={limit} with learned "
                         "positions; shorten the input (truncation=True), keep explicit position_ids below it, or use "
                         "a model with more positions.")


def check_class_labels(labels: Any, classes: int, shape: tuple[int, ...], name: str = "labels") -> None:
    """Integer labels of `shape`, each in [0, classes) or IGNORE_INDEX; read once per loss (not a decoding path)."""
    _check_integer(labels, name, "class labels")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(labels.shape)} but the logits need {tuple(shape)} (one class id per "
                         f"{'position' if len(shape) > 1 else 'row'}, {IGNORE_INDEX} to ignore one).")
    if not validating_inputs() or labels.numel() == 0:
        return
    bad = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= classes))
    if bool(bad.any()):
        raise ValueError(f"{name} contains {int(labels[bad][0])}, outside [0, {classes}) ({classes} classes; "
                         f"{IGNORE_INDEX} ignores a position); check the label mapping (num_labels / vocab_size).")


def check_forward_kwargs(
    kwargs: dict, attn_implementation: Optional[str], *, unused_encoder_states: bool = False
) -> None:
    """Refuse keyword arguments a stack would silently drop: the ones transformers' models honour and ours do not,
    and, under transformers' own attention implementations, any name no component takes. `unused_encoder_states`:
    encoder_hidden_states reached a stack without cross attention (BERT's decoder mode, which ours lack)."""
    if not validating_inputs():
        return
    if unused_encoder_states:
        raise ValueError("encoder_hidden_states was given but this model has no cross attention (only the "
                         "encoder-decoder's decoder has); use TformerEncoderDecoderForConditionalGeneration.")
    for name in kwargs:
        if name in UNSUPPORTED_KWARGS and kwargs[name] is not None:
            raise ValueError(f"{name} is not supported by hf_tformer models: {UNSUPPORTED_KWARGS[name]}.")
    if (attn_implementation or "sdpa") not in BUILTIN_ATTENTION:
        return  # a custom attention function may take keyword arguments of its own
    unknown = sorted(name for name in kwargs if name not in PASS_THROUGH_KWARGS and name not in UNSUPPORTED_KWARGS)
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}: no part of this model takes them (misspelt, or "
                        f"meant for another model?); attn_implementation={attn_implementation!r} takes only "
                        f"{sorted(PASS_THROUGH_KWARGS)} besides the model's named arguments.")
