"""Encoder: base model and the four task heads, their losses and outputs."""

import pytest
import torch

import hf_tformer as ht
from conftest import random_ids, tiny_config


def model_of(cls, seed=0, **overrides):
    torch.manual_seed(seed)
    return cls(tiny_config("encoder", **overrides)).eval()


def test_masked_lm_logits_loss_and_tied_decoder():
    model = model_of(ht.TformerEncoderForMaskedLM)
    assert model.lm_head.decoder.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    ids = random_ids(2, 6)
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    out = model(ids, labels=labels)
    assert out.logits.shape == (2, 6, 97)
    expected = torch.nn.functional.cross_entropy(out.logits[:, 2], ids[:, 2])
    torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("problem", ["single_label_classification", "multi_label_classification", "regression"])
def test_sequence_classification_losses(problem):
    num_labels = 1 if problem == "regression" else 3
    model = model_of(ht.TformerEncoderForSequenceClassification, num_labels=num_labels, problem_type=problem)
    ids = random_ids(2, 5)
    labels = {
        "single_label_classification": torch.tensor([0, 2]),
        "multi_label_classification": torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]),
        "regression": torch.tensor([0.5, -1.0]),
    }[problem]
    out = model(ids, labels=labels)
    assert out.logits.shape == (2, num_labels) and torch.isfinite(out.loss)


def test_token_classification_ignores_minus_100():
    model = model_of(ht.TformerEncoderForTokenClassification, num_labels=4)
    ids = random_ids(1, 5)
    labels = torch.tensor([[-100, 1, 2, -100, 3]])
    out = model(ids, labels=labels)
    keep = labels[0] != -100
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits[0][keep], labels[0][keep]))


def test_question_answering_spans():
    model = model_of(ht.TformerEncoderForQuestionAnswering)
    out = model(random_ids(2, 8), start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 20]))
    assert out.start_logits.shape == (2, 8) and out.end_logits.shape == (2, 8)
    assert torch.isfinite(out.loss)


def test_token_type_ids_change_the_output_and_hidden_states_are_returned():
    model = model_of(ht.TformerEncoderModel)
    ids = random_ids(1, 6)
    plain = model(ids, output_hidden_states=True)
    typed = model(ids, token_type_ids=torch.tensor([[0, 0, 0, 1, 1, 1]]))
    assert len(plain.hidden_states) == 3  # embeddings + 2 blocks
    assert not torch.allclose(plain.last_hidden_state, typed.last_hidden_state)


def test_return_dict_false_gives_tuples():
    model = model_of(ht.TformerEncoderForSequenceClassification)
    out = model(random_ids(1, 4), labels=torch.tensor([1]), return_dict=False)
    assert isinstance(out, tuple) and out[0].ndim == 0


def test_inputs_embeds_equal_input_ids():
    model = model_of(ht.TformerEncoderModel)
    ids = random_ids(2, 5)
    via_ids = model(ids).last_hidden_state
    via_embeds = model(inputs_embeds=model.embed_tokens(ids)).last_hidden_state
    torch.testing.assert_close(via_ids, via_embeds, rtol=0, atol=0)
