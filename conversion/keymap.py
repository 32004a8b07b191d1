"""Declarative key maps: source checkpoint keys -> hf_tformer keys, with every key accounted for.

A `Rule` matches source keys with a regex and names the target key(s) with `str.format` over its named groups.
A transform turns the source tensor into the target tensor(s): transpose a Conv1D weight, split a fused q/k/v,
drop an offset. Converting checks that every source key matched exactly one rule and that every target key the
model expects was produced exactly once; anything else is a `ValueError` naming the keys.
"""

import re
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional, Union

import torch

Transform = Callable[[torch.Tensor], Union[torch.Tensor, tuple[torch.Tensor, ...]]]


def identity(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


@dataclass(frozen=True)
class Rule:
    source: str
    targets: tuple[str, ...]
    transform: Transform = identity
    _pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(self.source))

    def match(self, key: str) -> Optional[dict[str, str]]:
        found = self._pattern.fullmatch(key)
        return None if found is None else found.groupdict()


def rule(source: str, *targets: str, transform: Transform = identity) -> Rule:
    """`rule(r"bert\\.encoder\\.layer\\.(?P<i>\\d+)\\.output\\.dense\\.(?P<p>weight|bias)", "model.encoder.layers.{i}.mlp.down_proj.{p}")`;
    no targets means the key is dropped on purpose (a buffer the target recomputes)."""
    return Rule(source, targets, transform)


def convert_state_dict(
    keys: Iterable[str],
    load: Callable[[str], torch.Tensor],
    rules: Iterable[Rule],
    expected: Mapping[str, tuple[int, ...]],
    tied: Mapping[str, str] = {},
    on_tensor: Callable[[str], None] = lambda key: None,
) -> dict[str, torch.Tensor]:
    """Apply `rules` to every source key (tensors loaded one at a time through `load`) and check the result
    against `expected` (target key -> shape). `tied` maps target keys the model ties to another (lm_head ->
    embeddings): a source may store them or not; stored, they must equal what they are tied to."""
    rules = list(rules)
    converted: dict[str, torch.Tensor] = {}
    unmatched, ambiguous, duplicated = [], [], []
    for key in keys:
        matches = [(r, groups) for r in rules if (groups := r.match(key)) is not None]
        if not matches:
            unmatched.append(key)
            continue
        if len(matches) > 1:
            ambiguous.append(key)
            continue
        matched_rule, groups = matches[0]
        on_tensor(key)
        if not matched_rule.targets:
            continue
        outputs = matched_rule.transform(load(key))
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        if len(outputs) != len(matched_rule.targets):
            raise ValueError(f"rule for {key!r} produced {len(outputs)} tensors for {len(matched_rule.targets)} targets.")
        for template, tensor in zip(matched_rule.targets, outputs):
            target = template.format(**groups)
            if target in converted and not torch.equal(converted[target], tensor):
                duplicated.append(target)  # the same tensor stored twice (tied storage) is fine
            converted[target] = tensor.contiguous()
    untied = []
    for target, source_key in tied.items():
        if target in converted:
            if source_key in converted and not torch.equal(converted[target], converted[source_key]):
                untied.append(target)
            del converted[target]
    missing = sorted(set(expected) - set(converted))
    extra = sorted(set(converted) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(converted) if tuple(converted[k].shape) != tuple(expected[k]))
    problems = {
        "source keys no rule consumes": unmatched,
        "source keys several rules match": ambiguous,
        "target keys produced twice": duplicated,
        "tied target keys that differ from their source": untied,
        "target keys missing": missing,
        "target keys the model does not have": extra,
        "target keys with the wrong shape": [f"{k} {tuple(converted[k].shape)} != {tuple(expected[k])}" for k in wrong_shape],
    }
    problems = {name: keys for name, keys in problems.items() if keys}
    if problems:
        details = "; ".join(f"{name}: {keys[:8]}{' ...' if len(keys) > 8 else ''}" for name, keys in problems.items())
        raise ValueError(f"The checkpoint does not convert cleanly: {details}")
    return converted
