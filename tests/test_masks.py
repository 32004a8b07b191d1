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
