"""The one tolerance rule of both numerical gates: the conversion parity gate (verify.py) and the ONNX validation
(hf_tformer_export.validate), each comparing a reference with a candidate output by output.

A fixed absolute bound is below the float32 noise of a real model: transformers' own Whisper differs from itself by
8e-5 between its sdpa and eager attention on the gate's inputs (logits up to ~30), so an absolute 1e-5 refused
faithful conversions, and 1e-4 a faithful ONNX export (3.4e-4, identical tokens). So each output gets

    tolerance = max(floor, rtol * max|reference|, spread_factor * spread)

- floor: the old absolute bound (1e-5 conversion, 1e-4 export); it decides for small outputs (most tiny test
  models), whose gate is therefore as strict as before.
- rtol * max|reference| over the real positions: float32 rounding grows with the magnitude of the values, and the
  largest value is what a logit or hidden state is rounded against. rtol 1e-5 is ~80 float32 ulps (2**-23 = 1.2e-7)
  of the largest value: 3e-4 for logits up to 30, four times Whisper's 8e-5 noise, for models whose noise cannot
  be measured (below).
- spread: the reference's own max |sdpa - eager| on the same inputs (the output of its other attention kernel,
  `other_attention`), measured, so a deep or wide model whose kernels disagree more gets a bound that grows with
  it. spread_factor 10: an independent implementation (ours, or ONNX Runtime's fused kernels) reorders more
  operations than one kernel swap does; the real Whisper export differed by 3.4e-4, about 4x transformers' spread.

A real conversion error is far above all three: a mis-scaled value or MLP weight, swapped query / key weights, a
wrong norm epsilon move a real-scale tiny model's logits (~35) by 2e-3 to 10, against a tolerance of 3.5e-4
(tests/conversion/test_verify.py, tests/export/test_validate.py). Only second-order errors can hide: a query or key
weight scaled by 1.01 moves a random tiny model's logits by ~4e-4 (its attention is nearly uniform), at the bound.

Measured (float32, CPU): tiny test models (2 layers, 32 wide) have a spread of 1e-7 to 1e-6 and outputs of 0.4 to 5
(T5's 3.7: a bound of 3.7e-5), so their bound stays at 1e-5 to 5e-5; a random BERT-base-sized BERT converts with
max |Δ| 3.6e-6 (spread 1.9e-6, logits 2.7: the floor decides); our BERT-base-sized encoder with logits scaled to ~200
exports with ONNX Runtime max |Δ| 2.5e-4, which 1e-4 refused, against a spread of 2.4e-4 (tolerance 2.4e-3).

Non-finite values fail before anything is compared: NaN would pass `difference > tolerance` (a NaN comparison is
False), and an inf makes the scale meaningless.
"""

from __future__ import annotations  # torch is imported where tensors are compared, not by the command line's help

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ToleranceRule:
    floor: float  # absolute bound: decides for small outputs
    rtol: float = 1e-5  # relative to max |reference| over the real positions
    spread_factor: float = 10.0  # times the reference's own max |sdpa - eager|

    def __post_init__(self) -> None:
        for name in ("floor", "rtol", "spread_factor"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"ToleranceRule.{name}={value!r}: pass a finite number >= 0.")

    def tolerance(self, scale: float, spread: Optional[float]) -> float:
        """max(floor, rtol * scale, spread_factor * spread); an unmeasured spread (None) adds no term."""
        return max(self.floor, self.rtol * scale, self.spread_factor * (spread or 0.0))

    def formula(self) -> str:
        return (f"max({self.floor:.0e}, {self.rtol:.0e} × max|ref|, {self.spread_factor:g} × spread), spread = the "
                "reference's own max |sdpa − eager| on the same inputs")


CONVERSION_TOLERANCE = ToleranceRule(floor=1e-5)
EXPORT_TOLERANCE = ToleranceRule(floor=1e-4)


@dataclass
class OutputCheck:
    """One compared output: its figures and the tolerance they were held to."""
    name: str
    max_abs_diff: float
    scale: float  # max |reference| over the compared (real) positions
    spread: Optional[float]  # the reference's own max |sdpa - eager| there; None: not measured
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def describe(self) -> str:
        spread = "spread not measured" if self.spread is None else f"spread {self.spread:.2e}"
        relation = "≤" if self.passed else ">"
        return (f"{self.name}: max |Δ| = {self.max_abs_diff:.2e} {relation} tolerance {self.tolerance:.2e} "
                f"(max|ref| {self.scale:.2e}, {spread})")


@dataclass
class Compared:
    """One output of both sides: the reference's, the candidate's, the reference's under its other attention kernel
    (None: it could not switch), and the real positions (bool over the leading dims; None: every position)."""
    name: str
    reference: torch.Tensor
    candidate: torch.Tensor
    alternative: Optional[torch.Tensor] = None
    keep: Optional[torch.Tensor] = None

    def real(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.keep is None else tensor[self.keep]


def first_non_finite(tensor: torch.Tensor, keep: Optional[torch.Tensor] = None) -> Optional[tuple[int, ...]]:
    """Index of the first NaN / inf among the real positions of `tensor` (keep: bool over its leading dims)."""
    import torch

    bad = ~torch.isfinite(tensor)
    if keep is not None:
        bad &= keep.reshape(keep.shape + (1,) * (tensor.dim() - keep.dim()))
    where = bad.nonzero()
    return tuple(where[0].tolist()) if len(where) else None


def check_finite(outputs: list[Compared], failure: str, sides: tuple[str, str]) -> None:
    """ValueError naming the side, the output and the first index of a NaN / inf: before anything is compared."""
    for side, field in zip(sides, ("reference", "candidate")):
        for output in outputs:
            tensor = getattr(output, field)
            index = first_non_finite(tensor, output.keep)
            if index is not None:
                value = tensor[index].item()
                raise ValueError(f"{failure}: {side} returns {value} in {output.name} at index {index} (shape "
                                 f"{tuple(tensor.shape)}); non-finite outputs cannot be compared; nothing was written.")


def gate(outputs: list[Compared], rule: ToleranceRule, failure: str, sides: tuple[str, str]) -> list[OutputCheck]:
    """Every output within its own tolerance, or ValueError naming each one that is not (`failure` starts it)."""
    for output in outputs:
        if output.reference.shape != output.candidate.shape:
            raise ValueError(f"{failure}: {sides[1]} returns {output.name} of shape {tuple(output.candidate.shape)}, "
                             f"{sides[0]} {tuple(output.reference.shape)}; nothing was written.")
    check_finite(outputs, failure, sides)
    checks = []
    for output in outputs:
        reference, candidate = output.real(output.reference), output.real(output.candidate)
        if reference.numel() == 0:
            continue
        spread = None
        if output.alternative is not None:
            measured = float((output.real(output.alternative) - reference).abs().max())
            spread = measured if math.isfinite(measured) else None  # a kernel's NaN must not widen the bound
        scale = float(reference.abs().max())
        checks.append(OutputCheck(output.name, float((candidate - reference).abs().max()), scale, spread,
                                  rule.tolerance(scale, spread)))
    failed = [check.describe() for check in checks if not check.passed]
    if failed:
        raise ValueError(f"{failure}: {'; '.join(failed)}; gate {rule.formula()}; nothing was written.")
    return checks


def summary(checks: list[OutputCheck], rule: ToleranceRule) -> str:
    """One line for a command's output: each output's figures against its tolerance, and the gate."""
    return "; ".join(check.describe() for check in checks) + f" [gate: max |Δ| ≤ {rule.formula()}]"


def card_figures(checks: list[OutputCheck], rule: ToleranceRule, compared: str) -> list[str]:
    """Model-card bullets: what was compared and the gate actually used, then each output's figures."""
    return [f"{compared}, output by output; gate: max |Δ| ≤ {rule.formula()}",
            *(check.describe() for check in checks)]


def _set_attention(model: torch.nn.Module, name: str) -> bool:
    """Switch `model` (its sub-models too) to the attention kernel `name`; False when it kept its own. transformers'
    warning about a model that cannot switch is silenced: the gate reports its spread as not measured instead."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        setter = getattr(model, "set_attn_implementation", None)
        if setter is not None:
            setter(name)
        else:  # older transformers: the config field the attention reads
            for module in model.modules():
                if hasattr(getattr(module, "config", None), "_attn_implementation"):
                    module.config._attn_implementation = name
    except (ValueError, ImportError):  # the kernel is unavailable for this model
        return False
    finally:
        logging.set_verbosity(verbosity)
    return model.config._attn_implementation == name


@contextmanager
def other_attention(model: torch.nn.Module) -> Iterator[Optional[str]]:
    """Within: `model` runs its other attention kernel (eager for sdpa, sdpa otherwise); yields that kernel's name,
    or None when the model cannot switch (no sdpa support, as 4.57's T5; attention classes fixed at construction, as
    4.57's BERT). The model's own kernel is restored after."""
    own = getattr(getattr(model, "config", None), "_attn_implementation", None)
    target = "eager" if own == "sdpa" else "sdpa"
    if own is None or (target == "sdpa" and not getattr(model, "_supports_sdpa", False)) or \
            not _set_attention(model, target):
        yield None
        return
    try:
        yield target
    finally:
        _set_attention(model, own)
