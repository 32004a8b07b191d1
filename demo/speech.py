"""The demo's generated speech task: tone sequences heard as words, for a tiny Whisper-shaped model.

A clip is 2 to 4 tones (0.18-0.3 s each, short silences between), each at one of five pitches spread over the
log-mel scale; its transcript names the tones with digit words ("two five one"): the audio alone determines the
text. Durations, gaps, loudness, start offset and background noise vary from clip to clip. A spec string holds
every random choice, so a clip is re-rendered from its spec anywhere (training, evaluation, the .wav examples) and
held-out clips are sequences that no training clip has. The example clips are written as 16-bit PCM .wav files for
people; the pipelines get them decoded with the stdlib (reload_check.pipeline_input), as arrays: transformers reads an
audio *path* through ffmpeg, which may not be installed.
"""

import itertools
import random
import tempfile
import wave
from pathlib import Path

import numpy as np
import torch

import hf_tformer as ht

from .data import Split, TaskData
from .reload_check import pipeline_input
from .toy_tokenizer import whisper_generation_config, whisper_tokenizer

SAMPLING_RATE = 16000
CHUNK_SECONDS = 2  # the feature extractor's window: 200 frames at a 10 ms hop -> 100 encoder positions
MEL_BINS = 16
# The transcript word of each pitch (Hz): about two mel bins apart with 16 bins over 0-8 kHz.
TONES = {"one": 350.0, "two": 700.0, "three": 1070.0, "four": 1600.0, "five": 2400.0}
LANGUAGES = ("en",)
# Generated length: the 4-token prompt + 4 words + <|endoftext|>, with room to spare. Set as the generation config's
# max_length: the pipeline honours a model's max_length over its own default of 256 new tokens. It is also the
# decoder's position table.
MAX_LENGTH = 16


def _spec(rng: random.Random, words: tuple[str, ...]) -> str:
    return f"{' '.join(words)}:{rng.randrange(2**31)}"


def words_of(spec: str) -> str:
    """The transcript a spec's clip says: 'two five one'."""
    return spec.split(":")[0]


def render(spec: str) -> np.ndarray:
    """The float32 waveform (16 kHz, in [-1, 1]) a spec describes (deterministic)."""
    words, seed = spec.split(":")
    rng = np.random.default_rng(int(seed))
    pieces = [np.zeros(int(rng.uniform(0.0, 0.15) * SAMPLING_RATE), np.float32)]  # a silent start of varying length
    for word in words.split():
        time = np.arange(int(rng.uniform(0.18, 0.3) * SAMPLING_RATE)) / SAMPLING_RATE
        ramp = np.minimum(1.0, np.minimum(time, time[-1] - time) / 0.01)  # 10 ms fade in and out: no clicks
        pitch = TONES[word] * rng.uniform(0.97, 1.03)
        pieces.append((rng.uniform(0.2, 0.6) * ramp * np.sin(2 * np.pi * pitch * time + rng.uniform(0, 6.3))))
        pieces.append(np.zeros(int(rng.uniform(0.06, 0.12) * SAMPLING_RATE), np.float32))
    audio = np.concatenate(pieces)
    audio += rng.uniform(0.005, 0.03) * rng.standard_normal(audio.shape)  # background noise
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def tone_sequences(seed: int = 0, size: int = 2000, held_out: int = 200) -> TaskData:
    """Specs and transcripts: `held_out` distinct sequences never trained on (one clip each), and `size` training
    clips drawn from the remaining sequences (each rendered several times, differently)."""
    rng = random.Random(seed)
    sequences = [words for length in (2, 3, 4) for words in itertools.product(TONES, repeat=length)]
    rng.shuffle(sequences)
    unseen, seen = sequences[:held_out], sequences[held_out:]
    train = [_spec(rng, rng.choice(seen)) for _ in range(size)]
    test = [_spec(rng, words) for words in unseen]
    return TaskData(Split(train, [words_of(spec) for spec in train]), Split(test, [words_of(spec) for spec in test]))


def write_examples(specs: list[str], folder: Path) -> list[str]:
    """Render `specs` to 16-bit PCM .wav files in `folder` (for people to listen to; the pipelines get them
    decoded by reload_check.pipeline_input); their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, spec in enumerate(specs):
        path = folder / f"{index}.wav"
        with wave.open(str(path), "wb") as file:
            file.setnchannels(1)
            file.setsampwidth(2)
            file.setframerate(SAMPLING_RATE)
            file.writeframes((render(spec) * 32767).round().astype("<i2").tobytes())
        paths.append(str(path))
    return paths


# --- the model, its processor and its metric ----------------------------------------------------------------------

def build(task_data: TaskData) -> tuple:
    """(WhisperProcessor over a locally built WhisperTokenizer and a short-window WhisperFeatureExtractor, a tiny
    TformerWhisperForConditionalGeneration whose generation config prompts English transcription)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    corpus = [" " + " ".join(TONES)] * 4
    with tempfile.TemporaryDirectory() as folder:  # the tokenizer reads its files once, at construction
        tokenizer = whisper_tokenizer(folder, corpus, LANGUAGES, CHUNK_SECONDS, language="en", task="transcribe")
    extractor = WhisperFeatureExtractor(feature_size=MEL_BINS, chunk_length=CHUNK_SECONDS)
    eot = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    config = ht.TformerWhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=MEL_BINS, max_source_positions=CHUNK_SECONDS * 50,
        max_target_positions=MAX_LENGTH, encoder_layers=2, decoder_layers=2, hidden_size=64, num_attention_heads=4,
        intermediate_size=128, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
        decoder_start_token_id=tokenizer.convert_tokens_to_ids("<|startoftranscript|>"))
    model = ht.TformerWhisperForConditionalGeneration(config)
    model.generation_config = whisper_generation_config(tokenizer, LANGUAGES, language="en", task="transcribe",
                                                        max_length=MAX_LENGTH, begin_suppress_tokens=[eot])
    return WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer), model


def pipeline_preprocessors(processor) -> dict:
    """pipeline() kwargs: the processor's two halves, and the pipeline class that runs Whisper's pre/post-processing
    for this model type (transformers keys that on model_type "whisper"; a saved checkpoint names the class in
    config.custom_pipelines, which pipeline() reads only when it loads from a folder)."""
    from hf_tformer.pipeline_tformer_whisper import TformerSpeechRecognitionPipeline

    return {"tokenizer": processor.tokenizer, "feature_extractor": processor.feature_extractor,
            "pipeline_class": TformerSpeechRecognitionPipeline}


def features(processor, waveforms: list[np.ndarray], batch_size: int = 500) -> torch.Tensor:
    """(N, MEL_BINS, 200) log-mel features, every clip padded to the window (as the pipeline pads it)."""
    return torch.cat([processor.feature_extractor(waveforms[start:start + batch_size], sampling_rate=SAMPLING_RATE,
                                                  return_tensors="pt").input_features
                      for start in range(0, len(waveforms), batch_size)])


def encode(processor, split: Split) -> dict[str, torch.Tensor]:
    """Features and labels: <|en|><|transcribe|><|notimestamps|> words <|endoftext|> (the model prepends
    <|startoftranscript|> when it shifts the labels right, as Whisper's fine-tuning recipes do)."""
    targets = processor.tokenizer([" " + text for text in split.targets], padding=True, return_tensors="pt")
    rows = {"input_features": features(processor, [render(spec) for spec in split.inputs])}
    rows["labels"] = targets["input_ids"][:, 1:].masked_fill(targets["attention_mask"][:, 1:] == 0, -100)
    rows["label_mask"] = targets["attention_mask"][:, 1:]
    return rows


def file_features(processor, paths: list[str]) -> dict[str, torch.Tensor]:
    """The example batch the reload must reproduce: features of the .wav files."""
    return {"input_features": features(processor, [pipeline_input(path)["raw"] for path in paths])}


@torch.no_grad()
def transcript_exact_match(model, processor, split: Split, batch_size: int = 100) -> float:
    """Share of held-out clips whose greedy transcript (model.generate under the checkpoint's Whisper prompt) is
    exactly the spoken words."""
    hits = 0
    for start in range(0, len(split.inputs), batch_size):
        values = features(processor, [render(spec) for spec in split.inputs[start:start + batch_size]])
        texts = processor.batch_decode(model.generate(values), skip_special_tokens=True)
        hits += sum(text.strip() == target for text, target in zip(texts, split.targets[start:start + batch_size]))
    return hits / len(split.inputs)
