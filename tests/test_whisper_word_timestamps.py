"""Word-level timestamps of the speech encoder-decoder against transformers' Whisper: the cross-attention weights
they are read from, token timestamps from generate() with the checkpoint's `alignment_heads`, the
automatic-speech-recognition pipeline's return_timestamps="word" from a saved folder in a fresh process without
hf_tformer, `alignment_heads` through conversion and back, and the error when a checkpoint has none."""

import json
from pathlib import Path

import pytest
import torch
import transformers

import hf_tformer as ht
from conftest import run_without_hf_tformer
from hf_tformer_conversion import convert, to_native
from speech_helpers import (CHUNK_SECONDS, build_tokenizer, feature_extractor, save_source, waveform,
                            word_timestamp_calls)

ALIGNMENT_HEADS = [[1, 0], [1, 2]]  # (decoder layer, cross-attention head) pairs of the 2-layer, 4-head model


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """source/: a native Whisper checkpoint whose generation_config.json names alignment heads; ours/: converted."""
    root = tmp_path_factory.mktemp("word_timestamps")
    source = save_source(root / "source")
    generation_config = transformers.GenerationConfig.from_pretrained(source)
    generation_config.alignment_heads = ALIGNMENT_HEADS
    generation_config.save_pretrained(source)
    report = convert(source, str(root / "ours"), progress=False, verify=False)  # tests/conversion checks parity
    assert report.generation_fields_unread == []  # transformers' Whisper generation reads alignment_heads, ...
    return root


def load_pair(root) -> tuple:
    """Fresh models each time: generate(return_token_timestamps=True) switches a model's config to eager."""
    native = transformers.WhisperForConditionalGeneration.from_pretrained(root / "source").eval()
    ours = ht.TformerWhisperForConditionalGeneration.from_pretrained(root / "ours").eval()
    assert ours.config._attn_implementation == "sdpa"
    return native, ours


def padded_clips(*seconds: float, long_form: bool = False):
    """Clips of different lengths padded to one window (long_form: kept whole, padded to the longest), with the
    attention mask that says where each one ends."""
    clips = [waveform(length, seed=index) for index, length in enumerate(seconds)]
    whole = dict(truncation=False, padding="longest") if long_form else {}
    return feature_extractor()(clips, sampling_rate=16000, return_tensors="pt", return_attention_mask=True, **whole)


def test_cross_attention_weights_match_whisper_when_sdpa_is_configured(root):
    """What the timestamps are computed from: every decoder layer's cross-attention weights, (batch, heads, query,
    frames), from our sdpa-configured model against the native model's eager ones (transformers' sdpa returns none)."""
    _, ours = load_pair(root)
    native = transformers.WhisperForConditionalGeneration.from_pretrained(root / "source", attn_implementation="eager")
    values, ids = padded_clips(1.5, 0.7).input_features, torch.tensor([[321, 5, 9, 40], [321, 8, 300, 2]])
    with torch.no_grad():
        expected = native(values, decoder_input_ids=ids, output_attentions=True)
        actual = ours(values, decoder_input_ids=ids, output_attentions=True)
    assert len(actual.cross_attentions) == 2 and actual.cross_attentions[0].shape == (2, 4, 4, 100)
    for name in ("cross_attentions", "decoder_attentions", "encoder_attentions"):
        for mine, theirs in zip(getattr(actual, name), getattr(expected, name), strict=True):
            torch.testing.assert_close(mine, theirs, atol=1e-5, rtol=1e-5)


GENERATE_SETTINGS = {
    "attention mask": dict(clips=(1.2, 0.8), mask=True),
    "no attention mask": dict(clips=(1.2, 0.8), mask=False),
    "beam search": dict(clips=(1.2, 0.8), mask=True, num_beams=2),
    "timestamp tokens": dict(clips=(1.6,), mask=True, return_timestamps=True),
    "long-form": dict(clips=(CHUNK_SECONDS * 2.5,), mask=True, return_timestamps=True, long_form=True),
}


@pytest.mark.parametrize("setting", list(GENERATE_SETTINGS))
def test_token_timestamps_match_whisper(root, setting):
    settings = dict(GENERATE_SETTINGS[setting])
    inputs = padded_clips(*settings.pop("clips"), long_form=settings.pop("long_form", False))
    kwargs = dict(attention_mask=inputs.attention_mask) if settings.pop("mask") else {}
    outputs = []
    for model in load_pair(root):
        with torch.no_grad():
            outputs.append(model.generate(inputs.input_features, return_token_timestamps=True, max_new_tokens=10,
                                          **kwargs, **settings))
        assert model.config._attn_implementation == "eager"  # as Whisper's generation leaves it
    expected, actual = outputs
    assert torch.equal(actual["sequences"], expected["sequences"])
    torch.testing.assert_close(actual["token_timestamps"], expected["token_timestamps"])
    assert actual["token_timestamps"].shape == actual["sequences"].shape
    assert len(set(actual["token_timestamps"][0].tolist())) > 2  # timestamps that move: something to compare


def test_token_timestamps_follow_the_alignment_heads(root):
    """The heads are read: another choice of heads gives other timestamps (for the same tokens)."""
    inputs, outputs = padded_clips(1.2), []
    ours = ht.TformerWhisperForConditionalGeneration.from_pretrained(root / "ours").eval()
    for heads in (ALIGNMENT_HEADS, [[0, 3]]):
        ours.generation_config.alignment_heads = heads
        with torch.no_grad():
            outputs.append(ours.generate(inputs.input_features, attention_mask=inputs.attention_mask,
                                         return_token_timestamps=True, max_new_tokens=10))
    assert torch.equal(outputs[0]["sequences"], outputs[1]["sequences"])
    assert not torch.equal(outputs[0]["token_timestamps"], outputs[1]["token_timestamps"])


_FRESH_PROCESS = """
import json, sys, transformers
sys.path.insert(0, {tests!r})
from speech_helpers import word_timestamp_calls
asr = transformers.pipeline("automatic-speech-recognition", model={folder!r}, trust_remote_code=True)
assert type(asr.model).__module__.startswith("transformers_modules"), type(asr.model).__module__
assert not any(name.startswith("hf_tformer") for name in sys.modules)
print("RESULTS" + json.dumps(word_timestamp_calls(asr)))
"""


def test_word_timestamps_pipeline_from_saved_folder_in_fresh_process_matches_native(root):
    """The same calls on the native pipeline here and on ours from its folder in a process without hf_tformer."""
    out = run_without_hf_tformer(_FRESH_PROCESS.format(tests=str(Path(__file__).parent), folder=str(root / "ours")),
                                 cwd=root, env={"HF_HOME": str(root / "hf_home")})
    ours = json.loads(out.split("RESULTS", 1)[1])
    native = transformers.WhisperForConditionalGeneration.from_pretrained(root / "source").eval()
    asr = transformers.pipeline("automatic-speech-recognition", model=native, tokenizer=build_tokenizer(
        root / "tokenizer"), feature_extractor=feature_extractor())
    assert ours == word_timestamp_calls(asr)
    words = ours["chunked"]["chunks"]
    assert len(words) > 3 and all(len(word["timestamp"]) == 2 for word in words)
    assert words[-1]["timestamp"][1] > CHUNK_SECONDS  # the windows' words are placed on the whole clip's time line
    assert len(ours["batched"]) == 2 and ours["batched"][0] == ours["word"]


def test_alignment_heads_survive_conversion_and_the_way_back(root):
    saved = json.loads((root / "ours" / "generation_config.json").read_text())
    assert saved["alignment_heads"] == ALIGNMENT_HEADS
    back = root / "back"
    report = to_native(str(root / "ours"), str(back), "whisper")
    assert report.parity.max_abs_diff <= 1e-5
    assert json.loads((back / "generation_config.json").read_text())["alignment_heads"] == ALIGNMENT_HEADS
    returned = transformers.WhisperForConditionalGeneration.from_pretrained(back).eval()
    assert returned.generation_config.alignment_heads == ALIGNMENT_HEADS


def test_alignment_heads_outside_the_decoder_are_refused_by_conversion(root, tmp_path):
    import shutil

    source = tmp_path / "source"
    shutil.copytree(root / "source", source)
    settings = transformers.GenerationConfig.from_pretrained(source)
    settings.alignment_heads = [[1, 0], [2, 1], [0, 4]]  # 2 decoder layers, 4 heads
    settings.save_pretrained(source)
    with pytest.raises(ValueError, match=r"alignment_heads has \[\[2, 1\], \[0, 4\]\], outside the decoder's 2 "
                                         r"layers x 4 heads"):
        convert(str(source), str(tmp_path / "ours"), progress=False, verify=False)
    assert not (tmp_path / "ours").exists()


def test_token_timestamps_without_alignment_heads_give_whisper_own_error(root):
    values, errors = padded_clips(1.0).input_features, []
    for model in load_pair(root):
        del model.generation_config.alignment_heads
        with pytest.raises(ValueError, match="no `alignment_heads`, token-level timestamps not available") as error:
            model.generate(values, return_token_timestamps=True, max_new_tokens=4)
        errors.append(str(error.value))
    assert errors[0] == errors[1]
