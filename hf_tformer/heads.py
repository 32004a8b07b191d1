"""Task heads and their losses, shared by the variants (labels equal to -100 are ignored)."""

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from .feed_forward import activation_function
from .input_checks import IGNORE_INDEX, check_class_labels
from .linear import TformerLinear
from .norms import build_norm


class MaskedLMHead(nn.Module):
    """dense -> activation -> norm -> vocabulary projection (tied to the token embeddings by default)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.dense = TformerLinear(config.hidden_size, config.hidden_size)
        self.act_fn = activation_function(config.hidden_act)
        self.layernorm = build_norm(config)
        self.decoder = TformerLinear(config.hidden_size, config.vocab_size, bias=True)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.layernorm(self.act_fn(self.dense(hidden_states))))


class PooledClassificationHead(nn.Module):
    """First-token pooling: dense -> tanh -> dropout -> labels (BERT's pooler + classifier, RoBERTa's head)."""

    def __init__(self, config) -> None:
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout
        self.dense = TformerLinear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = TformerLinear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        pooled = torch.tanh(self.dense(self.dropout(hidden_states[:, 0])))
        return self.out_proj(self.dropout(pooled))


class FirstTokenPooler(nn.Module):
    """dense -> tanh over the first token (ViT's `pooler_output`)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.dense = TformerLinear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


class FirstTokenNormPooler(nn.Module):
    """A norm over the first token (CLIP's image tower: `post_layernorm` of [CLS])."""

    def __init__(self, config) -> None:
        super().__init__()
        self.layernorm = build_norm(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layernorm(hidden_states[:, 0])


def lm_logits(lm_head: nn.Module, hidden_states: torch.Tensor, logits_to_keep, config) -> torch.Tensor:
    """Vocabulary logits of the kept positions (an int keeps the last n, 0 all; generate() asks for the last one),
    from hidden states scaled by `config.lm_head_input_scale` (T5 with tied embeddings rescales by d**-0.5)."""
    kept = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
    hidden_states = hidden_states[:, kept, :]
    if config.lm_head_input_scale != 1.0:
        hidden_states = hidden_states * config.lm_head_input_scale
    return lm_head(hidden_states)


def classifier_dropout(config) -> nn.Dropout:
    return nn.Dropout(config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout)


def last_token_index(
    input_ids: Optional[torch.Tensor], attention_mask: Optional[torch.Tensor], pad_token_id: Optional[int], length: int
) -> torch.Tensor:
    """(batch,) index of each row's last real token, for left or right padding; traceable."""
    if attention_mask is not None:
        keep = attention_mask.to(torch.long)
    elif input_ids is not None and pad_token_id is not None:
        keep = (input_ids != pad_token_id).to(torch.long)
    else:
        return torch.full((1,), length - 1, dtype=torch.long)
    positions = torch.arange(keep.shape[-1], device=keep.device)
    return (positions * keep).argmax(-1)


def eos_token_index(input_ids: torch.Tensor, eos_token_id: Optional[int]) -> torch.Tensor:
    """(batch,) index CLIP's text tower pools at: each row's first `eos_token_id` (a tokenizer may pad with it too).
    The legacy eos_token_id=2 of configs from before transformers fixed it means each row's highest id, which was the
    end-of-text token in CLIP's vocabulary; transformers keeps that rule for such configs, and so do we. Traceable."""
    ids = input_ids.to(torch.int)  # int32: ONNX's ArgMax does not take int64 at opset 14
    if eos_token_id == 2:
        return ids.argmax(-1)
    return (ids == eos_token_id).to(torch.int).argmax(-1)


def contrastive_loss(logits_per_text: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross entropy over a (texts, images) score matrix whose matching pairs are its diagonal."""
    texts, images = logits_per_text.shape
    if texts != images:
        raise ValueError(f"return_loss=True needs matching (text, image) pairs, but {texts} texts and {images} images "
                         "were given; pass one image per text, or return_loss=False to only score them.")
    targets = torch.arange(texts, device=logits_per_text.device)
    return (F.cross_entropy(logits_per_text, targets) + F.cross_entropy(logits_per_text.t(), targets)) / 2


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(..., classes) vs (...) of class ids (IGNORE_INDEX skipped), checked by the caller."""
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.to(logits.device, torch.long).reshape(-1),
        ignore_index=IGNORE_INDEX,
    )


def token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross entropy over every position: (batch, seq, classes) vs (batch, seq)."""
    check_class_labels(labels, logits.shape[-1], logits.shape[:2])
    return _cross_entropy(logits, labels)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy: position t predicts labels[t + 1]. Labels are the inputs' shape (all logits kept)."""
    check_class_labels(labels, logits.shape[-1], logits.shape[:2])
    return _cross_entropy(logits[:, :-1], labels[:, 1:])


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor, config) -> torch.Tensor:
    """Regression, single-label or multi-label, chosen like transformers does from problem_type / labels."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"labels must be a torch.Tensor, got {type(labels).__name__}.")
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "single_label_classification":
        # (batch,) or (batch, 1): one class id per row
        rows = labels.reshape(-1) if labels.dim() == 2 and labels.shape[-1] == 1 else labels
        check_class_labels(rows, logits.shape[-1], logits.shape[:1])
        return _cross_entropy(logits, rows)
    one_score = config.problem_type == "regression" and config.num_labels == 1  # labels (batch,) or (batch, 1)
    expected = logits.shape[:1] if one_score else logits.shape
    if (labels.numel() != expected.numel()) if one_score else (labels.shape != expected):
        raise ValueError(f"labels has shape {tuple(labels.shape)} but problem_type={config.problem_type!r} with "
                         f"num_labels={config.num_labels} needs {tuple(expected)} (one value per "
                         f"{'row' if len(expected) == 1 else 'row and label'}).")
    labels = labels.to(logits.device).float().reshape(expected)
    if config.problem_type == "regression":
        return F.mse_loss(logits.float().reshape(expected), labels)
    return F.binary_cross_entropy_with_logits(logits.float(), labels)


def span_loss(start_logits, end_logits, start_positions, end_positions) -> torch.Tensor:
    """Mean of start and end cross entropies; positions outside the sequence are ignored (as transformers does)."""
    batch, length = start_logits.shape
    for name, positions in (("start_positions", start_positions), ("end_positions", end_positions)):
        if not isinstance(positions, torch.Tensor) or positions.numel() != batch:
            shape = tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
            raise ValueError(f"{name} has shape {shape} but the batch has {batch} rows; pass one token index per row.")
    start = start_positions.reshape(-1).clamp(0, length).to(start_logits.device)
    end = end_positions.reshape(-1).clamp(0, length).to(end_logits.device)
    return (
        F.cross_entropy(start_logits.float(), start, ignore_index=length)
        + F.cross_entropy(end_logits.float(), end, ignore_index=length)
    ) / 2
