"""Masks: shapes and patterns, and no NaN/inf from fully padded rows or all-zero masks."""

import pytest
import torch

from conftest import VARIANTS, build, random_ids, run
from hf_tformer.masks import cross_attention_mask, self_attention_mask


def _allowed(mask: torch.Tensor) -> torch.Tensor:
    return mask == 0


def test_causal_padding_mask_pattern():
    padding = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    mask = self_attention_mask(
        padding, batch_size=2, query_length=4, kv_length=4, cache_position=torch.arange(4), is_causal=True,
        dtype=torch.float32, attn_implementation="sdpa",
    )
    assert mask.shape == (2, 1, 4, 4)
    expected = torch.tril(torch.ones(4, 4, dtype=torch.bool)) & padding.bool()[:, None, None, :]
    assert torch.equal(_allowed(mask), expected)
    assert mask.min() == torch.finfo(torch.float32).min


def test_decoding_step_mask_sees_all_past_keys_and_pads_static_slots():
    mask = self_attention_mask(
        torch.ones(1, 5), batch_size=1, query_length=1, kv_length=8, cache_position=torch.tensor([4]),
        is_causal=True, dtype=torch.bfloat16, attn_implementation="sdpa",
    )
    assert torch.equal(_allowed(mask)[0, 0, 0], torch.tensor([True] * 5 + [False] * 3))


def test_no_mask_is_built_when_the_kernel_applies_causality_itself():
    common = dict(batch_size=1, query_length=3, kv_length=3, cache_position=torch.arange(3), dtype=torch.float32)
    assert self_attention_mask(None, is_causal=True, attn_implementation="sdpa", **common) is None
    eager = self_attention_mask(None, is_causal=True, attn_implementation="eager", **common)
    assert torch.equal(_allowed(eager)[0, 0], torch.tril(torch.ones(3, 3, dtype=torch.bool)))
    padding = torch.tensor([[1, 0, 1]])
    assert self_attention_mask(padding, is_causal=True, attn_implementation="flash_attention_2", **common) is padding


def test_cross_attention_mask_is_expanded_over_queries():
    mask = cross_attention_mask(torch.tensor([[1, 1, 0]]), query_length=2, dtype=torch.float32, attn_implementation="sdpa")
    assert mask.shape == (1, 1, 2, 3)
    assert torch.equal(_allowed(mask)[0, 0], torch.tensor([[True, True, False]] * 2))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_fully_padded_rows_and_all_zero_masks_stay_finite(variant, dtype, implementation):
    model = build(variant, implementation, num_key_value_heads=2).to(dtype)
    ids = random_ids(3, 6)
    mask = torch.ones_like(ids)
    mask[1] = 0  # one fully padded row
    for attention_mask in (mask, torch.zeros_like(ids)):
        kwargs = {"decoder_attention_mask": attention_mask} if variant == "encoder_decoder" else {}
        hidden = run(model, ids, attention_mask, **kwargs)
        assert torch.isfinite(hidden).all()


@pytest.mark.parametrize("variant", VARIANTS)
def test_forward_traces_without_data_dependent_branches(variant):
    """The ONNX exporter traces forward: a traced graph must give the eager outputs on inputs it was not traced on."""
    model = build(variant)
    model.config.return_dict = False
    ids = random_ids(2, 6)
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])
    inputs = (ids, mask, ids) if variant == "encoder_decoder" else (ids, mask)

    class Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            names = ["input_ids", "attention_mask", "decoder_input_ids"]
            return self.inner(**dict(zip(names, args)), use_cache=False)[0] if variant != "encoder" else \
                self.inner(**dict(zip(names, args)))[0]

    traced = torch.jit.trace(Wrapped(model), inputs, check_trace=False)
    other_ids = random_ids(2, 6, seed=5)
    other_mask = torch.tensor([[1] * 3 + [0] * 3, [1] * 6])
    other = (other_ids, other_mask, other_ids) if variant == "encoder_decoder" else (other_ids, other_mask)
    with torch.no_grad():
        torch.testing.assert_close(traced(*other), Wrapped(model)(*other), atol=1e-5, rtol=1e-5)


PACKED_POSITIONS = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])  # two sequences in one row, no attention_mask


def test_packed_rows_attend_within_each_sequence_like_llama(tmp_path):
    """Padding-free training (DataCollatorWithFlattening): position_ids restart inside a row and no mask is given.
    Each sequence must see only its own tokens, as in LlamaForCausalLM (which builds the block-diagonal mask)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    import hf_tformer as ht
    from hf_tformer_conversion.converter import convert

    torch.manual_seed(0)
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    llama.save_pretrained(tmp_path / "llama")
    convert(str(tmp_path / "llama"), str(tmp_path / "ours"), progress=False, verify=False)
    ours = ht.TformerDecoderForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = random_ids(1, 9)
    with torch.no_grad():
        reference = llama(ids, position_ids=PACKED_POSITIONS, use_cache=False).logits
        separate = torch.cat([ours(ids[:, :5]).logits, ours(ids[:, 5:]).logits], dim=1)
        for implementation in ("sdpa", "eager"):
            ours.config._attn_implementation = implementation
            for use_cache in (False, True):  # a prefill into an empty cache is packed the same way
                logits = ours(ids, position_ids=PACKED_POSITIONS, use_cache=use_cache).logits
                torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(logits, separate, atol=1e-5, rtol=1e-5)


def test_packed_sequence_mask_is_block_diagonal_and_unpacked_rows_keep_the_kernels_causality():
    from hf_tformer.masks import packed_sequence_ids

    common = dict(batch_size=1, query_length=9, kv_length=9, cache_position=torch.arange(9), is_causal=True,
                  dtype=torch.float32, attn_implementation="sdpa")
    sequence_ids = packed_sequence_ids(PACKED_POSITIONS, 1)
    assert sequence_ids.tolist() == [[0] * 5 + [1] * 4]
    allowed = _allowed(self_attention_mask(None, sequence_ids=sequence_ids, **common))[0, 0]
    expected = torch.block_diag(torch.ones(5, 5), torch.ones(4, 4)).bool() & torch.tril(torch.ones(9, 9)).bool()
    assert torch.equal(allowed, expected)
    # positions counting up from any offset are one sequence: no mask, SDPA keeps is_causal
    assert packed_sequence_ids(torch.arange(3, 12)[None], 2) is None


def test_packed_rows_trace_into_one_graph_for_packed_and_unpacked_inputs():
    model = build("decoder", position_embedding_type="rotary")
    model.config.return_dict = False

    class Forward(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, position_ids):
            return self.model(input_ids=input_ids, position_ids=position_ids, use_cache=False)[0]

    forward, ids = Forward(), random_ids(1, 9)
    traced = torch.jit.trace(forward, (ids, PACKED_POSITIONS), check_trace=False)
    with torch.no_grad():
        first, second = forward(ids[:, :5], torch.arange(5)[None]), forward(ids[:, 5:], torch.arange(4)[None])
        separate = torch.cat([first, second], dim=1)
        torch.testing.assert_close(traced(ids, PACKED_POSITIONS), separate, atol=1e-5, rtol=1e-5)
        for positions in (torch.arange(9)[None], torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4, 5]])):
            torch.testing.assert_close(traced(ids, positions), forward(ids, positions), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_custom_4d_masks_boolean_or_additive_are_taken_as_given(variant, implementation):
    """A 4-D (batch, 1, query, key) mask replaces the padding and causal masks, as in transformers' models: the
    causal + padding pattern given as 4-D matches the 2-D padding mask; boolean and additive forms agree."""
    model = build(variant, implementation, num_key_value_heads=2)
    ids = random_ids(2, 6)
    padding = torch.tensor([[1] * 6, [0, 0] + [1] * 4])
    allowed = padding.bool()[:, None, None, :].expand(2, 1, 6, 6)
    if variant != "encoder":
        allowed = allowed & torch.tril(torch.ones(6, 6, dtype=torch.bool))
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
    name = "decoder_attention_mask" if variant == "encoder_decoder" else "attention_mask"
    reference = run(model, ids, **{name: padding})
    for mask in (allowed, additive):
        hidden = run(model, ids, **{name: mask})
        rows = padding.bool() if variant == "encoder" else torch.ones_like(padding, dtype=torch.bool)
        torch.testing.assert_close(hidden[rows], reference[rows], atol=1e-5, rtol=1e-5)


def test_a_4d_mask_of_the_wrong_shape_names_the_expected_one():
    model = build("decoder")
    with pytest.raises(ValueError, match=r"need \(2, 1, 6, 6\)"):
        run(model, random_ids(2, 6), torch.ones(2, 1, 6, 5, dtype=torch.bool))


def test_a_custom_4d_mask_reaches_flex_attention_as_a_block_mask_of_the_same_pattern():
    from hf_tformer.masks import custom_attention_mask

    allowed = torch.tril(torch.ones(4, 4, dtype=torch.bool)).expand(2, 1, 4, 4).clone()
    allowed[1, 0, :, 0] = False
    additive = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))
    for mask in (allowed, additive):
        block_mask = custom_attention_mask(mask, batch_size=2, query_length=4, kv_length=4, dtype=torch.float32,
                                           attn_implementation="flex_attention")
        pattern = torch.stack([torch.stack([torch.tensor([bool(block_mask.mask_mod(b, 0, q, k)) for k in range(4)])
                                            for q in range(4)]) for b in range(2)])
        assert torch.equal(pattern, allowed[:, 0])
