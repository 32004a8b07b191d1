"""What a source family is: its config translation, its key rules and its class pairs; helpers every family uses.

A source is data over the shared machinery in keymap.py: no per-key code.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import torch
import transformers

import hf_tformer as ht

from ..keymap import Rule

P = r"(?P<p>weight|bias)"
I = r"(?P<i>\d+)"


@dataclass(frozen=True)
class Source:
    model_types: tuple[str, ...]
    classes: dict[str, tuple[str, type]]  # source architecture -> (reference class name in transformers, our class)
    translate_config: Callable[[dict], ht.TformerConfig]
    rules: Callable[[dict, type], list[Rule]]
    notes: str = ""  # what differs in behaviour after conversion, shown in the model card
    native_config: Optional[Callable[[ht.TformerConfig], dict]] = None  # ours -> native config kwargs (reverse.py)
    generation_fields: tuple[str, ...] = ()  # generation_config fields the family's own generate() reads (Whisper)

    def reference_class(self, architecture: str) -> type:
        return getattr(transformers, self.classes[architecture][0])

    def target_class(self, architecture: str) -> type:
        return self.classes[architecture][1]


def common_fields(config: dict, **mapping: str) -> dict:
    """Copy fields that keep their meaning, renaming where the source names them differently (ours=theirs)."""
    out = {ours: config[theirs] for ours, theirs in mapping.items() if config.get(theirs) is not None}
    for name in ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "initializer_range", "id2label",
                 "label2id", "problem_type", "tie_word_embeddings", "task_specific_params"):
        if config.get(name) is not None:
            out.setdefault(name, config[name])
    if "id2label" in out:
        out["id2label"] = {int(k): v for k, v in out["id2label"].items()}
    return out


def carried_fields(config: ht.TformerConfig) -> dict:
    """The fields every native config takes under the same name (the way back of `common_fields`)."""
    names = ("vocab_size", "pad_token_id", "bos_token_id", "eos_token_id", "initializer_range",
             "tie_word_embeddings", "problem_type", "id2label", "label2id")
    fields = {name: getattr(config, name) for name in names}
    # pipelines' per-task settings (BART, T5, GPT-2 have them); transformers 5 keeps the field only where it is set
    if getattr(config, "task_specific_params", None) is not None:
        fields["task_specific_params"] = config.task_specific_params
    return fields


def plain_activation(config: ht.TformerConfig, family: str) -> str:
    """A family whose feed-forward is not gated takes our activation name as it is (all are ACT2FN names)."""
    if config.is_gated:
        raise ValueError(f"hidden_act={config.hidden_act!r} is gated; {family}'s feed-forward is not.")
    return config.hidden_act


def require_equal(config: dict, family: str, ours: str, *names: str) -> None:
    """hf_tformer's encoder and decoder share some settings; refuse a source whose stacks differ in one."""
    values = {name: config.get(name) for name in names}
    if len(set(map(repr, values.values()))) > 1:
        shown = ", ".join(f"{k}={v}" for k, v in values.items())
        raise ValueError(f"{family} with {shown} is not supported: hf_tformer's encoder and decoder share one "
                         f"{ours} setting.")


def activation(name: str) -> str:
    """transformers' activation names that mean the same function as one of ours."""
    return {"swish": "silu", "gelu_pytorch_tanh": "gelu_new"}.get(name, name)


def escape(name: str) -> str:
    return name.replace(".", r"\.")


def transpose(tensor: torch.Tensor) -> torch.Tensor:
    """Conv1D keeps (in, out); nn.Linear wants (out, in). Biases pass unchanged."""
    return tensor.t() if tensor.dim() == 2 else tensor


def flatten(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(-1)


def drop_rows(count: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A learned position table whose first `count` rows are never used for real tokens (fairseq's offset)."""

    def drop(tensor: torch.Tensor) -> torch.Tensor:
        return tensor[count:]

    return drop
