"""Decoder: causal LM head, KV caches (dynamic / static, GQA/MQA, every position scheme), classifier."""

import pytest
import torch
from transformers import DynamicCache, StaticCache

import hf_tformer as ht
from conftest import random_ids, tiny_config

TOL = dict(atol=1e-5, rtol=1e-5)


def causal_lm(seed=0, **overrides):
    torch.manual_seed(seed)
    return ht.TformerDecoderForCausalLM(tiny_config("decoder", **overrides)).eval()


@pytest.mark.parametrize("positions", ["sinusoidal", "learned", "rotary", "relative"])
@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_incremental_decoding_with_cache_equals_full_recompute(positions, kv_heads):
    model = causal_lm(position_embedding_type=positions, num_key_value_heads=kv_heads)
    ids = random_ids(2, 10)
    with torch.no_grad():
        full = model(ids).logits
        cache = DynamicCache()
        prefix = model(ids[:, :6], past_key_values=cache, use_cache=True)
        steps = [prefix.logits]
        for t in range(6, 10):
            steps.append(model(ids[:, t : t + 1], past_key_values=cache, use_cache=True).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


@pytest.mark.parametrize("positions", ["rotary", "relative"])
def test_static_cache_decoding_equals_full_recompute(positions):
    model = causal_lm(position_embedding_type=positions, num_key_value_heads=2)
    ids = random_ids(2, 8)
    with torch.no_grad():
        full = model(ids).logits
        try:
            cache = StaticCache(config=model.config, max_cache_len=16)
        except TypeError:  # transformers 4.57 signature
            cache = StaticCache(config=model.config, max_batch_size=2, max_cache_len=16)
        mask = torch.ones(2, 5, dtype=torch.long)
        steps = [model(ids[:, :5], attention_mask=mask, past_key_values=cache, use_cache=True,
                       cache_position=torch.arange(5)).logits]
        for t in range(5, 8):
            mask = torch.ones(2, t + 1, dtype=torch.long)
            steps.append(model(ids[:, t : t + 1], attention_mask=mask, past_key_values=cache, use_cache=True,
                               cache_position=torch.tensor([t])).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)


@pytest.mark.parametrize("positions", ["rotary", "relative"])
def test_greedy_generate_same_with_and_without_cache_and_with_static_cache(positions):
    model = causal_lm(position_embedding_type=positions, num_key_value_heads=2)
    ids = random_ids(2, 5)
    common = dict(attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False, pad_token_id=0)
    cached = model.generate(ids, **common)
    uncached = model.generate(ids, use_cache=False, **common)
    static = model.generate(ids, cache_implementation="static", **common)
    assert torch.equal(cached, uncached) and torch.equal(cached, static)
    assert cached.shape == (2, 13)


def test_left_padded_generation_matches_each_row_alone():
    model = causal_lm(position_embedding_type="learned")
    rows = [random_ids(1, 6, seed=1), random_ids(1, 3, seed=2)]
    padded = torch.zeros(2, 6, dtype=torch.long)
    mask = torch.zeros(2, 6, dtype=torch.long)
    for i, row in enumerate(rows):
        padded[i, 6 - row.shape[1]:] = row
        mask[i, 6 - row.shape[1]:] = 1
    batch = model.generate(padded, attention_mask=mask, max_new_tokens=6, do_sample=False, pad_token_id=0)
    for i, row in enumerate(rows):
        alone = model.generate(row, attention_mask=torch.ones_like(row), max_new_tokens=6, do_sample=False, pad_token_id=0)
        assert torch.equal(batch[i, 6:], alone[0, row.shape[1]:])


def test_causal_lm_loss_shifts_labels_and_ignores_minus_100():
    model = causal_lm()
    ids = random_ids(2, 7)
    labels = ids.clone()
    labels[:, :3] = -100
    out = model(ids, labels=labels)
    expected = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 97), labels[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss, expected)


def test_lm_head_is_tied_to_the_embeddings_unless_asked_otherwise(tmp_path):
    model = causal_lm()
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    untied = causal_lm(tie_word_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()
    untied.save_pretrained(tmp_path)
    reloaded = ht.TformerDecoderForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(reloaded.lm_head.weight, untied.lm_head.weight, rtol=0, atol=0)


def test_resize_token_embeddings_keeps_tying_and_grows_the_head():
    model = causal_lm()
    model.resize_token_embeddings(120)
    assert model.config.vocab_size == 120
    assert model.lm_head.weight.shape == (120, 32)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model(random_ids(1, 4)).logits.shape == (1, 4, 120)


def test_sequence_classification_reads_the_last_real_token_for_left_and_right_padding():
    torch.manual_seed(0)
    model = ht.TformerDecoderForSequenceClassification(tiny_config("decoder", num_labels=3)).eval()
    ids = random_ids(1, 5)
    alone = model(ids).logits
    right = model(torch.cat([ids, torch.zeros(1, 2, dtype=torch.long)], 1),
                  attention_mask=torch.tensor([[1] * 5 + [0] * 2])).logits
    torch.testing.assert_close(right, alone, **TOL)
    out = model(ids, labels=torch.tensor([2]))
    assert out.logits.shape == (1, 3) and out.loss.ndim == 0


def test_logits_to_keep_projects_only_the_last_positions():
    model = causal_lm()
    ids = random_ids(2, 6)
    torch.testing.assert_close(model(ids, logits_to_keep=1).logits, model(ids).logits[:, -1:], **TOL)


def test_tuple_caches_are_refused_with_a_clear_error():
    model = causal_lm()
    with pytest.raises(TypeError, match="Cache"):
        model(random_ids(1, 3), past_key_values=((torch.zeros(1), torch.zeros(1)),))


def test_shift_labels_are_aligned_targets_that_take_the_place_of_labels():
    """Sequence / context-parallel training shifts before sharding and passes `shift_labels` (transformers' causal LM
    loss): the loss is then labels-free next-token cross entropy, the same as `labels` shifted here."""
    model = causal_lm()
    ids = random_ids(2, 6)
    labels = random_ids(2, 6, seed=3)
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=-100)  # position t predicts labels[t + 1]
    reference = model(ids, labels=labels).loss
    torch.testing.assert_close(model(ids, shift_labels=shifted).loss, reference)
    torch.testing.assert_close(model(ids, labels=random_ids(2, 6, seed=4), shift_labels=shifted).loss, reference)
