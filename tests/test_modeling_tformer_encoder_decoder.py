"""Encoder-decoder: conditional generation, self + cross attention caches, get_encoder, labels -> decoder inputs."""

import pytest
import torch
from transformers import DynamicCache, EncoderDecoderCache

import hf_tformer as ht
from conftest import random_ids, tiny_config

TOL = dict(atol=1e-5, rtol=1e-5)


def seq2seq(seed=0, **overrides):
    torch.manual_seed(seed)
    return ht.TformerEncoderDecoderForConditionalGeneration(tiny_config("encoder_decoder", **overrides)).eval()


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rotary", "relative"])
@pytest.mark.parametrize("kv_heads", [4, 1])
def test_incremental_decoding_with_self_and_cross_caches_equals_recompute(positions, kv_heads):
    model = seq2seq(position_embedding_type=positions, num_key_value_heads=kv_heads)
    source, target = random_ids(2, 7), random_ids(2, 6, seed=3)
    source_mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3])
    with torch.no_grad():
        full = model(source, attention_mask=source_mask, decoder_input_ids=target).logits
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        encoder_outputs = model.get_encoder()(source, attention_mask=source_mask)
        steps = []
        for t in range(6):
            out = model(attention_mask=source_mask, encoder_outputs=encoder_outputs, decoder_input_ids=target[:, t : t + 1],
                        past_key_values=cache, use_cache=True)
            steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)
    assert all(cache.is_updated.values())


@pytest.mark.parametrize("positions", ["sinusoidal", "relative"])
def test_greedy_generate_with_and_without_cache_and_static_cache(positions):
    model = seq2seq(num_key_value_heads=2, position_embedding_type=positions)
    source = random_ids(2, 6)
    common = dict(attention_mask=torch.ones_like(source), max_new_tokens=7, do_sample=False)
    cached = model.generate(source, **common)
    assert torch.equal(cached, model.generate(source, use_cache=False, **common))
    assert torch.equal(cached, model.generate(source, cache_implementation="static", **common))
    assert torch.all(cached[:, 0] == model.config.decoder_start_token_id)


def test_beam_search_runs_and_returns_sequences():
    model = seq2seq()
    source = random_ids(2, 6)
    out = model.generate(source, attention_mask=torch.ones_like(source), num_beams=3, num_return_sequences=2,
                         max_new_tokens=5, do_sample=False)
    assert out.shape[0] == 4


def test_labels_build_decoder_inputs_by_shifting_right():
    model = seq2seq()
    labels = torch.tensor([[5, 6, 7, -100]])
    shifted = ht.shift_tokens_right(labels, pad_token_id=0, decoder_start_token_id=1)
    assert shifted.tolist() == [[1, 5, 6, 7]]
    out = model(random_ids(1, 5), labels=labels)
    keep = labels[0] != -100
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits[0][keep], labels[0][keep]))


def test_one_embedding_table_serves_encoder_decoder_and_head():
    model = seq2seq()
    assert model.lm_head.weight.data_ptr() == model.model.shared.weight.data_ptr()
    assert model.get_encoder().embed_tokens is model.model.shared
    names = [name for name, _ in model.named_parameters()]
    assert sum("shared" in name for name in names) == 1


def test_encoder_and_decoder_depths_are_separate():
    model = seq2seq(encoder_layers=3, decoder_layers=1)
    assert len(model.model.encoder.layers) == 3 and len(model.model.decoder.layers) == 1


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_gives_the_gradients_of_a_plain_backward(use_reentrant):
    """Reentrant checkpointing recomputes each decoder block from its positional inputs: the encoder states must be
    one of them, or every block backpropagates into the (already freed) encoder graph."""
    ids, labels = random_ids(2, 6), random_ids(2, 5, seed=1)
    gradients = []
    for checkpointing in (False, True):
        model = ht.TformerEncoderDecoderForConditionalGeneration(tiny_config("encoder_decoder")).train()
        model.load_state_dict(seq2seq().state_dict())
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
        model(input_ids=ids, labels=labels).loss.backward()
        gradients.append({name: parameter.grad for name, parameter in model.named_parameters()})
    assert all(gradient is not None for gradient in gradients[1].values())
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, atol=1e-6, rtol=1e-5, msg=name)
