"""The parity gate's tolerance (tolerance.py): scaled to the outputs and to the reference's own float32 noise, so
that a faithful conversion of a real-scale model passes while a wrong weight still fails; NaN / inf always fail.

The model: a tiny GPT-2 whose final norm gain is raised so that its logits reach ~35, as a real language model's do.
"""

import re

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import GPT2Config, GPT2LMHeadModel

import hf_tformer as ht
from hf_tformer_conversion import convert
from hf_tformer_conversion.__main__ import main as cli
from hf_tformer_conversion.tolerance import (CONVERSION_TOLERANCE, EXPORT_TOLERANCE, Compared, ToleranceRule,
                                             first_non_finite, gate, other_attention)
from hf_tformer_conversion.verify import check_parity

# What the issue measured on a real Whisper: transformers' own sdpa vs eager logits differ by 8e-5 (logits ~30); a
# faithful ONNX export differed from PyTorch by 3.4e-4 with identical tokens.
REAL_SCALE, REAL_SPREAD, REAL_ONNX_DIFFERENCE = 30.0, 8e-5, 3.4e-4


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(source folder, converted folder, conversion report) of the real-scale tiny GPT-2."""
    folder = tmp_path_factory.mktemp("verify")
    torch.manual_seed(0)
    source = GPT2LMHeadModel(GPT2Config(vocab_size=120, n_positions=64, n_embd=32, n_layer=2, n_head=4))
    with torch.no_grad():
        source.transformer.ln_f.weight.mul_(60)  # logits up to ~35
    source.save_pretrained(folder / "source")
    report = convert(str(folder / "source"), str(folder / "ours"), progress=False)
    return folder / "source", folder / "ours", report


def _pair(converted) -> tuple[GPT2LMHeadModel, ht.TformerDecoderForCausalLM]:
    source, ours, _ = converted
    reference = GPT2LMHeadModel.from_pretrained(source, attn_implementation="eager").eval()
    return reference, ht.TformerDecoderForCausalLM.from_pretrained(ours).eval()


def _expected_tolerance(check, rule=CONVERSION_TOLERANCE) -> float:
    return max(rule.floor, rule.rtol * check.scale, rule.spread_factor * (check.spread or 0.0))


def test_a_real_scale_model_passes_and_the_report_carries_the_numbers(converted):
    check, = converted[2].parity.checks
    assert check.name == "logits" and check.scale > 20  # a real model's magnitude
    assert check.spread is not None and 0 < check.spread < 1e-4  # GPT-2 switches between sdpa and eager
    assert check.tolerance == _expected_tolerance(check) and check.max_abs_diff <= check.tolerance
    assert converted[2].parity.max_abs_diff == check.max_abs_diff and converted[2].parity.rule == CONVERSION_TOLERANCE


def test_noise_at_a_real_models_float32_level_passes_where_the_absolute_bound_refused(converted):
    reference, ours = _pair(converted)
    scale = converted[2].parity.checks[0].scale
    amplitude = REAL_SPREAD / REAL_SCALE * scale  # Whisper's measured noise, relative to these logits
    generator = torch.Generator().manual_seed(0)

    def noisy(module, args, output):  # +- amplitude on every logit: rounding noise, not a shift
        signs = torch.randint(0, 2, output.logits.shape, generator=generator) * 2 - 1
        output.logits = output.logits + amplitude * signs
        return output

    ours.register_forward_hook(noisy)
    report = check_parity(reference, ours)
    assert report.max_abs_diff > 1e-5  # the old absolute gate would have refused it
    assert report.greedy_identical and report.own_settings_identical


def _swap_query_and_key(model) -> None:
    attention = model.model.decoder.layers[0].self_attn
    for name in ("weight", "bias"):
        query, key = getattr(attention.q_proj, name), getattr(attention.k_proj, name)
        swapped = key.clone()
        key.copy_(query)
        query.copy_(swapped)


def _norm_eps(model, eps: float) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm):
            module.eps = eps


@pytest.mark.parametrize("wrong", [
    lambda model: model.model.decoder.layers[0].self_attn.v_proj.weight.mul_(1.01),
    lambda model: model.model.decoder.layers[1].mlp.down_proj.weight.mul_(1.01),
    _swap_query_and_key,
    lambda model: _norm_eps(model, 1e-6),  # the source's is 1e-5
], ids=["value-weight-x1.01", "mlp-weight-x1.01", "query-key-swapped", "layer-norm-eps"])
def test_a_real_conversion_error_still_fails(converted, wrong):
    reference, ours = _pair(converted)
    with torch.no_grad():
        wrong(ours)
    with pytest.raises(ValueError, match=r"parity check failed: logits: max \|Δ\| = \S+ > tolerance \S+ \(max\|ref\| "
                                         r"\S+, spread \S+\); gate max\(1e-05, 1e-05 × max\|ref\|, 10 × spread\)"):
        check_parity(reference, ours)


def test_nan_on_both_sides_fails_naming_the_reference_and_where(converted):
    reference, ours = _pair(converted)
    with torch.no_grad():  # one channel of the final norm: every logit
        reference.transformer.ln_f.weight[3] = float("nan")
        ours.model.decoder.final_norm.weight[3] = float("nan")
    with pytest.raises(ValueError, match=r"parity check failed: the reference \(GPT2LMHeadModel\) returns nan in "
                                         r"logits at index \(0, 0, 0\) \(shape \(2, 12, 120\)\); non-finite"):
        check_parity(reference, ours)  # before: NaN > tolerance is False, and both decode the same tokens


def test_nan_on_the_converted_side_only_fails_naming_it(converted):
    reference, ours = _pair(converted)
    with torch.no_grad():
        ours.model.decoder.final_norm.weight[3] = float("nan")
    with pytest.raises(ValueError, match=r"the converted model \(TformerDecoderForCausalLM\) returns nan in logits at "
                                         r"index \(0, 0, 0\)"):
        check_parity(reference, ours)


def test_inf_fails_and_a_nan_at_a_padded_position_is_not_compared():
    reference = torch.zeros(2, 3, 4)
    keep = torch.tensor([[True, True, True], [True, False, False]])
    candidate = reference.clone()
    candidate[1, 2, 1] = float("nan")  # padding: not a real position
    assert first_non_finite(candidate, keep) is None and first_non_finite(candidate) == (1, 2, 1)
    assert gate([Compared("logits", reference, candidate, keep=keep)], CONVERSION_TOLERANCE, "failed",
                ("a", "b"))[0].max_abs_diff == 0
    candidate[1, 0, 2] = float("inf")
    with pytest.raises(ValueError, match=r"failed: b returns inf in logits at index \(1, 0, 2\)"):
        gate([Compared("logits", reference, candidate, keep=keep)], CONVERSION_TOLERANCE, "failed", ("a", "b"))


def _real_model_outputs(difference: float) -> Compared:
    """Logits of a real model's magnitude; the candidate `difference` away, the reference's other kernel REAL_SPREAD."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 12, 50, generator=generator, dtype=torch.float64)  # exact figures for the messages
    logits = logits / logits.abs().max() * REAL_SCALE
    signs = torch.randint(0, 2, logits.shape, generator=generator) * 2 - 1
    return Compared("logits", logits, logits + difference * signs, alternative=logits + REAL_SPREAD * signs.flip(0))


@pytest.mark.parametrize("rule", [CONVERSION_TOLERANCE, EXPORT_TOLERANCE], ids=["conversion", "export"])
def test_the_issues_real_numbers_pass_and_a_relative_1e_3_error_fails(rule):
    check, = gate([_real_model_outputs(REAL_ONNX_DIFFERENCE)], rule, "failed", ("PyTorch", "ONNX Runtime"))
    assert check.spread == pytest.approx(REAL_SPREAD) and check.tolerance == pytest.approx(10 * REAL_SPREAD)
    with pytest.raises(ValueError, match=r"failed: logits: max \|Δ\| = 3.00e-02 > tolerance 8.00e-04"):
        gate([_real_model_outputs(1e-3 * REAL_SCALE)], rule, "failed", ("PyTorch", "ONNX Runtime"))


def test_without_a_measured_spread_the_scale_alone_decides():
    outputs = _real_model_outputs(REAL_ONNX_DIFFERENCE)
    outputs.alternative = None  # a reference that cannot switch kernels (4.57's BERT, T5)
    with pytest.raises(ValueError, match=r"max \|Δ\| = 3.40e-04 > tolerance 3.00e-04 \(max\|ref\| 3.00e\+01, spread "
                                         r"not measured\)"):
        gate([outputs], CONVERSION_TOLERANCE, "failed", ("a", "b"))
    outputs.candidate = outputs.reference + REAL_SPREAD  # Whisper's own sdpa-vs-eager noise
    assert gate([outputs], CONVERSION_TOLERANCE, "failed", ("a", "b"))[0].spread is None


def test_other_attention_switches_and_restores(converted):
    reference, ours = _pair(converted)
    with other_attention(reference) as other:
        assert other == "sdpa" and reference.config._attn_implementation == "sdpa"
    assert reference.config._attn_implementation == "eager"
    own = ours.config._attn_implementation
    with other_attention(ours) as other:
        assert other == ("eager" if own == "sdpa" else "sdpa")
    assert ours.config._attn_implementation == own
    with other_attention(torch.nn.Linear(2, 2)) as other:  # no config, no attention kernel to switch
        assert other is None


@pytest.mark.parametrize("field", ["floor", "rtol", "spread_factor"])
def test_a_rule_with_a_negative_or_nan_number_is_refused(field):
    for value in (-1.0, float("nan")):
        with pytest.raises(ValueError, match=rf"ToleranceRule.{field}={value}: pass a finite number >= 0"):
            ToleranceRule(**{"floor": 1e-5, field: value})


def test_the_card_and_the_command_state_the_gate_used_with_its_numbers(converted, tmp_path, capsys):
    source, ours, report = converted
    check, = report.parity.checks
    card = ModelCard.load(ours / "README.md")
    assert "gate: 1e-5" not in card.text
    assert (f"Against the source on random padded inputs, in float32, output by output; gate: max |Δ| ≤ max(1e-05, "
            "1e-05 × max|ref|, 10 × spread), spread = the reference's own max |sdpa − eager| on the same inputs"
            in card.text)
    line = re.search(r"- logits: max \|Δ\| = (\S+) ≤ tolerance (\S+) \(max\|ref\| (\S+), spread (\S+)\)", card.text)
    assert line is not None, card.text
    shown = [float(value) for value in line.groups()]
    assert shown == pytest.approx([check.max_abs_diff, check.tolerance, check.scale, check.spread], rel=5e-3)
    assert shown[1] == pytest.approx(max(1e-5, 1e-5 * shown[2], 10 * shown[3]), rel=1e-2)  # the formula, as shown

    assert cli([str(source), str(tmp_path / "again"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"parity gate: logits: max \|Δ\| = \S+ ≤ tolerance \S+ \(max\|ref\| \S+, spread \S+\) \[gate: "
                     r"max \|Δ\| ≤ max\(1e-05, 1e-05 × max\|ref\|, 10 × spread\)", out), out
