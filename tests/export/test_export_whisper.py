"""ONNX export of the speech encoder-decoder (hf_tformer_whisper) with our exporter, laid out as optimum exports
native Whisper: encoder + decoder (+ with past), validated against PyTorch, run by our
TformerORTModelForSpeechSeq2Seq (any transformers version) with transformers' Whisper generation (the same tokens as
the native WhisperForConditionalGeneration the checkpoint was converted from), the ASR pipeline over it, and
optimum's ORTModelForSpeechSeq2Seq (transformers 4.57) over the same export."""

import json

import pytest
import torch
import transformers

from conftest import run_without_hf_tformer
from hf_tformer_conversion import convert
from hf_tformer_export.export import PROCESSOR_FILES, MissingPreprocessorWarning, export_onnx
from hf_tformer_export.runtime import TOKEN_TIMESTAMPS_REFUSED, load_ort_model
from speech_helpers import (build_tokenizer, feature_extractor, long_form_tokens, pipeline_calls, save_source,
                            waveform)

TASK = "automatic-speech-recognition-with-past"
SHORT_DECODER = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(native model, tokenizer, our checkpoint folder, export folder, export report)."""
    root = tmp_path_factory.mktemp("whisper_onnx")
    # 16 decoder positions: the tracing lengths (past + new tokens) must fit the learned position table
    source = save_source(root / "source", max_target_positions=SHORT_DECODER)
    settings = transformers.GenerationConfig.from_pretrained(source)
    settings.max_length = SHORT_DECODER  # what the checkpoint's own generate() may reach
    settings.save_pretrained(source)
    convert(source, str(root / "ours"), progress=False)
    report = export_onnx(str(root / "ours"), str(root / "onnx"), TASK)
    native = transformers.WhisperForConditionalGeneration.from_pretrained(source).eval()
    return native, build_tokenizer(root / "tokenizer"), root / "ours", root / "onnx", report


def features(seconds: float, batch: int) -> torch.Tensor:
    clips = [waveform(seconds, seed=index) for index in range(batch)]
    return feature_extractor()(clips, sampling_rate=16000, return_tensors="pt").input_features


def test_export_validates_with_fused_attention_and_ships_the_pipeline(exported):
    _, _, _, out, report = exported
    check = report.validation[0]
    assert check.max_abs_diff <= 1e-4 and check.greedy_identical is True
    assert report.files == ["decoder_model.onnx", "decoder_with_past_model.onnx", "encoder_model.onnx"]
    # encoder: one packed com.microsoft.Attention per layer; decoder: self + cross MultiHeadAttention per layer
    assert report.node_counts["encoder_model.onnx"].get("Attention") == 2
    assert report.node_counts["decoder_model.onnx"].get("MultiHeadAttention") == 4
    assert report.node_counts["decoder_with_past_model.onnx"].get("MultiHeadAttention") == 4
    assert json.loads((out / "config.json").read_text())["max_position_embeddings"] == SHORT_DECODER
    assert (out / "pipeline_tformer_whisper.py").is_file()  # config.json's custom_pipelines names it
    assert type(transformers.AutoFeatureExtractor.from_pretrained(out)).__name__ == "WhisperFeatureExtractor"
    card = (out / "README.md").read_text()
    assert "pipeline_tag: automatic-speech-recognition" in card and "random log-mel windows" in card
    assert "ORTModelForSpeechSeq2Seq" in card


GENERATE_SETTINGS = {
    "own generation config": {},
    "greedy no caches": dict(use_cache=False),
    "timestamps": dict(return_timestamps=True),
    "language and task": dict(language="<|fr|>", task="transcribe"),
    "beam search": dict(num_beams=3, num_return_sequences=2),
    "sampling": dict(do_sample=True, temperature=0.8),
}


def generate_both(native, ort, **settings) -> list[torch.Tensor]:
    values, outputs = features(1.2, batch=2), []
    for model in (native, ort):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append(model.generate(values, max_new_tokens=10, **settings))
    assert outputs[0].shape[-1] > 4  # something was decoded
    return outputs


@pytest.mark.parametrize("setting", list(GENERATE_SETTINGS))
def test_ort_generate_gives_native_whisper_tokens(exported, setting):
    native, _, _, out, _ = exported
    ort = load_ort_model(out, TASK)
    assert type(ort).__name__ == "TformerORTModelForSpeechSeq2Seq"  # Whisper's generate, not the plain one
    expected, actual = generate_both(native, ort, **GENERATE_SETTINGS[setting])
    assert torch.equal(expected, actual), setting


@pytest.mark.needs_optimum
@pytest.mark.parametrize("setting", ["own generation config", "timestamps", "beam search"])
def test_optimum_runs_our_export_with_whisper_generation(exported, setting):
    native, _, _, out, _ = exported
    ort = load_ort_model(out, TASK, backend="optimum")
    assert type(ort).__name__ == "TformerORTModelForWhisper"  # optimum's ORTModelForWhisper, routed by register()
    expected, actual = generate_both(native, ort, **GENERATE_SETTINGS[setting])
    assert torch.equal(expected, actual), setting


def test_ort_long_form_generation_gives_native_segments(exported):
    native, _, _, out, _ = exported
    assert torch.equal(long_form_tokens(native), long_form_tokens(load_ort_model(out, TASK)))


def test_asr_pipeline_over_the_export_matches_native(exported):
    native, tokenizer, _, out, _ = exported
    asr = load_ort_model(out, TASK).speech_pipeline()
    assert type(asr).__name__ == "TformerSpeechRecognitionPipeline"
    assert type(asr).__module__.startswith("transformers_modules")  # the export's own copy of the class
    expected = pipeline_calls(transformers.pipeline("automatic-speech-recognition", model=native,
                                                    tokenizer=tokenizer, feature_extractor=feature_extractor()))
    actual = pipeline_calls(asr)
    assert actual == expected
    assert len(actual["chunked_timestamps"]["chunks"]) > 1


@pytest.fixture(scope="module")
def reference(exported, tmp_path_factory):
    """reference.pt: features, the native model's tokens (with timestamps) and a clip's text."""
    native, tokenizer, _, _, _ = exported
    path = tmp_path_factory.mktemp("whisper_reference") / "reference.pt"
    values, clip = features(1.2, batch=2), waveform(1.5, seed=5)
    with torch.no_grad():
        tokens = native.generate(values, max_new_tokens=8, return_timestamps=True)
    asr = transformers.pipeline("automatic-speech-recognition", model=native, tokenizer=tokenizer,
                                feature_extractor=feature_extractor())
    text = asr(clip, generate_kwargs=dict(max_new_tokens=6))["text"]
    assert text and tokens.shape[-1] > 4  # something to compare
    torch.save({"values": values, "tokens": tokens, "clip": torch.from_numpy(clip), "text": text}, path)
    return path


# A fresh process without hf_tformer: load the export, generate, transcribe through the pipeline.
FRESH_PROCESS = """
import sys, torch
data = torch.load("{reference}")
{load}
assert torch.equal(model.generate(data["values"], max_new_tokens=8, return_timestamps=True), data["tokens"])
assert asr(data["clip"].numpy(), generate_kwargs=dict(max_new_tokens=6))["text"] == data["text"]
assert not any(name == "hf_tformer" or name.startswith("hf_tformer.") for name in sys.modules)
print("OK", model.config.model_type)
"""
OURS = """
from hf_tformer_export.runtime import load_ort_model
model = load_ort_model("{folder}", "{task}")
asr = model.speech_pipeline()
"""
OPTIMUM = """
import hf_tformer_export
from optimum.onnxruntime import ORTModelForSpeechSeq2Seq
from optimum.pipelines import pipeline
hf_tformer_export.register()
model = ORTModelForSpeechSeq2Seq.from_pretrained("{folder}", trust_remote_code=True)
assert type(model).__name__ == "TformerORTModelForWhisper", type(model)
asr = pipeline("automatic-speech-recognition", model="{folder}", trust_remote_code=True, accelerator="ort")
"""


def test_export_loads_and_transcribes_without_hf_tformer(exported, reference, tmp_path):
    out = exported[3]
    code = FRESH_PROCESS.format(reference=reference, load=OURS.format(folder=out, task=TASK))
    assert "OK hf_tformer_whisper" in run_without_hf_tformer(code, cwd=tmp_path,
                                                            env={"HF_HOME": str(tmp_path / "hf_home")})


@pytest.mark.needs_optimum
def test_optimum_main_export_loads_and_transcribes_without_hf_tformer(exported, reference, tmp_path):
    """optimum's own main_export after register(); a fresh process without hf_tformer loads that export with
    ORTModelForSpeechSeq2Seq (register() from hf_tformer_export) and runs optimum's pipeline over the folder: the
    native model's tokens and texts."""
    from optimum.exporters.onnx import main_export

    from hf_tformer_export import register

    checkpoint = exported[2]
    register()
    main_export(str(checkpoint), tmp_path / "plain", task=TASK, trust_remote_code=True)
    code = FRESH_PROCESS.format(reference=reference, load=OPTIMUM.format(folder=tmp_path / "plain"))
    assert "OK hf_tformer_whisper" in run_without_hf_tformer(code, cwd=tmp_path,
                                                            env={"HF_HOME": str(tmp_path / "hf_home")})


def test_export_without_past_int8_and_fp16(exported, tmp_path):
    _, _, checkpoint, _, _ = exported
    task = "automatic-speech-recognition"
    report = export_onnx(str(checkpoint), str(tmp_path / "onnx"), task, quantize=True, fp16=True)
    assert report.validation[0].max_abs_diff <= 1e-4 and report.validation[0].greedy_identical is True
    assert "decoder_with_past_model.onnx" not in report.files
    assert {"encoder_model_quantized.onnx", "decoder_model_quantized.onnx", "encoder_model_fp16.onnx",
            "decoder_model_fp16.onnx"} <= set(report.files)
    assert report.quantization.agreement >= 0.5  # reported, not gated: INT8 is meant to differ
    pytorch = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(checkpoint, trust_remote_code=True).eval()
    values = features(1.0, batch=2)
    fp32 = load_ort_model(tmp_path / "onnx", task)
    assert fp32.generation_config.use_cache is False  # no past graph: the whole sequence every step
    with torch.no_grad():
        expected = pytorch.generate(values, max_new_tokens=8, use_cache=False)
    assert torch.equal(fp32.generate(values, max_new_tokens=8), expected)
    for variant in ("quantized", "fp16"):
        model = load_ort_model(tmp_path / "onnx", task, variant=variant)
        assert model.encoder.path.name == f"encoder_model_{variant}.onnx"
        assert model.generate(values, max_new_tokens=8).shape[0] == 2


def test_text_tasks_are_refused_for_speech(exported, tmp_path):
    _, _, checkpoint, _, _ = exported
    with pytest.raises(ValueError, match="valid tasks: \\['automatic-speech-recognition'"):
        export_onnx(str(checkpoint), str(tmp_path / "onnx"), "text2text-generation-with-past")
    assert not (tmp_path / "onnx").exists()


def test_a_speech_checkpoint_without_its_feature_extractor_warns_how_to_add_one(exported, tmp_path):
    import shutil

    _, _, checkpoint, _, _ = exported
    folder = tmp_path / "ckpt"
    shutil.copytree(checkpoint, folder)
    for name in PROCESSOR_FILES:  # transformers 5 saves the feature extractor inside processor_config.json
        (folder / name).unlink(missing_ok=True)
    with pytest.warns(MissingPreprocessorWarning, match="no preprocessor_config.json.*WhisperProcessor"):
        export_onnx(str(folder), str(tmp_path / "onnx"), TASK, validate=False)


def test_token_timestamps_are_refused_by_onnx_runtime_with_what_to_do(exported):
    """Word-level timestamps need the decoder's cross-attention weights, which the export does not output: a
    ValueError saying so and naming the PyTorch model, for generate() and for the pipeline's word timestamps."""
    _, _, _, out, _ = exported
    ort = load_ort_model(out, TASK)
    with pytest.raises(ValueError, match="token-level timestamps .* not available from the ONNX export") as error:
        ort.generate(features(1.2, batch=1), return_token_timestamps=True, max_new_tokens=4)
    assert str(error.value) == TOKEN_TIMESTAMPS_REFUSED and "AutoModelForSpeechSeq2Seq" in str(error.value)
    asr = ort.speech_pipeline()
    with pytest.raises(ValueError, match="return_timestamps='word'.*Use the PyTorch model"):
        asr(waveform(1.5), return_timestamps="word", generate_kwargs=dict(max_new_tokens=4))
    # what the export does give: segment-level timestamps
    assert "chunks" in asr(waveform(1.5), return_timestamps=True, generate_kwargs=dict(max_new_tokens=4))


def test_features_the_encoder_cannot_take_are_refused_with_what_to_do(exported):
    """Wrong mel bins, more frames than one window, no batch dimension: a ValueError naming the feature extractor,
    not ONNX Runtime's shape error."""
    ort = load_ort_model(exported[3], TASK)
    values, start = features(1.0, batch=1), torch.tensor([[ort.config.decoder_start_token_id]])
    for wrong in (values[:, :8], torch.cat([values, values], dim=-1), values[0]):
        with pytest.raises(ValueError, match="input_features .*the export's feature extractor"):
            ort(input_features=wrong, decoder_input_ids=start)
