"""Fine-tune a tiny hf_tformer model with transformers' Trainer (AdamW, linear warmup, gradient checkpointing).

    python examples/fine_tune.py --task classification --out runs/cls [--steps 60] [--force]
    python examples/fine_tune.py --task causal-lm --out runs/lm

Data is embedded (toy_tokenizer.CORPUS): classification learns whether a sentence mentions a capital city; the
causal LM learns the corpus. Prints the loss curve and saves model + tokenizer (atomically: temp dir, then rename).
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import Trainer, TrainingArguments

import hf_tformer as ht
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
    if out.exists() and not force:
        raise SystemExit(f"{out} exists; pass --force to replace it.")
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
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    staging = Path(tempfile.mkdtemp(prefix=".fine_tune_", dir=out.parent if out.parent.exists() else None))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staging), out)
    return losses


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
