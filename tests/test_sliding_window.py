"""Sliding-window (local) attention: the banded mask, its sliding cache layers, and the other per-config attention
options (QK-norm, output bias, partial rotary, parallel residual). Parity against Mistral / Qwen2 / Qwen3 / GPT-NeoX
is in tests/conversion/test_convert.py (through the converter's parity gate)."""

import pytest
import torch
from hypothesis import given, strategies as st
from transformers import DynamicCache, StaticCache

import hf_tformer as ht
from conftest import random_ids, tiny_config
from hf_tformer.masks import self_attention_mask

TOL = dict(atol=1e-5, rtol=1e-5)
WINDOW = 4


def causal_lm(implementation="sdpa", seed=0, **overrides):
    torch.manual_seed(seed)
    values = dict(position_embedding_type="rotary", num_key_value_heads=2, sliding_window=WINDOW)
    values.update(overrides)
    config = tiny_config("decoder", **values)
    config._attn_implementation = implementation
    return ht.TformerDecoderForCausalLM(config).eval()


@given(query=st.integers(1, 6), past=st.integers(0, 9), window=st.integers(1, 8), offset=st.integers(0, 5),
       causal=st.booleans())
def test_banded_mask_matches_the_definition(query, past, window, offset, causal):
    offset = min(offset, past)  # a sliding cache drops at most the past keys
    kv_length = past + query - offset
    padding = torch.ones(2, past + query, dtype=torch.long)
    padding[1, 0] = 0  # left padding in the second row
    cache_position = torch.arange(past, past + query)
    mask = self_attention_mask(padding, batch_size=2, query_length=query, kv_length=kv_length,
                               cache_position=cache_position, is_causal=causal, dtype=torch.float32,
                               attn_implementation="sdpa", sliding_window=window, kv_offset=offset)
    assert mask.shape == (2, 1, query, kv_length)
    for row in range(2):
        for q in range(query):
            for k in range(kv_length):
                key, position = k + offset, past + q
                local = position - window < key <= position if causal else abs(key - position) < window
                assert (mask[row, 0, q, k] == 0) == (local and bool(padding[row, key]))


def test_sliding_window_layers_see_only_the_window():
    model = causal_lm()
    ids = random_ids(1, 12)
    changed = ids.clone()
    changed[0, 0] = (ids[0, 0] + 1) % 90 + 3
    with torch.no_grad():
        one_layer = dict(num_hidden_layers=1)
        single = causal_lm(**one_layer)
        a, b = single(ids).logits, single(changed).logits
    # one layer: position p sees p - WINDOW + 1 .. p, so token 0 reaches positions 0 .. WINDOW - 1 only
    assert not torch.allclose(a[0, WINDOW - 1], b[0, WINDOW - 1])
    torch.testing.assert_close(a[0, WINDOW:], b[0, WINDOW:], **TOL)
    with torch.no_grad():
        full = causal_lm(sliding_window=None, **one_layer)(ids).logits
    assert not torch.allclose(full[0, WINDOW:], a[0, WINDOW:])


@pytest.mark.parametrize("layer_types", [None, ["sliding_attention", "full_attention"]])
def test_sliding_cache_decoding_equals_full_recompute_and_stays_within_the_window(layer_types):
    model = causal_lm(layer_types=layer_types)
    ids = random_ids(2, 14)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding reaching past the window
    with torch.no_grad():
        full = model(ids, attention_mask=mask).logits
        for cache in (DynamicCache(config=model.config), DynamicCache()):  # sliding layers, and full ones + band
            steps = [model(ids[:, :6], attention_mask=mask[:, :6], past_key_values=cache, use_cache=True).logits]
            for t in range(6, 14):
                steps.append(model(ids[:, t:t + 1], attention_mask=mask[:, :t + 1], past_key_values=cache,
                                   use_cache=True).logits)
            real = mask.bool()  # padded queries see no key: their outputs are arbitrary
            torch.testing.assert_close(torch.cat(steps, dim=1)[real], full[real], **TOL)
    sliding = DynamicCache(config=model.config)
    model(ids, past_key_values=sliding, use_cache=True)
    kept = [layer.keys.shape[-2] for layer in sliding.layers]
    types = layer_types or ["sliding_attention"] * 2
    assert kept == [WINDOW - 1 if kind == "sliding_attention" else 14 for kind in types]


def test_greedy_generation_with_the_bounded_cache_equals_no_cache():
    model = causal_lm()
    ids = random_ids(2, 10)
    common = dict(attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False, pad_token_id=0)
    out = model.generate(ids, return_dict_in_generate=True, **common)
    assert torch.equal(out.sequences, model.generate(ids, use_cache=False, **common))
    assert all(layer.keys.shape[-2] == WINDOW - 1 for layer in out.past_key_values.layers)


@pytest.mark.parametrize("implementation", ["eager", "flex_attention"])
def test_attention_implementations_agree_on_the_band(implementation):
    ids = random_ids(2, 16)
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    with torch.no_grad():
        expected = causal_lm("sdpa")(ids, attention_mask=mask).logits
        actual = causal_lm(implementation)(ids, attention_mask=mask).logits
    keep = mask.bool()
    torch.testing.assert_close(actual[keep], expected[keep], **TOL)


def test_encoder_local_attention_is_a_symmetric_band():
    torch.manual_seed(0)
    encoder = ht.TformerEncoderModel(tiny_config("encoder", num_hidden_layers=1, sliding_window=WINDOW)).eval()
    ids = random_ids(1, 12)
    changed = ids.clone()
    changed[0, 6] = (ids[0, 6] + 1) % 90 + 3
    with torch.no_grad():
        a, b = encoder(ids).last_hidden_state, encoder(changed).last_hidden_state
    differs = [not torch.allclose(a[0, p], b[0, p], atol=1e-6) for p in range(12)]
    assert differs == [abs(p - 6) < WINDOW for p in range(12)]


def test_static_cache_with_a_sliding_window_is_refused_by_name():
    model = causal_lm()
    try:
        cache = StaticCache(config=model.config, max_cache_len=16)
    except TypeError:  # transformers 4.57 signature
        cache = StaticCache(config=model.config, max_batch_size=1, max_cache_len=16)
    with pytest.raises(ValueError, match="static sliding-window cache"):
        model(random_ids(1, 4), past_key_values=cache, use_cache=True, cache_position=torch.arange(4))


def test_qk_norm_partial_rotary_and_parallel_residual_build_and_decode_with_cache():
    model = causal_lm(sliding_window=None, qk_norm=True, norm_type="rmsnorm", partial_rotary_factor=0.5,
                      parallel_residual=True, attention_out_bias=False)
    attention = model.model.decoder.layers[0].self_attn
    assert attention.q_norm.weight.shape == (8,) and attention.o_proj.bias is None and attention.q_proj.bias is not None
    ids = random_ids(2, 9)
    with torch.no_grad():
        full = model(ids).logits
        cache = DynamicCache()
        steps = [model(ids[:, :5], past_key_values=cache, use_cache=True).logits]
        steps += [model(ids[:, t:t + 1], past_key_values=cache, use_cache=True).logits for t in range(5, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


@pytest.mark.parametrize("overrides, match", [
    (dict(sliding_window=0), "sliding_window=0 must be a positive integer"),
    (dict(layer_types=["sliding_attention"]), r"one entry per layer \(num_hidden_layers=2\)"),
    (dict(layer_types=["local", "full_attention"], sliding_window=4), "layer_types entry='local'"),
    (dict(layer_types=["sliding_attention", "full_attention"]), "sliding_window=None; set the window"),
    (dict(sliding_window=4, position_embedding_type="relative"), "'relative' is not supported"),
    (dict(partial_rotary_factor=0.5), "needs position_embedding_type='rotary'"),
    (dict(partial_rotary_factor=1.5, position_embedding_type="rotary"), r"must be a number in \(0, 1\]"),
    (dict(partial_rotary_factor=0.1, position_embedding_type="rotary"), "rotary needs at least 2"),
    (dict(parallel_residual=True, norm_placement="post"), "set norm_placement='pre'"),
    (dict(qk_norm="yes"), "qk_norm='yes' must be True or False"),
])
def test_bad_attention_options_are_refused_by_name(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config("decoder", **overrides)


def test_encoder_decoder_refuses_local_attention():
    with pytest.raises(ValueError, match="not the encoder-decoder"):
        tiny_config("encoder_decoder", sliding_window=4)


def _flash_stand_in(module, query, key, value, attention_mask, scaling, dropout=0.0, sliding_window=None, **kwargs):
    """What transformers' flash_attention_forward computes from our arguments, in plain torch (flash-attn needs a
    GPU): the mask is the 2-D (batch, keys) padding mask of exactly the keys it gets, causality comes from
    `module.is_causal` with the queries right-aligned to the keys, and a window w keeps the keys in (q - w, q]
    (flash's window_size=(w - 1, w - 1)). Returns (batch, query, heads, head_dim) as flash does."""
    heads, query_length, kv_length = query.shape[1], query.shape[2], key.shape[2]
    key, value = (t.repeat_interleave(heads // t.shape[1], dim=1) for t in (key, value))
    queries = torch.arange(query_length)[:, None] + (kv_length - query_length)
    keys = torch.arange(kv_length)[None, :]
    allowed = keys <= queries if module.is_causal else torch.ones(query_length, kv_length, dtype=torch.bool)
    if sliding_window is not None:
        allowed = allowed & (keys > queries - sliding_window)
    allowed = allowed[None, None]  # (1, 1, query, key)
    if attention_mask is not None:
        assert attention_mask.shape == (query.shape[0], kv_length), "flash takes a 2-D mask over its keys"
        allowed = allowed & attention_mask.bool()[:, None, None, :]
    scores = (query @ key.transpose(-1, -2) * scaling).masked_fill(~allowed, float("-inf"))
    weights = torch.nan_to_num(scores.softmax(-1))  # a padded query row attends nowhere
    return (weights @ value).transpose(1, 2), None


@pytest.fixture
def flash_stand_in():
    from transformers import AttentionInterface

    mapping = AttentionInterface._global_mapping
    previous = mapping.get("flash_attention_2")
    AttentionInterface.register("flash_attention_2", _flash_stand_in)
    yield
    if previous is None:
        del mapping["flash_attention_2"]
    else:
        mapping["flash_attention_2"] = previous


def test_flash_attention_gets_the_window_and_a_mask_over_the_cached_keys_only(flash_stand_in):
    """The flash path gets no banded mask: the window travels as the `sliding_window` kwarg and the 2-D padding mask
    is cut to the keys the sliding cache still holds. Checked with a stand-in of flash's semantics, on a left-padded
    prompt longer than the window and through cached greedy decoding."""
    ids = random_ids(2, 12)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    sdpa, flash = causal_lm("sdpa"), causal_lm("sdpa")
    flash.config._attn_implementation = "flash_attention_2"  # after construction: no flash-attn install check
    with torch.no_grad():
        expected, actual = sdpa(ids, attention_mask=mask).logits, flash(ids, attention_mask=mask).logits
    keep = mask.bool()
    torch.testing.assert_close(actual[keep], expected[keep], **TOL)
    common = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    assert torch.equal(flash.generate(ids, **common), sdpa.generate(ids, **common))
