"""One trained task per variant: the model and tokenizer it builds, how its data is encoded, its held-out metric.

Sizes and step counts were chosen on 2 CPU cores to reach visibly right outputs in well under a minute each.
"""

from dataclasses import dataclass, field
from typing import Callable

import torch

import hf_tformer as ht

from . import data
from .toy_tokenizer import train_tokenizer

NO_DROPOUT = dict(hidden_dropout=0.0, attention_dropout=0.0)


@dataclass
class Variant:
    name: str  # "encoder" | "decoder" | "encoder-decoder"
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


# --- encoder: sentiment classification ---------------------------------------------------------------------------

def _build_encoder(task_data: data.TaskData) -> tuple:
    tokenizer = train_tokenizer("wordpiece", vocab_size=200, corpus=task_data.train.inputs)
    config = ht.TformerEncoderConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
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
    config = ht.TformerDecoderConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
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


VARIANTS = [
    Variant("encoder", "sentiment", "sentiment classification (negation, 'but')", "held-out accuracy",
            data.sentiment, _build_encoder, _encode_labelled, _accuracy, "text-classification",
            "AutoModelForSequenceClassification", "text-classification", steps=1000, quick_steps=250,
            batch_size=32, lr=1e-3),
    Variant("decoder", "list continuation", "causal LM: continue a list (days, months, numbers, ...) to its end",
            "held-out continuation exact match", data.lists, _build_decoder, _encode_lines, _continuation_exact_match,
            "text-generation", "AutoModelForCausalLM", "text-generation-with-past", steps=1000, quick_steps=40,
            batch_size=32, lr=1e-3, pipeline_kwargs=dict(max_new_tokens=32, do_sample=False, return_full_text=False),
            note="The loss cannot reach 0: the first list word of a line (where it starts) is unpredictable."),
    Variant("encoder-decoder", "date formatting", "date formatting: 'the 3rd of march 2021' -> '2021-03-03'",
            "held-out exact match", data.dates, _build_seq2seq, _encode_pairs, _generation_exact_match,
            "text2text-generation", "AutoModelForSeq2SeqLM", "text2text-generation-with-past", steps=800,
            quick_steps=80, batch_size=64, lr=3e-3, pipeline_kwargs=dict(max_new_tokens=16, do_sample=False)),
]
