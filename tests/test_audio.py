"""The audio front end (audio.py) and the speech model's input checks: Whisper's sinusoids exactly, clear errors for
features of the wrong shape, bins, dtype or length, a decoder prompt past its positions, and audio at the wrong
sampling rate (the feature extractor's own error)."""

import numpy as np
import pytest
import torch
from transformers.models.whisper.modeling_whisper import sinusoids

import hf_tformer as ht
from hf_tformer.audio import audio_sinusoids
from speech_helpers import feature_extractor, waveform

CONFIG = dict(vocab_size=64, num_mel_bins=8, max_source_positions=10, max_target_positions=6, encoder_layers=1,
              decoder_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32, pad_token_id=0,
              bos_token_id=1, eos_token_id=1, decoder_start_token_id=2)


def model() -> ht.TformerWhisperForConditionalGeneration:
    torch.manual_seed(0)
    return ht.TformerWhisperForConditionalGeneration(ht.TformerWhisperConfig(**CONFIG)).eval()


def test_sinusoids_are_whispers_table_bit_for_bit():
    for length, channels in [(1500, 384), (10, 16), (7, 4)]:
        assert torch.equal(audio_sinusoids(length, channels, torch.float32), sinusoids(length, channels))


def test_front_end_halves_the_frames_and_takes_shorter_windows():
    ours = model()
    encoder = ours.get_encoder()
    assert encoder.main_input_name == "input_features" and ours.main_input_name == "input_features"
    with torch.no_grad():
        full = encoder(torch.randn(2, 8, 20)).last_hidden_state
        short = encoder(torch.randn(1, 8, 7)).last_hidden_state
    assert full.shape == (2, 10, 16) and short.shape == (1, 4, 16)
    assert ours.config.max_target_positions == 6 and ours.config.to_dict()["max_position_embeddings"] == 6


@pytest.mark.parametrize("features, error, match", [
    (None, ValueError, "input_features is required"),
    (np.zeros((1, 8, 20), dtype=np.float32), TypeError, "must be a torch.Tensor, got ndarray"),
    (torch.zeros(8, 20), ValueError, r"shape \(8, 20\); it must be \(batch, num_mel_bins, frames\)"),
    (torch.zeros(1, 8, 20, dtype=torch.long), ValueError, "dtype torch.int64; log-mel features are floating point"),
    (torch.zeros(1, 80, 20), ValueError, "80 mel bins but num_mel_bins=8"),
    (torch.zeros(1, 20, 8), ValueError, r"20 mel bins but num_mel_bins=8.*\(batch, frames, mel\)"),
    (torch.zeros(1, 8, 21), ValueError, "21 frames but the encoder has max_source_positions=10.*at most 20 frames"),
])
def test_bad_features_are_refused_by_name(features, error, match):
    with pytest.raises(error, match=match):
        model()(features, decoder_input_ids=torch.tensor([[2]]))


def test_a_decoder_prompt_longer_than_its_positions_is_refused():
    with pytest.raises(ValueError, match="7 positions are needed but max_position_embeddings=6"):
        model()(torch.zeros(1, 8, 20), decoder_input_ids=torch.ones(1, 7, dtype=torch.long))


def test_audio_at_the_wrong_sampling_rate_fails_in_the_feature_extractor():
    with pytest.raises(ValueError, match="sampling rate of 16000"):
        feature_extractor()(waveform(0.5), sampling_rate=8000, return_tensors="pt")


@pytest.mark.parametrize("overrides, match", [
    (dict(num_mel_bins=0), "num_mel_bins=0 must be a positive integer"),
    (dict(max_source_positions=True), "max_source_positions=True must be a positive integer"),
    (dict(position_embedding_type="rotary"), "the speech decoder learns its positions"),
    (dict(hidden_size=2, num_attention_heads=1), "hidden_size=2 must be even and >= 4"),
])
def test_config_checks(overrides, match):
    with pytest.raises(ValueError, match=match):
        ht.TformerWhisperConfig(**{**CONFIG, **overrides})


def test_the_position_table_is_a_weight_that_a_checkpoint_keeps(tmp_path):
    """A stored table is loaded as it is (transformers 5 must not overwrite it with sinusoids at init)."""
    ours = model()
    table = ours.model.encoder.front_end.position_embeddings
    assert torch.equal(table, audio_sinusoids(10, 16)) and not table.requires_grad  # fresh: Whisper's sinusoids
    with torch.no_grad():
        table.normal_()
    ours.save_pretrained(tmp_path)
    loaded = ht.TformerWhisperForConditionalGeneration.from_pretrained(tmp_path)
    assert torch.equal(loaded.model.encoder.front_end.position_embeddings, table)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_checkpoint_saved_before_the_table_was_stored_loads_with_the_same_outputs(tmp_path, dtype):
    """Checkpoints written before the table became a weight have none in model.safetensors: they load without an
    error or warning, with the sinusoids the front end used to compute, and give the outputs they gave then."""
    from safetensors.torch import load_file, save_file

    ours = model()
    ours.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["model.encoder.front_end.position_embeddings"]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    loaded, info = ht.TformerWhisperForConditionalGeneration.from_pretrained(tmp_path, dtype=dtype,
                                                                             output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    table = loaded.model.encoder.front_end.position_embeddings
    assert table.dtype == dtype and torch.equal(table, audio_sinusoids(10, 16).to(dtype))
    features, ids = torch.randn(2, 8, 20, generator=torch.Generator().manual_seed(0)), torch.tensor([[2, 5, 7]] * 2)
    with torch.no_grad():
        expected = ours.to(dtype)(features.to(dtype), decoder_input_ids=ids).logits
        actual = loaded.eval()(features.to(dtype), decoder_input_ids=ids).logits
    assert torch.equal(actual, expected)
