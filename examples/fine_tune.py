"""Fine-tune a tiny hf_tformer model with transformers' Trainer (AdamW, linear warmup, gradient checkpointing).

    python examples/fine_tune.py --task classification --out runs/cls [--steps 60] [--force]
    python examples/fine_tune.py --task causal-lm --out runs/lm

Data is embedded (toy_tokenizer.CORPUS): classification learns whether a sentence mentions a capital city; the
causal LM learns the corpus. Prints the loss curve and saves model + tokenizer the way `hf-tformer convert` writes:
the destination is checked and locked before training, built beside it and swapped in only when complete; --force
replaces only a checkpoint folder, never a folder of other files (hf_tformer_conversion/staging.py).
"""

import argparse
import tempfile
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

import hf_tformer as ht
from hf_tformer_conversion.staging import claim_destination
from hf_tformer_demo.toy_tokenizer import CORPUS, train_tokenizer

TINY = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2,
            max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0)


class EncodedTexts(torch.utils.data.Dataset):
    def __init__(self, tokenizer, texts: list[str], labels: list[int] | None) -> None:
        self.encodings = tokenizer(texts, padding="max_length", max_length=24, truncation=True, return_tensors="pt")
        self.labels = labels

    def __len__(self) -> int:
        return self.encodings["input_ids"].shape[0]

    def __getitem__(self, index: int) -> dict:
        item = {key: value[index] for key, value in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = torch.tensor(self.labels[index])
        else:  # causal LM: predict every real token, ignore padding
            item["labels"] = item["input_ids"].masked_fill(item["attention_mask"] == 0, -100)
        return item


def build(task: str):
    if task == "classification":
        tokenizer = train_tokenizer("wordpiece")
        labels = [int("capital" in text) for text in CORPUS]
        config = ht.TformerEncoderConfig(vocab_size=len(tokenizer), num_labels=2, id2label={0: "OTHER", 1: "CAPITAL"},
                                         label2id={"OTHER": 0, "CAPITAL": 1}, **TINY)
        return tokenizer, ht.TformerEncoderForSequenceClassification(config), EncodedTexts(tokenizer, CORPUS * 4, labels * 4)
    if task == "causal-lm":
        tokenizer = train_tokenizer("bpe")
        config = ht.TformerDecoderConfig(vocab_size=len(tokenizer), position_embedding_type="rotary", **TINY)
        return tokenizer, ht.TformerDecoderForCausalLM(config), EncodedTexts(tokenizer, CORPUS * 4, None)
    raise ValueError(f"--task {task!r} is not one of 'classification', 'causal-lm'.")


def fine_tune(task: str, out: Path, steps: int = 60, force: bool = False) -> list[float]:
    """Train, save to `out`, return the logged losses."""
    try:
        with claim_destination(out, force) as destination:  # refused before minutes of training, not after
            losses, model, tokenizer = train(task, steps)
            with destination.staged() as staging:
                model.save_pretrained(staging)
                tokenizer.save_pretrained(staging)
    except ValueError as error:  # the destination's problem and its fix, as a command-line message
        raise SystemExit(str(error)) from None
    return losses


def train(task: str, steps: int) -> tuple[list[float], torch.nn.Module, object]:
    """(logged losses, trained model, tokenizer)."""
    torch.manual_seed(0)
    tokenizer, model, dataset = build(task)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch, max_steps=steps, per_device_train_batch_size=8, learning_rate=2e-3,
            optim="adamw_torch", lr_scheduler_type="linear", warmup_steps=max(1, steps // 10),
            gradient_checkpointing=True, logging_steps=5, report_to=[], save_strategy="no", use_cpu=True, seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset)
        trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry], model, tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=["classification", "causal-lm"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    losses = fine_tune(args.task, args.out, args.steps, args.force)
    print("loss every 5 steps:", " ".join(f"{loss:.3f}" for loss in losses))
    print(f"saved model + tokenizer to {args.out}")


if __name__ == "__main__":
    main()
