"""Invariances of the shared stack, over random configs: padding, causality, batch composition."""

import pytest
import torch
from hypothesis import given, strategies as st

from conftest import VARIANTS, build, config_choices, random_ids, run

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
@given(choices=config_choices, extra=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_padding_does_not_change_a_sequences_outputs(variant, choices, extra, seed):
    model = build(variant, **choices)
    ids = random_ids(1, 6, seed)
    alone = run(model, ids, torch.ones_like(ids))
    padded_ids = torch.cat([ids, torch.zeros(1, extra, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([torch.ones(1, 6, dtype=torch.long), torch.zeros(1, extra, dtype=torch.long)], dim=1)
    kwargs = {}
    if variant == "encoder_decoder":  # pad the source only; the decoder sees the same target
        kwargs = {"decoder_input_ids": ids}
    padded = run(model, padded_ids, padded_mask, **kwargs)
    torch.testing.assert_close(padded[:, :6] if variant != "encoder_decoder" else padded, alone, **TOL)


@given(choices=config_choices, extra=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_left_padding_with_position_ids_does_not_change_decoder_outputs(choices, extra, seed):
    model = build("decoder", **choices)
    ids = random_ids(1, 6, seed)
    alone = run(model, ids)
    padded_ids = torch.cat([torch.zeros(1, extra, dtype=torch.long), ids], dim=1)
    mask = (torch.arange(6 + extra) >= extra).long()[None]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        padded = model(input_ids=padded_ids, attention_mask=mask, position_ids=position_ids).last_hidden_state
    torch.testing.assert_close(padded[:, extra:], alone, **TOL)


@pytest.mark.parametrize("variant", ["decoder", "encoder_decoder"])
@given(choices=config_choices, cut=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_causality_outputs_before_t_ignore_tokens_after_t(variant, choices, cut, seed):
    model = build(variant, **choices)
    ids = random_ids(1, 8, seed)
    changed = ids.clone()
    changed[:, cut:] = random_ids(1, 8 - cut, seed + 1)
    if variant == "encoder_decoder":  # the decoder is causal; the source stays the same
        first = run(model, ids, decoder_input_ids=ids)
        second = run(model, ids, decoder_input_ids=changed)
    else:
        first, second = run(model, ids), run(model, changed)
    torch.testing.assert_close(first[:, :cut], second[:, :cut], **TOL)


@pytest.mark.parametrize("variant", VARIANTS)
@given(choices=config_choices, seed=st.integers(0, 2**16))
def test_batch_composition_does_not_change_a_rows_outputs(variant, choices, seed):
    model = build(variant, **choices)
    ids = random_ids(4, 7, seed)
    batched = run(model, ids, torch.ones_like(ids))
    for row in range(4):
        single = run(model, ids[row : row + 1], torch.ones_like(ids[row : row + 1]))
        torch.testing.assert_close(batched[row : row + 1], single, **TOL)
