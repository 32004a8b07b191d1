"""One trained task per variant: the model and tokenizer it builds, how its data is encoded, its held-out metric.

Sizes and step counts were chosen on 2 CPU cores to reach visibly right outputs in well under a minute each.
"""

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

import hf_tformer as ht

from . import data, images, speech
from .toy_tokenizer import clip_tokenizer, merges_spelling, train_tokenizer

NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0)


def _tokenize(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


@dataclass
class Variant:
    name: str  # "encoder" | "decoder" | "encoder-decoder" | "image" | "dual-encoder" | "speech"
    short_task: str
    task: str  # what the model learns, in words
    metric: str  # what `evaluate` returns, in words
    data: Callable[[], data.TaskData]
    build: Callable[[data.TaskData], tuple]  # -> (tokenizer, model)
    encode: Callable[[object, data.Split], dict[str, torch.Tensor]]  # training rows, right-padded
    evaluate: Callable[[object, object, data.Split], float]
    pipeline_task: str
    auto_class: str  # what a user loads the checkpoint with
    onnx_task: str
    steps: int
    quick_steps: int  # --quick: enough for the loss to fall clearly, not for the held-out metric
    batch_size: int
    lr: float
    pipeline_kwargs: dict = field(default_factory=dict)
    note: str = ""  # what a reader of the loss curve should know
    # pipeline() kwargs: the preprocessors (and a pipeline_class, where transformers' own would not fit the model)
    pipeline_preprocessors: Callable[[object], dict] = lambda tokenizer: {"tokenizer": tokenizer}
    model_inputs: Callable[[object, list[str]], dict] = _tokenize  # the example batch the reload must reproduce
    example_files: Optional[Callable[[list, Path], list[str]]] = None  # examples the pipelines read as files
    logits_field: str = "logits"  # the output the reload compares bit for bit
    label_names: Optional[dict] = None  # how targets are shown (default: the model's id2label)
    forward_kwargs: dict = field(default_factory=dict)  # passed to every training forward


# --- encoder: sentiment classification ---------------------------------------------------------------------------

def _build_encoder(task_data: data.TaskData) -> tuple:
    tokenizer = train_tokenizer("wordpiece", vocab_size=200, corpus=task_data.train.inputs)
    # 2 heads of 32 (64 / 2): vLLM serves this model, and its CPU attention takes head sizes 32, 64, 80, ... only
    config = ht.TformerEncoderConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
        max_position_embeddings=32, num_labels=2, id2label=data.SENTIMENT_LABELS,
        label2id={label: index for index, label in data.SENTIMENT_LABELS.items()}, **NO_DROPOUT)
    return tokenizer, ht.TformerEncoderForSequenceClassification(config)


def _encode_labelled(tokenizer, split: data.Split) -> dict[str, torch.Tensor]:
    rows = dict(tokenizer(split.inputs, padding=True, return_tensors="pt"))
    rows["labels"] = torch.tensor(split.targets)
    return rows


@torch.no_grad()
def _accuracy(model, tokenizer, split: data.Split) -> float:
    logits = model(**tokenizer(split.inputs, padding=True, return_tensors="pt")).logits
    return float((logits.argmax(-1) == torch.tensor(split.targets)).float().mean())


# --- decoder: continue a list ------------------------------------------------------------------------------------

def _build_decoder(task_data: data.TaskData) -> tuple:
    tokenizer = train_tokenizer("bpe", vocab_size=300, corpus=task_data.train.inputs)
    # 2 query heads of 32 sharing one key/value head (MQA): vLLM's CPU attention takes head sizes 32, 64, ... only
    # (4 heads of 16 cannot be served); lr 3e-3 keeps 100% held out at 1000 steps (1e-3 gave 23 of 24 with 2 heads)
    config = ht.TformerDecoderConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        intermediate_size=128, max_position_embeddings=64, position_embedding_type="rotary", norm_type="rmsnorm",
        hidden_act="swiglu", pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, **NO_DROPOUT)
    return tokenizer, ht.TformerDecoderForCausalLM(config)


def _encode_lines(tokenizer, split: data.Split) -> dict[str, torch.Tensor]:
    """[BOS] line [EOS]: the model learns where a list ends, so generation stops there."""
    encoded = tokenizer([text + tokenizer.eos_token for text in split.inputs], padding=True, return_tensors="pt")
    rows = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    rows["labels"] = rows["input_ids"].masked_fill(rows["attention_mask"] == 0, -100)
    rows["label_mask"] = rows["attention_mask"]
    return rows


def continue_text(model, tokenizer, prompt: str, max_new_tokens: int = 24) -> str:
    inputs = tokenizer(prompt, return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                            pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@torch.no_grad()
def _continuation_exact_match(model, tokenizer, split: data.Split) -> float:
    hits = [continue_text(model, tokenizer, prompt) == target for prompt, target in zip(split.inputs, split.targets)]
    return sum(hits) / len(hits)


# --- encoder-decoder: date formatting ----------------------------------------------------------------------------

def _build_seq2seq(task_data: data.TaskData) -> tuple:
    tokenizer = train_tokenizer("unigram", vocab_size=100, split_digits=True,
                                corpus=task_data.train.inputs + task_data.train.targets)
    config = ht.TformerEncoderDecoderConfig(
        vocab_size=len(tokenizer), hidden_size=64, encoder_layers=2, decoder_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, **NO_DROPOUT)
    return tokenizer, ht.TformerEncoderDecoderForConditionalGeneration(config)


def _encode_pairs(tokenizer, split: data.Split) -> dict[str, torch.Tensor]:
    rows = dict(tokenizer(split.inputs, padding=True, return_tensors="pt"))
    targets = tokenizer(split.targets, padding=True, return_tensors="pt")  # the template appends [EOS]
    rows["labels"] = targets["input_ids"].masked_fill(targets["attention_mask"] == 0, -100)
    rows["label_mask"] = targets["attention_mask"]
    return rows


@torch.no_grad()
def _generation_exact_match(model, tokenizer, split: data.Split, batch_size: int = 100) -> float:
    hits = 0
    for start in range(0, len(split.inputs), batch_size):
        inputs = tokenizer(split.inputs[start:start + batch_size], padding=True, return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
        texts = tokenizer.batch_decode(output, skip_special_tokens=True)
        hits += sum(text.strip() == target for text, target in zip(texts, split.targets[start:start + batch_size]))
    return hits / len(split.inputs)


# --- image encoder: which pattern is painted -----------------------------------------------------------------------

def _build_image_classifier(task_data: data.TaskData) -> tuple:
    from transformers import ViTImageProcessor

    processor = ViTImageProcessor(size={"height": images.SIZE, "width": images.SIZE}, image_mean=[0.5] * 3,
                                  image_std=[0.5] * 3)
    config = ht.TformerViTConfig(
        image_size=images.SIZE, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, num_labels=len(images.PATTERNS), id2label=images.PATTERN_LABELS,
        label2id={label: index for index, label in images.PATTERN_LABELS.items()}, **NO_DROPOUT)
    return processor, ht.TformerViTForImageClassification(config)


def _pixels(processor, specs: list[str]) -> dict[str, torch.Tensor]:
    return dict(processor([images.render(spec) for spec in specs], return_tensors="pt"))


def _encode_images(processor, split: data.Split) -> dict[str, torch.Tensor]:
    return {**_pixels(processor, split.inputs), "labels": torch.tensor(split.targets)}


def _image_files(processor, paths: list[str]) -> dict[str, torch.Tensor]:
    from PIL import Image

    return dict(processor([Image.open(path) for path in paths], return_tensors="pt"))


@torch.no_grad()
def _image_accuracy(model, processor, split: data.Split) -> float:
    logits = model(**_pixels(processor, split.inputs)).logits
    return float((logits.argmax(-1) == torch.tensor(split.targets)).float().mean())


# --- dual encoder: contrastive on captions, then zero-shot over the pattern names ---------------------------------

def _build_dual_encoder(task_data: data.TaskData) -> tuple:
    from transformers import CLIPImageProcessor, CLIPProcessor

    words = " ".join([*images.COLOURS, *images.PATTERNS, *images.CAPTIONS, images.ZERO_SHOT_TEMPLATE]).split()
    with tempfile.TemporaryDirectory() as folder:  # the fast tokenizer is built in memory from the files
        tokenizer = clip_tokenizer(folder, merges_spelling(w for w in words if w.isalpha()))
    image_processor = CLIPImageProcessor(size={"shortest_edge": images.SIZE},
                                         crop_size={"height": images.SIZE, "width": images.SIZE},
                                         image_mean=[0.5] * 3, image_std=[0.5] * 3)
    tower = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, projection_dim=32)
    config = ht.TformerCLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), max_position_embeddings=32, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **tower),
        vision_config=dict(image_size=images.SIZE, patch_size=8, **tower), projection_dim=32)
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer), ht.TformerCLIPModel(config)


def _encode_captioned(processor, split: data.Split) -> dict[str, torch.Tensor]:
    captions = [images.caption(spec, index % len(images.CAPTIONS)) for index, spec in enumerate(split.inputs)]
    return dict(processor(text=captions, images=[images.render(spec) for spec in split.inputs], padding=True,
                          return_tensors="pt"))


def _prompts_and(processor, pictures: list) -> dict[str, torch.Tensor]:
    prompts = [images.ZERO_SHOT_TEMPLATE.format(pattern) for pattern in images.PATTERNS]
    return dict(processor(text=prompts, images=pictures, padding=True, return_tensors="pt"))


def _prompts_and_files(processor, paths: list[str]) -> dict[str, torch.Tensor]:
    from PIL import Image

    return _prompts_and(processor, [Image.open(path) for path in paths])


@torch.no_grad()
def _zero_shot_accuracy(model, processor, split: data.Split) -> float:
    scores = model(**_prompts_and(processor, [images.render(spec) for spec in split.inputs])).logits_per_image
    return float((scores.argmax(-1) == torch.tensor(split.targets)).float().mean())


VARIANTS = [
    Variant("encoder", "sentiment", "sentiment classification (negation, 'but')", "held-out accuracy",
            data.sentiment, _build_encoder, _encode_labelled, _accuracy, "text-classification",
            "AutoModelForSequenceClassification", "text-classification", steps=1000, quick_steps=250,
            batch_size=32, lr=1e-3),
    Variant("decoder", "list continuation", "causal LM: continue a list (days, months, numbers, ...) to its end",
            "held-out continuation exact match", data.lists, _build_decoder, _encode_lines, _continuation_exact_match,
            "text-generation", "AutoModelForCausalLM", "text-generation-with-past", steps=1000, quick_steps=40,
            batch_size=32, lr=3e-3, pipeline_kwargs=dict(max_new_tokens=32, do_sample=False, return_full_text=False),
            note="The loss cannot reach 0: the first list word of a line (where it starts) is unpredictable."),
    Variant("encoder-decoder", "date formatting", "date formatting: 'the 3rd of march 2021' -> '2021-03-03'",
            "held-out exact match", data.dates, _build_seq2seq, _encode_pairs, _generation_exact_match,
            "text2text-generation", "AutoModelForSeq2SeqLM", "text2text-generation-with-past", steps=800,
            quick_steps=80, batch_size=64, lr=3e-3, pipeline_kwargs=dict(max_new_tokens=16, do_sample=False)),
    Variant("image", "patterns", "image classification: which pattern (stripes, checkerboard, ...) whatever its "
            "colours and scale", "held-out accuracy", images.patterns, _build_image_classifier, _encode_images,
            _image_accuracy, "image-classification", "AutoModelForImageClassification", "image-classification",
            steps=800, quick_steps=100, batch_size=32, lr=2e-3,
            pipeline_preprocessors=lambda processor: {"image_processor": processor}, model_inputs=_image_files,
            example_files=images.write_examples, pipeline_kwargs=dict(top_k=1)),
    Variant("dual-encoder", "zero-shot patterns", "image-text dual encoder (CLIP-like) trained contrastively on "
            "captions ('a picture of vertical stripes'), then zero-shot over the 4 pattern names",
            "held-out zero-shot accuracy",
            images.patterns, _build_dual_encoder, _encode_captioned, _zero_shot_accuracy,
            "zero-shot-image-classification", "AutoModelForZeroShotImageClassification",
            "zero-shot-image-classification", steps=800, quick_steps=100, batch_size=32, lr=2e-3,
            pipeline_preprocessors=lambda processor: {"tokenizer": processor.tokenizer,
                                                      "image_processor": processor.image_processor},
            model_inputs=_prompts_and_files, example_files=images.write_examples, logits_field="logits_per_image",
            label_names=images.PATTERN_LABELS, forward_kwargs=dict(return_loss=True),
            pipeline_kwargs=dict(candidate_labels=images.PATTERNS, hypothesis_template=images.ZERO_SHOT_TEMPLATE),
            note="The contrastive loss cannot reach 0: a batch holds several images with the same caption."),
    Variant("speech", "tone transcripts", "speech recognition (Whisper-shaped): 2-4 tones of five pitches, "
            "transcribed as digit words ('two five one')", "held-out transcript exact match", speech.tone_sequences,
            speech.build, speech.encode, speech.transcript_exact_match, "automatic-speech-recognition",
            "AutoModelForSpeechSeq2Seq", "automatic-speech-recognition-with-past", steps=300, quick_steps=40,
            batch_size=32, lr=2e-3, pipeline_preprocessors=speech.pipeline_preprocessors,
            model_inputs=speech.file_features, example_files=speech.write_examples,
            note="Held-out clips say tone sequences that no training clip says. The pipelines get the example .wav "
                 "files decoded by the standard library (transformers would read an audio path with ffmpeg)."),
]
