"""Bad input gets a clear ValueError, never an index crash or a half-built model."""

import pytest
import torch

import hf_tformer as ht
from conftest import build, random_ids, tiny_config


def test_ids_outside_the_vocabulary():
    model = build("encoder")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(input_ids=torch.tensor([[1, 2, 97]]))
    with pytest.raises(ValueError, match="-1"):
        model(input_ids=torch.tensor([[1, -1]]))


def test_sequences_longer_than_learned_positions():
    model = build("decoder", position_embedding_type="learned", max_position_embeddings=8)
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        model(input_ids=random_ids(1, 9))
    rotary = build("decoder", position_embedding_type="rotary", max_position_embeddings=8)
    assert rotary(input_ids=random_ids(1, 9)).last_hidden_state.shape[1] == 9  # no table, no hard limit


def test_mismatched_attention_mask_shape():
    model = build("encoder")
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 5\)"):
        model(input_ids=random_ids(2, 6), attention_mask=torch.ones(2, 5, dtype=torch.long))
    seq2seq = build("encoder_decoder")
    with pytest.raises(ValueError, match="attention_mask"):
        seq2seq(input_ids=random_ids(2, 6), attention_mask=torch.ones(1, 6, dtype=torch.long),
                decoder_input_ids=random_ids(2, 3))


def test_exactly_one_of_ids_or_embeddings():
    model = build("decoder")
    with pytest.raises(ValueError, match="exactly one"):
        model()
    ids = random_ids(1, 3)
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids=ids, inputs_embeds=model.embed_tokens(ids))


def test_token_types_on_a_model_without_them():
    model = build("decoder").eval()
    ids = random_ids(1, 3)
    with pytest.raises(ValueError, match="type_vocab_size=0"):
        model(input_ids=ids, token_type_ids=torch.tensor([[0, 1, 1]]))
    # All-zero types (a generic tokenizer's, passed on by sentence-transformers) add nothing and are accepted.
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state,
                                   model(input_ids=ids).last_hidden_state, rtol=0, atol=0)


def test_seq2seq_without_decoder_inputs():
    model = build("encoder_decoder")
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(input_ids=random_ids(1, 3))


def test_model_of_the_wrong_variant_from_a_checkpoint(tmp_path):
    ht.TformerDecoderModel(tiny_config("decoder")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="hf_tformer_decoder"):
        ht.TformerEncoderModel.from_pretrained(tmp_path)
