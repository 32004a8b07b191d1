"""A tiny Whisper-shaped setup built locally (no downloads): a byte-level BPE tokenizer trained on a few sentences
with Whisper's special and timestamp tokens added as WhisperTokenizer expects, transformers' WhisperFeatureExtractor
with short windows, a native WhisperForConditionalGeneration with random weights, and generated audio."""

import json
from pathlib import Path

import numpy as np
import torch
import transformers

SAMPLING_RATE = 16000
CHUNK_SECONDS = 2  # the feature extractor's window: 200 frames at a 10 ms hop -> max_source_positions = 100
MEL_BINS = 16
LANGUAGES = ("en", "de", "fr")
TEXT = ["the quick brown fox jumps over the lazy dog", "speech recognition turns sound into text",
        "a tiny model hears tones and noise", "hello world, this is a test of timestamps"] * 4


def build_tokenizer(folder: Path) -> transformers.WhisperTokenizer:
    """WhisperTokenizer over a byte-level BPE trained on TEXT, with Whisper's specials and timestamp tokens
    <|0.00|> .. <|CHUNK_SECONDS.00|>."""
    # imported here: the fresh processes import this module and check that nothing named hf_tformer* is loaded
    from hf_tformer_demo.toy_tokenizer import whisper_tokenizer

    return whisper_tokenizer(folder, TEXT, LANGUAGES, CHUNK_SECONDS)


def feature_extractor() -> transformers.WhisperFeatureExtractor:
    return transformers.WhisperFeatureExtractor(feature_size=MEL_BINS, chunk_length=CHUNK_SECONDS)


def generation_config(tokenizer) -> transformers.GenerationConfig:
    """What a multilingual Whisper checkpoint's generation_config.json holds, for these token ids."""
    from hf_tformer_demo.toy_tokenizer import whisper_generation_config

    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    return whisper_generation_config(
        tokenizer, LANGUAGES, max_initial_timestamp_index=50, max_length=24,
        suppress_tokens=[ids(t) for t in ("<|startoflm|>", "<|nocaptions|>")] + [3, 7],
        begin_suppress_tokens=[ids("Ġ") if "Ġ" in tokenizer.get_vocab() else 220 % eot, eot],
    )


def native_config(tokenizer, **overrides) -> transformers.WhisperConfig:
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    fields = dict(vocab_size=len(tokenizer), num_mel_bins=MEL_BINS, d_model=32, encoder_layers=2, decoder_layers=2,
                  encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                  max_source_positions=CHUNK_SECONDS * 50, max_target_positions=32, pad_token_id=eot,
                  bos_token_id=eot, eos_token_id=eot, begin_suppress_tokens=[220, eot],
                  decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"))
    return transformers.WhisperConfig(**{**fields, **overrides})


def native_model(tokenizer, cls=transformers.WhisperForConditionalGeneration, seed: int = 0, **overrides):
    """Random weights moved off their init (std 0.02 would make every next token the same), EOS made unlikely
    early so that generations are long enough to compare."""
    torch.manual_seed(seed)
    model = cls(native_config(tokenizer, **overrides))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if not name.endswith("encoder.embed_positions.weight"):  # Whisper's fixed sinusoids stay as they are
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.2)
        # timestamp rows kept near zero: a random model would otherwise emit them everywhere and Whisper's
        # generation would cut every window into many tiny segments (one decoding pass each)
        first = tokenizer.convert_tokens_to_ids("<|0.00|>")
        model.get_input_embeddings().weight[first:] *= 0.05  # tied to the output projection
    model.generation_config = generation_config(tokenizer)
    return model.eval()


def save_source(folder: Path, cls=transformers.WhisperForConditionalGeneration, **overrides) -> str:
    """A native checkpoint as on the Hub: weights, generation config, WhisperProcessor files."""
    tokenizer = build_tokenizer(folder / "tokenizer_files")
    native_model(tokenizer, cls, **overrides).save_pretrained(folder)
    transformers.WhisperProcessor(feature_extractor(), tokenizer).save_pretrained(folder)
    return str(folder)


def waveform(seconds: float, seed: int = 0) -> np.ndarray:
    """Two tones and noise at 16 kHz, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    audio = 0.4 * np.sin(2 * np.pi * 440 * time) + 0.2 * np.sin(2 * np.pi * (300 + 200 * seed) * time)
    return (audio + 0.1 * rng.standard_normal(time.shape)).astype(np.float32)


def pipeline_calls(asr) -> dict:
    """What the pipeline tests ask of an automatic-speech-recognition pipeline (ours, native, ONNX Runtime's):
    a batch, long audio in windows with timestamps, a language token; JSON-normal (tuples as lists)."""
    short, long = waveform(1.5, seed=1), waveform(CHUNK_SECONDS * 3.3, seed=2)
    results = {
        "batched": asr([short, waveform(1.0, seed=3)], batch_size=2, generate_kwargs=dict(max_new_tokens=6)),
        "chunked_timestamps": asr(long, chunk_length_s=CHUNK_SECONDS, batch_size=3, return_timestamps=True,
                                  generate_kwargs=dict(max_new_tokens=6)),
        "language": asr(short, generate_kwargs=dict(language="de", task="transcribe", max_new_tokens=6)),
    }
    return json.loads(json.dumps(results))


def word_timestamp_calls(asr) -> dict:
    """What the word-timestamp tests ask of an automatic-speech-recognition pipeline: words of one clip, of a
    batch, and of long audio in windows (batched); JSON-normal (tuples as lists)."""
    words, tokens = dict(return_timestamps="word"), dict(generate_kwargs=dict(max_new_tokens=6))
    results = {
        "word": asr(waveform(1.5, seed=1), **words, **tokens),
        "batched": asr([waveform(1.5, seed=1), waveform(1.0, seed=3)], batch_size=2, **words, **tokens),
        "chunked": asr(waveform(CHUNK_SECONDS * 3.3, seed=2), chunk_length_s=CHUNK_SECONDS, batch_size=3, **words,
                       **tokens),
    }
    return json.loads(json.dumps(results))


def long_form_tokens(model) -> torch.Tensor:
    """Whisper's long-form generate() with timestamps over 2.5 windows of audio (features kept whole, with their
    attention mask): the tokens of every window, as the tests compare them across models."""
    clip = waveform(CHUNK_SECONDS * 2.5)
    values = feature_extractor()(clip, sampling_rate=SAMPLING_RATE, return_tensors="pt", truncation=False,
                                 padding="longest", return_attention_mask=True)
    assert values.input_features.shape[-1] > CHUNK_SECONDS * 100  # longer than one window: long-form
    with torch.no_grad():
        return model.generate(values.input_features, attention_mask=values.attention_mask, return_timestamps=True,
                              max_new_tokens=10)
