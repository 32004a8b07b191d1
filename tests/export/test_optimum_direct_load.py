"""Loading exports straight through optimum (README: `register()`, then ORTModel*.from_pretrained(folder,
trust_remote_code=True)): each export gets its own config code, without transformers' module-name warning."""

import sys

import pytest
import torch
import transformers
from transformers.testing_utils import CaptureLogger

pytest.importorskip("optimum.onnxruntime", reason="optimum-onnx is installed in the transformers 4.57 environment")

import hf_tformer as ht  # noqa: E402
from conftest import tiny_config  # noqa: E402
from hf_tformer_export import register  # noqa: E402
from hf_tformer_export.export import export_onnx  # noqa: E402

pytestmark = pytest.mark.needs_optimum


def export_with_marker(tmp_path, name, marker):
    """An export in `name`/onnx (same basename for every export); `marker` is appended to its copied config code."""
    torch.manual_seed(0)
    checkpoint = tmp_path / name / "ckpt"
    ht.TformerEncoderForMaskedLM(tiny_config("encoder")).eval().save_pretrained(checkpoint)
    out = tmp_path / name / "onnx"
    export_onnx(str(checkpoint), str(out), "fill-mask", validate=False)
    if marker is not None:
        with open(out / "configuration_tformer.py", "a") as code:
            code.write(f"\nTformerEncoderConfig.MARKER = {marker!r}\n")
        with open(out / "config_checks.py", "a") as code:
            code.write(f"\nCHECKS_MARKER = {marker!r}\n")
    return out


def test_two_exports_with_different_config_code_load_their_own(tmp_path, hf_home):
    from optimum.onnxruntime import ORTModelForMaskedLM

    folders = {"plain": export_with_marker(tmp_path, "plain", None), "marked": export_with_marker(tmp_path, "v2", "v2")}
    register()
    with CaptureLogger(transformers.utils.logging.get_logger("transformers.dynamic_module_utils")) as logs:
        models = {name: ORTModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
                  for name, folder in folders.items()}
    assert "not a valid Python identifier" not in logs.out
    plain, marked = (type(models[name].config) for name in ("plain", "marked"))
    assert plain.__module__ != marked.__module__  # one module per code version, even under one folder basename
    assert getattr(marked, "MARKER", None) == "v2" and not hasattr(plain, "MARKER")

    def checks_module(config_class):  # the config_checks module the config's own module imported
        return sys.modules[sys.modules[config_class.__module__].check_config.__module__]

    assert getattr(checks_module(marked), "CHECKS_MARKER", None) == "v2"
    assert not hasattr(checks_module(plain), "CHECKS_MARKER")
    ids = torch.tensor([[5, 6, 7]])
    logits = models["plain"](input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert logits.shape == (1, 3, models["plain"].config.vocab_size)
