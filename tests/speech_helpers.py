"""A tiny Whisper-shaped setup built locally (no downloads): a byte-level BPE tokenizer trained on a few sentences
with Whisper's special and timestamp tokens added as WhisperTokenizer expects, transformers' WhisperFeatureExtractor
with short windows, a native WhisperForConditionalGeneration with random weights, and generated audio."""

import json
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

SAMPLING_RATE = 16000
CHUNK_SECONDS = 2  # the feature extractor's window: 200 frames at a 10 ms hop -> max_source_positions = 100
MEL_BINS = 16
LANGUAGES = ("en", "de", "fr")
TEXT = ["the quick brown fox jumps over the lazy dog", "speech recognition turns sound into text",
        "a tiny model hears tones and noise", "hello world, this is a test of timestamps"] * 4


def _special_tokens() -> list[str]:
    """Whisper's specials after <|endoftext|>, in its order: the timestamps start right after <|notimestamps|>."""
    return ["<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES), "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def build_tokenizer(folder: Path) -> transformers.WhisperTokenizer:
    """vocab.json / merges.txt from a locally trained byte-level BPE, then WhisperTokenizer with Whisper's specials
    (special) and timestamp tokens <|0.00|> .. <|CHUNK_SECONDS.00|> (ordinary added tokens, as in Whisper's)."""
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=320, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.model.save(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "normalizer.json").write_text(json.dumps({"colour": "color"}))  # English spelling map, as Whisper's
    tokenizer = transformers.WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                              normalizer_file=str(folder / "normalizer.json"), pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>", *_special_tokens()]})
    steps = int(CHUNK_SECONDS / 0.02)
    tokenizer.add_tokens([f"<|{step * 0.02:.2f}|>" for step in range(steps + 1)])
    return tokenizer


def feature_extractor() -> transformers.WhisperFeatureExtractor:
    return transformers.WhisperFeatureExtractor(feature_size=MEL_BINS, chunk_length=CHUNK_SECONDS)


def generation_config(tokenizer) -> transformers.GenerationConfig:
    """What a multilingual Whisper checkpoint's generation_config.json holds, for these token ids."""
    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    return transformers.GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"), bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
        no_timestamps_token_id=ids("<|notimestamps|>"), prev_sot_token_id=ids("<|startofprev|>"),
        lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        is_multilingual=True, max_initial_timestamp_index=50, max_length=24,
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
