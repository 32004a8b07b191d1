"""Every checkpoint our tools write carries a model card that huggingface_hub parses, with the figures that back it."""

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import BartConfig, BartForConditionalGeneration, BertConfig, BertForMaskedLM

from conftest import tiny_config
import hf_tformer as ht
from hf_tformer_conversion import convert, to_native
from hf_tformer_conversion.model_card import hub_repo_id, pipeline_tag_and_auto_class

BART = dict(vocab_size=120, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
            decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)


def _card(folder) -> ModelCard:
    return ModelCard.load(folder / "README.md")


def test_converted_and_native_again_cards_parse_with_metadata_and_figures(tmp_path, hf_home):
    torch.manual_seed(0)
    BartForConditionalGeneration(BartConfig(**BART)).save_pretrained(tmp_path / "source")
    convert(str(tmp_path / "source"), str(tmp_path / "ours"), progress=False)
    card = _card(tmp_path / "ours")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "text2text-generation"
    assert card.data.tags == ["hf_tformer", "converted", "bart"]
    assert card.data.base_model is None  # a local folder is not a repo id; the text names it
    assert f"`{tmp_path / 'source'}`" in card.text
    assert "max |Δ| = " in card.text and "own settings (forced_eos_token_id=2) gives identical tokens: True" in card.text
    assert "AutoModelForSeq2SeqLM.from_pretrained(\"PATH_OR_REPO_ID\", trust_remote_code=True)" in card.text

    to_native(str(tmp_path / "ours"), str(tmp_path / "back"), "bart")
    back = _card(tmp_path / "back")
    assert back.data.pipeline_tag == "text2text-generation" and "bart" in back.data.tags
    assert "BartForConditionalGeneration converted back from hf_tformer" in back.text
    assert "trust_remote_code" not in back.text  # a plain native checkpoint


def test_a_hub_cache_snapshot_names_its_repo_as_base_model(tmp_path, hf_home):
    snapshot = tmp_path / "hub" / "models--someone--tiny-bert-mlm" / "snapshots" / "0123abcd"
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(snapshot)
    convert(str(snapshot), str(tmp_path / "ours"), progress=False)
    card = _card(tmp_path / "ours")
    assert card.data.base_model == "someone/tiny-bert-mlm" and card.data.pipeline_tag == "fill-mask"


@pytest.mark.parametrize("source, expected", [("someone/model", "someone/model"), ("not a repo id", None),
                                              ("a/b/c", None)])
def test_hub_repo_id_of_a_name(source, expected):
    assert hub_repo_id(source) == expected


@pytest.mark.parametrize("name, expected", [
    ("TformerEncoderForMaskedLM", ("fill-mask", "AutoModelForMaskedLM")),
    ("GPT2LMHeadModel", ("text-generation", "AutoModelForCausalLM")),
    ("MarianMTModel", ("translation", "AutoModelForSeq2SeqLM")),
    ("TformerEncoderModel", ("feature-extraction", "AutoModel")),
])
def test_pipeline_tag_by_class(name, expected):
    assert pipeline_tag_and_auto_class(name) == expected


def test_an_export_card_inherits_the_base_model_and_shows_validation(tmp_path, hf_home):
    from hf_tformer_export.export import export_onnx

    torch.manual_seed(0)
    ht.TformerEncoderForSequenceClassification(tiny_config("encoder", num_labels=2)).save_pretrained(tmp_path / "ours")
    (tmp_path / "ours" / "README.md").write_text("---\nbase_model: someone/tiny-classifier\n---\n\n# ours\n")
    export_onnx(str(tmp_path / "ours"), str(tmp_path / "onnx"), "text-classification")
    card = _card(tmp_path / "onnx")
    assert card.data.base_model == "someone/tiny-classifier" and card.data.pipeline_tag == "text-classification"
    assert card.data.tags == ["hf_tformer", "onnx", "onnxruntime", "optimum"]
    assert "model.onnx against PyTorch" in card.text and "logits: max |Δ| = " in card.text
    assert "ORTModelForSequenceClassification.from_pretrained" in card.text
    assert "Attention" in card.text  # the fused attention nodes are named
