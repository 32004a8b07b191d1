"""Position schemes: T5's relative-position bucketing matches transformers' reference; the bias is used as T5 does."""

import pytest
import torch
from transformers.models.t5.modeling_t5 import T5Attention

from conftest import build, random_ids
from hf_tformer.positions import relative_position_buckets


@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
@pytest.mark.parametrize("num_buckets, max_distance", [(32, 128), (8, 20), (4, 4)])
def test_relative_buckets_match_t5(bidirectional, num_buckets, max_distance):
    queries = torch.arange(0, 400)[:, None]
    keys = torch.arange(0, 400)[None, :]
    relative = keys - queries  # every distance in [-399, 399]
    ours = relative_position_buckets(relative, bidirectional=bidirectional, num_buckets=num_buckets,
                                     max_distance=max_distance)
    reference = T5Attention._relative_position_bucket(relative, bidirectional=bidirectional,
                                                      num_buckets=num_buckets, max_distance=max_distance)
    assert torch.equal(ours, reference)
    assert 0 <= int(ours.min()) and int(ours.max()) < num_buckets


def test_each_stack_owns_its_relative_bias_and_uses_no_position_table():
    model = build("encoder_decoder", position_embedding_type="relative", relative_attention_num_buckets=8)
    encoder_bias = model.encoder.relative_position_bias
    decoder_bias = model.decoder.relative_position_bias
    assert encoder_bias.bidirectional and not decoder_bias.bidirectional
    assert encoder_bias.embeddings.weight.shape == (8, model.config.num_attention_heads)
    assert not any("position_embeddings" in name for name, _ in model.named_parameters())


def test_relative_bias_depends_on_distances_not_on_position_ids():
    model = build("encoder", position_embedding_type="relative")
    with torch.no_grad():
        model.encoder.relative_position_bias.embeddings.weight.normal_(0, 5.0)
        ids = random_ids(1, 6)
        # as in T5, position_ids are not read: shifting them leaves key - query distances and the outputs unchanged
        plain = model(ids).last_hidden_state
        shifted = model(ids, position_ids=torch.arange(10, 16)[None]).last_hidden_state
        torch.testing.assert_close(plain, shifted)
        model.encoder.relative_position_bias.embeddings.weight.zero_()
        assert not torch.allclose(model(ids).last_hidden_state, plain, atol=1e-3)  # the bias did something


@pytest.mark.parametrize("implementation", ["flex_attention"])
def test_relative_positions_refuse_kernels_without_an_additive_mask(implementation):
    model = build("decoder", attn_implementation=implementation, position_embedding_type="relative")
    with pytest.raises(ValueError, match="relative"):
        model(random_ids(1, 5))
