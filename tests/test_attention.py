"""The one attention module: sdpa == eager for every variant and config choice; weights on request; GQA/MQA."""

import pytest
import torch
from hypothesis import given

from conftest import VARIANTS, build, config_choices, random_ids, run


@pytest.mark.parametrize("variant", VARIANTS)
@given(choices=config_choices)
def test_sdpa_matches_eager(variant, choices):
    ids = random_ids(3, 9)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding
    mask[2, :3] = 0 if variant == "decoder" else 1  # left padding for the decoder
    outputs = [run(build(variant, impl, **choices), ids, mask) for impl in ("sdpa", "eager")]
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sdpa_matches_eager_without_mask(variant):
    ids = random_ids(2, 7)
    outputs = [run(build(variant, impl, num_key_value_heads=2), ids) for impl in ("sdpa", "eager")]
    torch.testing.assert_close(outputs[0], outputs[1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_output_attentions_returns_normalised_weights_even_when_sdpa_is_configured(variant):
    model = build(variant, "sdpa")
    ids = random_ids(2, 6)
    kwargs = {"decoder_input_ids": ids[:, :4]} if variant == "encoder_decoder" else {}
    with torch.no_grad():
        out = model(input_ids=ids, output_attentions=True, **kwargs)
    attentions = out.decoder_attentions if variant == "encoder_decoder" else out.attentions
    assert len(attentions) == 2
    query = 4 if variant == "encoder_decoder" else 6
    assert attentions[0].shape == (2, 4, query, query)
    torch.testing.assert_close(attentions[0].sum(-1), torch.ones(2, 4, query))
    if variant != "encoder":  # causal: nothing above the diagonal
        assert torch.all(attentions[0].triu(1) == 0)
    if variant == "encoder_decoder":
        assert out.cross_attentions[0].shape == (2, 4, 4, 6)


def test_gqa_and_mqa_have_fewer_key_value_projections():
    for kv_heads in (4, 2, 1):
        model = build("decoder", num_key_value_heads=kv_heads)
        attention = model.decoder.layers[0].self_attn
        assert attention.k_proj.out_features == kv_heads * 8
        assert attention.num_key_value_groups == 4 // kv_heads


def test_every_attention_sets_is_causal_for_the_kernels():
    model = build("encoder_decoder")
    assert not model.encoder.layers[0].self_attn.is_causal
    assert model.decoder.layers[0].self_attn.is_causal
    assert not model.decoder.layers[0].cross_attn.is_causal


def test_attention_kwargs_reach_the_attention_function(monkeypatch):
    """Extra forward kwargs travel from the model down to the attention call (vLLM's backend relies on it)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    seen = []
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def spy(module, query, key, value, attention_mask, **kwargs):
        seen.append(kwargs.get("marker"))
        return sdpa(module, query, key, value, attention_mask, **kwargs)

    ALL_ATTENTION_FUNCTIONS.register("spy_sdpa", spy) if hasattr(ALL_ATTENTION_FUNCTIONS, "register") else None
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, "spy_sdpa", spy)
    model = build("decoder", "sdpa")
    model.config._attn_implementation = "spy_sdpa"
    with torch.no_grad():
        model(input_ids=random_ids(1, 5), marker="here")
    assert seen == ["here", "here"]


@pytest.mark.parametrize("variant", ["encoder", "decoder"])
def test_flex_attention_runs_through_the_same_path_with_padding(variant):
    # 16 tokens: torch 2.13's compiled CPU flex kernel returns wrong rows for batch > 1 at 8 tokens, even without
    # any mask (reproduced with torch alone against SDPA); from 16 tokens on it matches. The encoder-decoder's
    # cross attention hits an inductor C++ codegen error in the CPU flex template ('cur_kvSplitSize5' undeclared),
    # also upstream; flex for it is left to GPU machines.
    ids = random_ids(2, 16)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    reference = run(build(variant, "eager", num_key_value_heads=2), ids, mask)
    flex = run(build(variant, "flex_attention", num_key_value_heads=2), ids, mask)
    keep = mask.bool() if variant != "encoder_decoder" else torch.ones_like(mask, dtype=torch.bool)
    torch.testing.assert_close(flex[keep], reference[keep], atol=1e-4, rtol=1e-4)
