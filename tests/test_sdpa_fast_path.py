"""What SDPA is handed: no explicit mask (and the kernel's own causality) wherever the mask would allow every key a
causal / bidirectional kernel already allows, so the fast kernels (flash on CUDA, the CPU flash kernel) stay
usable, as with transformers' own models; an explicit mask wherever padding or cached keys need one. On CUDA an
explicit mask rules the flash kernel out: these are the GPU defects expressed on CPU."""

import pytest
import torch

import hf_tformer as ht
from conftest import tiny_config


@pytest.fixture
def sdpa_calls(monkeypatch):
    """Every call to torch's SDPA as (explicit mask given, is_causal), in order."""
    calls = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(query, key, value, attn_mask=None, *args, is_causal=False, **kwargs):
        calls.append((attn_mask is not None, is_causal))
        return original(query, key, value, attn_mask, *args, is_causal=is_causal, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    return calls


def model(model_class, variant: str):
    torch.manual_seed(0)
    return model_class(tiny_config(variant, attn_implementation="sdpa")).eval()


def test_a_decoder_prefill_with_an_all_ones_mask_and_a_cache_runs_causal_without_a_mask(sdpa_calls):
    decoder = model(ht.TformerDecoderForCausalLM, "decoder")
    ids = torch.randint(3, 90, (2, 7))
    with torch.no_grad():
        with_mask = decoder(ids, attention_mask=torch.ones_like(ids), use_cache=True).logits
        assert sdpa_calls == [(False, True)] * 2  # both layers: no mask, the kernel's causality
        torch.testing.assert_close(with_mask, decoder(ids, use_cache=False).logits, rtol=0, atol=0)


def test_decoding_steps_hand_sdpa_no_mask_unless_a_row_is_padded(sdpa_calls):
    decoder = model(ht.TformerDecoderForCausalLM, "decoder")
    ids = torch.randint(3, 90, (2, 5))
    with torch.no_grad():
        decoder.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False)
    assert not any(explicit for explicit, _ in sdpa_calls)
    sdpa_calls.clear()
    padded = torch.ones_like(ids)
    padded[1, :2] = 0  # left padding: every step must still hide those keys
    with torch.no_grad():
        decoder.generate(ids, attention_mask=padded, max_new_tokens=3, do_sample=False)
    assert sdpa_calls and all(explicit for explicit, _ in sdpa_calls)


def test_several_new_tokens_over_a_filled_cache_keep_an_explicit_mask(sdpa_calls):
    """Top-left-aligned is_causal would be wrong when the queries are not the first keys: a mask is needed."""
    decoder = model(ht.TformerDecoderForCausalLM, "decoder")
    ids = torch.randint(3, 90, (1, 8))
    with torch.no_grad():
        cache = decoder(ids[:, :5], use_cache=True).past_key_values
        sdpa_calls.clear()
        continued = decoder(ids[:, 5:], past_key_values=cache, use_cache=True).logits
        assert sdpa_calls == [(True, False)] * 2
        full = decoder(ids, use_cache=False).logits
    torch.testing.assert_close(continued, full[:, 5:], rtol=1e-5, atol=1e-5)


def test_an_encoder_with_an_all_ones_mask_runs_without_one(sdpa_calls):
    encoder = model(ht.TformerEncoderModel, "encoder")
    ids = torch.randint(3, 90, (2, 6))
    with torch.no_grad():
        with_mask = encoder(ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        assert sdpa_calls == [(False, False)] * 2
        padded = torch.ones_like(ids)
        padded[1, 4:] = 0
        encoder(ids, attention_mask=padded)
        assert sdpa_calls[2:] == [(True, False)] * 2  # real padding is still masked
        torch.testing.assert_close(with_mask, encoder(ids).last_hidden_state, rtol=0, atol=0)


def test_cross_attention_over_an_unpadded_source_runs_without_a_mask(sdpa_calls):
    seq2seq = model(ht.TformerEncoderDecoderForConditionalGeneration, "encoder_decoder")
    ids, targets = torch.randint(3, 90, (2, 6)), torch.randint(3, 90, (2, 4))
    with torch.no_grad():
        seq2seq(ids, attention_mask=torch.ones_like(ids), decoder_input_ids=targets, use_cache=True)
    # encoder self attention x2, then per decoder layer: self (causal) and cross attention, none with a mask
    assert sdpa_calls == [(False, False)] * 2 + [(False, True), (False, False)] * 2
