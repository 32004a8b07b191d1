"""The ONNX validation's gate (hf_tformer_conversion.tolerance, shared with the conversion gate): each output within
its tolerance, with the numbers in the report, the command's output and the export's card; NaN / inf on either side
fails; a wrong weight in the graph still fails."""

import re

import pytest
import torch
from huggingface_hub import ModelCard

import hf_tformer as ht
from conftest import tiny_config
from hf_tformer_conversion.tolerance import EXPORT_TOLERANCE
from hf_tformer_export.__main__ import main as cli
from hf_tformer_export.export import export_onnx
from hf_tformer_export.validate import validate_export

TASK = "fill-mask"


def _save(folder, change=None):
    """A tiny encoder with an MLM head whose logits reach ~30, as a real model's do; `change(model)` alters its
    weights first."""
    torch.manual_seed(0)
    model = ht.TformerEncoderForMaskedLM(tiny_config("encoder")).eval()
    with torch.no_grad():
        model.lm_head.layernorm.weight.mul_(80)
        if change is not None:
            change(model)
    model.save_pretrained(folder)
    return folder


def _nan_embeddings(model) -> None:
    model.model.embed_tokens.weight.fill_(float("nan"))


def test_the_report_the_command_and_the_card_state_the_gate_with_its_numbers(tmp_path, hf_home, capsys):
    checkpoint = _save(tmp_path / "ckpt")
    assert cli(["onnx", str(checkpoint), str(tmp_path / "onnx"), "--task", TASK, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"validation gate: logits: max \|Δ\| = \S+ ≤ tolerance \S+ \(max\|ref\| \S+, spread \S+\) "
                     r"\[gate: max \|Δ\| ≤ max\(1e-04, 1e-05 × max\|ref\|, 10 × spread\)", out), out
    card = ModelCard.load(tmp_path / "onnx" / "README.md")
    assert "gate: 1e-4" not in card.text
    assert ("model.onnx against PyTorch on padded random inputs (ONNX Runtime, CPU), output by output; gate: max |Δ| "
            "≤ max(1e-04, 1e-05 × max|ref|, 10 × spread)") in card.text
    line = re.search(r"- logits: max \|Δ\| = (\S+) ≤ tolerance (\S+) \(max\|ref\| (\S+), spread (\S+)\)", card.text)
    assert line is not None, card.text
    difference, tolerance, scale, spread = (float(value) for value in line.groups())
    assert 0 < spread and difference <= tolerance  # PyTorch's own sdpa / eager spread was measured
    assert tolerance == pytest.approx(max(1e-4, 1e-5 * scale, 10 * spread), rel=1e-2)  # the formula, as shown


def test_the_report_carries_each_outputs_figures(tmp_path, hf_home):
    report = export_onnx(str(_save(tmp_path / "ckpt")), str(tmp_path / "onnx"), TASK)
    check, = report.validation[0].checks
    assert check.name == "logits" and check.spread is not None and check.scale > 20
    assert check.tolerance == max(EXPORT_TOLERANCE.floor, EXPORT_TOLERANCE.rtol * check.scale,
                                  EXPORT_TOLERANCE.spread_factor * check.spread)
    assert report.validation[0].max_abs_diff == check.max_abs_diff <= check.tolerance
    assert report.validation[0].rule == EXPORT_TOLERANCE


def test_nan_in_pytorch_and_onnx_runtime_fails_and_writes_nothing(tmp_path, hf_home):
    checkpoint = _save(tmp_path / "ckpt", _nan_embeddings)
    with pytest.raises(ValueError, match=r"validation failed for model.onnx: PyTorch returns nan in logits at index "
                                         r"\(0, 0, 0\) \(shape \(2, 9, 97\)\); non-finite outputs cannot be compared"):
        export_onnx(str(checkpoint), str(tmp_path / "onnx"), TASK)  # before: NaN > atol is False, it passed
    assert not (tmp_path / "onnx").exists()


def test_nan_on_the_onnx_runtime_side_only_fails_naming_it(tmp_path, hf_home):
    export_onnx(str(_save(tmp_path / "nan", _nan_embeddings)), str(tmp_path / "onnx"), TASK, validate=False)
    with pytest.raises(ValueError, match=r"validation failed for model.onnx: ONNX Runtime returns nan in logits at "
                                         r"index \(0, 0, 0\)"):
        validate_export(_save(tmp_path / "ckpt"), tmp_path / "onnx", TASK)


def test_a_graph_with_a_wrong_weight_still_fails(tmp_path, hf_home):
    def wrong(model):  # one attention weight off by 1%
        model.model.encoder.layers[0].self_attn.v_proj.weight.mul_(1.01)

    export_onnx(str(_save(tmp_path / "wrong", wrong)), str(tmp_path / "onnx"), TASK, validate=False)
    with pytest.raises(ValueError, match=r"validation failed for model.onnx: logits: max \|Δ\| = \S+ > tolerance "):
        validate_export(_save(tmp_path / "ckpt"), tmp_path / "onnx", TASK)
