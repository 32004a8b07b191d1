"""A plain torch training loop (faster than Trainer for models this small): AdamW, linear warmup, cosine decay."""

import math
from typing import Optional

import torch
from tqdm.auto import tqdm


def _trim(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the padding columns every row of this batch has (rows are right-padded): shorter steps, same loss."""
    out = dict(batch)
    for mask_key, keys in (("attention_mask", ("input_ids", "attention_mask", "token_type_ids")),
                           ("label_mask", ("labels", "label_mask"))):
        if mask_key in out:
            width = int(out[mask_key].sum(-1).max())
            for key in keys:
                if key in out:
                    out[key] = out[key][:, :width]
    out.pop("label_mask", None)
    return out


def fit(model: torch.nn.Module, rows: dict[str, torch.Tensor], *, steps: int, batch_size: int, lr: float,
        seed: int = 0, progress: bool = True, description: str = "train",
        forward_kwargs: Optional[dict] = None) -> list[float]:
    """Train on batches drawn (seeded) from the pre-encoded, right-padded `rows`; return the loss of every step.

    `rows` holds the model's keyword inputs (incl. `labels`); an optional `label_mask` marks real label positions
    (seq2seq targets), so their padding columns can be trimmed too. `forward_kwargs` go to every forward as they are
    (the dual encoder's `return_loss=True`)."""
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps={steps} and batch_size={batch_size} must both be >= 1.")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 20)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    size = next(iter(rows.values())).shape[0]
    losses = []
    model.train()
    with tqdm(range(steps), desc=description, unit="step", disable=not progress, leave=False) as bar:
        for _ in bar:
            index = torch.randint(0, size, (batch_size,), generator=generator)
            loss = model(**_trim({key: value[index] for key, value in rows.items()}), **(forward_kwargs or {})).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if len(losses) % 25 == 0:
                bar.set_postfix(loss=f"{sum(losses[-25:]) / 25:.3f}")
    model.eval()
    return losses
