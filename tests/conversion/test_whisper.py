"""Whisper -> the speech encoder-decoder and back, gated on parity over random log-mel features and on greedy
tokens under the checkpoint's own generation config; the processor files travel with the weights."""

import json

import pytest
import torch
import transformers

import hf_tformer as ht
from hf_tformer_conversion import convert, to_native
from hf_tformer_conversion.converter import CARRIED_FILES
from speech_helpers import build_tokenizer, feature_extractor, native_config, save_source, waveform

CLASSES = {"WhisperForConditionalGeneration": ht.TformerWhisperForConditionalGeneration,
           "WhisperModel": ht.TformerWhisperModel}


@pytest.mark.parametrize("architecture", list(CLASSES))
def test_converts_with_parity_and_back(tmp_path, architecture):
    native_class = getattr(transformers, architecture)
    source = save_source(tmp_path / "source", native_class)
    report = convert(source, str(tmp_path / "ours"), progress=False)
    assert report.target_class == CLASSES[architecture].__name__ and report.parity.max_abs_diff <= 1e-5
    generates = architecture.endswith("Generation")
    assert report.parity.greedy_identical is (True if generates else None)
    assert report.parity.own_settings_identical is (True if generates else None)
    # transformers 4.57 saves a WhisperProcessor as vocab.json / merges.txt / added_tokens.json / normalizer.json /
    # preprocessor_config.json ...; 5.x as tokenizer.json / processor_config.json: whatever the source has travels
    present = {name for name in CARRIED_FILES if (tmp_path / "source" / name).exists()}
    assert present - {"generation_config.json"} <= set(report.carried) and len(present) >= 3
    assert all((tmp_path / "ours" / name).exists() for name in present)
    card = (tmp_path / "ours" / "README.md").read_text()
    assert ("pipeline_tag: automatic-speech-recognition" in card) == generates
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["model_type"] == "hf_tformer_whisper" and config["max_source_positions"] == 100
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "ours")
    assert type(processor).__name__ == "WhisperProcessor" and processor.feature_extractor.feature_size == 16
    assert len(processor.tokenizer) == config["vocab_size"] and processor.tokenizer.convert_tokens_to_ids("<|de|>") == 323
    if generates:
        saved = json.loads((tmp_path / "ours" / "generation_config.json").read_text())
        assert saved["no_timestamps_token_id"] == 330 and saved["lang_to_id"]["<|de|>"] == 323

    back = to_native(str(tmp_path / "ours"), str(tmp_path / "back"), "whisper")
    assert back.architecture == architecture and back.parity.max_abs_diff <= 1e-5
    assert not list((tmp_path / "back").glob("*.py"))  # plain native checkpoint
    original = native_class.from_pretrained(source).eval()
    returned = native_class.from_pretrained(tmp_path / "back").eval()
    values = feature_extractor()(waveform(1.7, seed=4), sampling_rate=16000, return_tensors="pt").input_features
    ids = torch.tensor([[321, 9, 17]])
    with torch.no_grad():
        torch.testing.assert_close(returned(values, decoder_input_ids=ids)[0], original(values, decoder_input_ids=ids)[0],
                                   atol=1e-5, rtol=1e-5)


def test_a_key_bias_learned_after_conversion_is_dropped_exactly_on_the_way_back(tmp_path):
    """Whisper's key projections have no bias; a bias on keys shifts every score of a query equally."""
    convert(save_source(tmp_path / "source"), str(tmp_path / "ours"), progress=False)
    ours = ht.TformerWhisperForConditionalGeneration.from_pretrained(tmp_path / "ours")
    with torch.no_grad():
        for name, parameter in ours.named_parameters():
            if name.endswith("k_proj.bias"):
                parameter.normal_(0.0, 1.0)
    ours.save_pretrained(tmp_path / "trained")
    report = to_native(str(tmp_path / "trained"), str(tmp_path / "back"), "whisper")
    assert report.parity.max_abs_diff <= 1e-5 and report.parity.greedy_identical


@pytest.mark.parametrize("overrides, match", [
    (dict(encoder_attention_heads=2), "encoder_attention_heads=2, decoder_attention_heads=4 is not supported"),
    (dict(decoder_ffn_dim=48), "encoder_ffn_dim=64, decoder_ffn_dim=48 is not supported"),
    (dict(use_weighted_layer_sum=True), "use_weighted_layer_sum=True is not supported"),
])
def test_configs_we_cannot_represent_are_refused_by_name(tmp_path, overrides, match):
    from hf_tformer_conversion.sources import SOURCES

    config = native_config(build_tokenizer(tmp_path / "tokenizer"), **overrides)
    with pytest.raises(ValueError, match=match):
        SOURCES["whisper"].translate_config(config.to_dict())


def test_a_text_checkpoint_does_not_go_back_to_whisper(tmp_path):
    config = ht.TformerEncoderDecoderConfig(vocab_size=40, hidden_size=16, num_attention_heads=2, intermediate_size=32,
                                            encoder_layers=1, decoder_layers=1)
    ht.TformerEncoderDecoderForConditionalGeneration(config).save_pretrained(tmp_path / "text")
    with pytest.raises(ValueError, match="TformerEncoderDecoderForConditionalGeneration has no whisper counterpart"):
        to_native(str(tmp_path / "text"), str(tmp_path / "back"), "whisper")


def _replace_encoder_table(folder, make_table) -> torch.Tensor:
    """Rewrite the source's stored encoder position table (model.safetensors) with make_table(sinusoids)."""
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    weights = load_file(path)
    key = next(k for k in weights if k.endswith("encoder.embed_positions.weight"))
    weights[key] = make_table(weights[key]).contiguous()
    save_file(weights, path, metadata={"format": "pt"})
    return weights[key]


TABLES = {  # what a checkpoint may store instead of fp32 sinusoids
    "rounded to fp16": lambda table: table.half().float(),  # Whisper checkpoints saved in fp16: off by up to 2.9e-4
    "random": lambda table: torch.randn(table.shape, generator=torch.Generator().manual_seed(3)),
}


@pytest.mark.parametrize("table", list(TABLES))
def test_the_stored_encoder_position_table_is_carried_both_ways(tmp_path, table):
    """Before, the table was dropped and fp32 sinusoids recomputed: a different encoder, refused by the gate."""
    source = save_source(tmp_path / "source")
    stored = _replace_encoder_table(tmp_path / "source", TABLES[table])
    report = convert(source, str(tmp_path / "ours"), progress=False)
    assert report.parity.max_abs_diff <= 1e-5 and report.parity.greedy_identical
    native = transformers.WhisperForConditionalGeneration.from_pretrained(source).eval()
    ours = ht.TformerWhisperForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    assert torch.equal(ours.model.encoder.front_end.position_embeddings, stored)
    features = feature_extractor()(waveform(2.0, seed=5), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        expected = native.get_encoder()(features).last_hidden_state
        actual = ours.get_encoder()(features).last_hidden_state
    assert float((actual - expected).abs().max()) <= 1e-5

    to_native(str(tmp_path / "ours"), str(tmp_path / "back"), "whisper")
    returned = transformers.WhisperForConditionalGeneration.from_pretrained(tmp_path / "back")
    assert torch.equal(returned.model.encoder.embed_positions.weight, stored)
