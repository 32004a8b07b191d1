"""The speech encoder-decoder: transformers' Whisper numerics, generate() under Whisper's controls with the same
tokens as the native model, and the automatic-speech-recognition pipeline from a saved folder in a fresh process
without hf_tformer."""

import copy
import json

import pytest
import torch
import transformers

import hf_tformer as ht
from conftest import run_without_hf_tformer
from hf_tformer_conversion import convert
from speech_helpers import (build_tokenizer, feature_extractor, long_form_tokens, pipeline_calls, save_source,
                            waveform)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(native WhisperForConditionalGeneration, ours converted from it, tokenizer, checkpoint folder)."""
    root = tmp_path_factory.mktemp("whisper")
    source = save_source(root / "source")
    convert(source, str(root / "ours"), progress=False)
    native = transformers.WhisperForConditionalGeneration.from_pretrained(source).eval()
    ours = ht.TformerWhisperForConditionalGeneration.from_pretrained(root / "ours").eval()
    return native, ours, build_tokenizer(root / "tokenizer"), root


def features(seconds: float, batch: int = 1) -> torch.Tensor:
    clips = [waveform(seconds, seed=index) for index in range(batch)]
    return feature_extractor()(clips, sampling_rate=16000, return_tensors="pt").input_features


def test_encoder_decoder_and_loss_match_whisper(pair):
    native, ours, _, _ = pair
    values = features(1.5, batch=2)
    decoder_ids = torch.tensor([[321, 5, 9, 40, 77], [321, 8, 300, 2, 1]])
    with torch.no_grad():
        expected = native(values, decoder_input_ids=decoder_ids, output_hidden_states=True)
        actual = ours(values, decoder_input_ids=decoder_ids, output_hidden_states=True)
        assert isinstance(ours.get_encoder(), torch.nn.Module) and ours.get_encoder().conv2.stride == (2,)
        encoded = ours.get_encoder()(values).last_hidden_state
    torch.testing.assert_close(actual.encoder_last_hidden_state, expected.encoder_last_hidden_state, atol=1e-5,
                               rtol=1e-5)
    torch.testing.assert_close(encoded, expected.encoder_last_hidden_state, atol=1e-5, rtol=1e-5)
    for mine, theirs in zip(actual.encoder_hidden_states, expected.encoder_hidden_states):
        torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(actual.logits, expected.logits, atol=1e-5, rtol=1e-5)
    labels = torch.tensor([[5, 9, 40, 77, 320], [8, 300, 320, -100, -100]])
    with torch.no_grad():
        torch.testing.assert_close(ours(values, labels=labels).loss, native(values, labels=labels).loss)


def test_base_model_matches_whisper_model(tmp_path):
    source = save_source(tmp_path / "source", transformers.WhisperModel)
    convert(source, str(tmp_path / "ours"), progress=False)
    native = transformers.WhisperModel.from_pretrained(source).eval()
    ours = transformers.AutoModel.from_pretrained(tmp_path / "ours")
    assert isinstance(ours, ht.TformerWhisperModel)
    values, decoder_ids = features(2.0), torch.tensor([[321, 4, 50, 6]])
    with torch.no_grad():
        expected = native(values, decoder_input_ids=decoder_ids).last_hidden_state
        torch.testing.assert_close(ours.eval()(values, decoder_input_ids=decoder_ids).last_hidden_state, expected,
                                   atol=1e-5, rtol=1e-5)


def test_sdpa_matches_eager(pair):
    _, ours, _, root = pair
    values = features(1.0)
    logits = []
    for implementation in ("sdpa", "eager"):
        model = ht.TformerWhisperForConditionalGeneration.from_pretrained(root / "ours",
                                                                           attn_implementation=implementation)
        with torch.no_grad():
            logits.append(model.eval()(values, decoder_input_ids=torch.tensor([[321, 7, 9]])).logits)
    torch.testing.assert_close(logits[0], logits[1], atol=1e-5, rtol=1e-5)


GENERATE_SETTINGS = {
    "checkpoint settings": {},
    "greedy no caches": dict(use_cache=False),
    "beam search": dict(num_beams=3, num_return_sequences=2),
    "sampling": dict(do_sample=True, top_k=20, temperature=0.8),
    "language and task": dict(language="de", task="translate"),
    "language token": dict(language="<|fr|>", task="transcribe"),
    "timestamps": dict(return_timestamps=True),
    "forced decoder ids": dict(forced_decoder_ids=[(1, 323), (2, 326)]),  # in a generation config (deprecated)
    "decoder prompt": dict(decoder_input_ids=torch.tensor([[321, 322, 326, 330]] * 2)),
    "own suppress lists": dict(suppress_tokens=[11, 12, 13], begin_suppress_tokens=[208, 55]),
}


@pytest.mark.parametrize("setting", list(GENERATE_SETTINGS))
def test_generate_gives_whisper_tokens(pair, setting):
    native, ours, _, _ = pair
    values = features(1.2, batch=2)
    settings, outputs = dict(GENERATE_SETTINGS[setting]), []
    for model in (native, ours):
        if "forced_decoder_ids" in settings:
            settings["generation_config"] = copy.deepcopy(model.generation_config)
            settings["generation_config"].forced_decoder_ids = settings.pop("forced_decoder_ids")
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append(model.generate(values, max_new_tokens=10, **settings))
    assert outputs[0].shape[-1] > 4  # something was decoded
    assert torch.equal(outputs[0], outputs[1]), setting


def test_long_form_generation_gives_whisper_segments(pair):
    native, ours, _, _ = pair
    assert torch.equal(long_form_tokens(native), long_form_tokens(ours))


_FRESH_PROCESS = """
import json, sys, numpy as np, torch, transformers
from transformers import pipeline
sys.path.insert(0, {tests!r})
from speech_helpers import pipeline_calls
folder = {folder!r}
model = transformers.AutoModelForSpeechSeq2Seq.from_pretrained(folder, trust_remote_code=True)
assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
processor = transformers.AutoProcessor.from_pretrained(folder)
assert type(processor).__name__ == "WhisperProcessor", type(processor)
asr = pipeline("automatic-speech-recognition", model=folder, trust_remote_code=True)
assert type(asr).__name__ == "TformerSpeechRecognitionPipeline", type(asr)
assert not any(name.startswith("hf_tformer") for name in sys.modules)
print("RESULTS" + json.dumps(pipeline_calls(asr)))
"""


def test_pipeline_from_saved_folder_in_fresh_process_matches_native(pair):
    native, _, tokenizer, root = pair
    import os
    tests = os.path.dirname(__file__)
    out = run_without_hf_tformer(_FRESH_PROCESS.format(tests=tests, folder=str(root / "ours")),
                                 cwd=root, env={"HF_HOME": str(root / "hf_home")})
    ours = json.loads(out.split("RESULTS", 1)[1])
    asr = transformers.pipeline("automatic-speech-recognition", model=native, tokenizer=tokenizer,
                                feature_extractor=feature_extractor())
    expected = pipeline_calls(asr)
    assert ours == expected
    assert len(ours["chunked_timestamps"]["chunks"]) > 1 and ours["batched"][0]["text"]
