"""optimum's ORTModel* (transformers 4.57 with optimum-onnx) on exports of our own exporter: every task family through
load_ort_model(..., backend="optimum") against PyTorch (outputs by name, greedy tokens with past incl. GQA), and
straight through optimum (README: `register()`, then ORTModel*.from_pretrained(folder, trust_remote_code=True)),
where each export gets its own config code, without transformers' module-name warning."""

import sys

import pytest
import torch
import transformers
from transformers.testing_utils import CaptureLogger

pytest.importorskip("optimum.onnxruntime", reason="optimum-onnx is installed in the transformers 4.57 environment")

import hf_tformer as ht  # noqa: E402
from conftest import tiny_config  # noqa: E402
from ort_helpers import assert_ort_greedy_equals_pytorch, padded_text_inputs  # noqa: E402
from hf_tformer_export import register  # noqa: E402
from hf_tformer_export.export import export_onnx  # noqa: E402
from hf_tformer_export.runtime import load_ort_model  # noqa: E402
from hf_tformer_export.validate import run_both  # noqa: E402
from vision_helpers import image_processor, pixels, tiny_vit_config  # noqa: E402

pytestmark = pytest.mark.needs_optimum

# (variant, PyTorch class, task, config overrides) per task family; the ORT class is optimum's for the task.
FAMILIES = [
    ("encoder", ht.TformerEncoderModel, "feature-extraction", {}),
    ("encoder", ht.TformerEncoderForMaskedLM, "fill-mask", {}),
    ("encoder", ht.TformerEncoderForSequenceClassification, "text-classification", {}),
    ("encoder", ht.TformerEncoderForTokenClassification, "token-classification", {}),
    ("encoder", ht.TformerEncoderForQuestionAnswering, "question-answering", {}),
    ("decoder", ht.TformerDecoderForCausalLM, "text-generation", {}),
    ("decoder", ht.TformerDecoderForCausalLM, "text-generation-with-past", {}),
    ("decoder", ht.TformerDecoderForCausalLM, "text-generation-with-past", {"num_key_value_heads": 2}),
    ("decoder", ht.TformerDecoderForCausalLM, "text-generation-with-past", {"num_key_value_heads": 1}),
    ("decoder", ht.TformerDecoderForSequenceClassification, "text-classification", {}),
    ("encoder_decoder", ht.TformerEncoderDecoderForConditionalGeneration, "text2text-generation-with-past", {}),
    ("vit", ht.TformerViTForImageClassification, "image-classification", {}),
    ("vit", ht.TformerViTModel, "image-feature-extraction", {}),
]
OPTIMUM_CLASSES = {"feature-extraction": "ORTModelForFeatureExtraction", "fill-mask": "ORTModelForMaskedLM",
                   "text-classification": "ORTModelForSequenceClassification",
                   "token-classification": "ORTModelForTokenClassification",
                   "question-answering": "ORTModelForQuestionAnswering", "text-generation": "ORTModelForCausalLM",
                   "text-generation-with-past": "ORTModelForCausalLM",
                   "text2text-generation-with-past": "ORTModelForSeq2SeqLM",
                   "image-classification": "ORTModelForImageClassification",
                   "image-feature-extraction": "ORTModelForFeatureExtraction"}


def _family_id(case) -> str:
    variant, _, task, overrides = case
    return "-".join([variant, task, *(f"kv{v}" for v in overrides.values())])


@pytest.mark.parametrize("variant, model_class, task, overrides", FAMILIES, ids=[_family_id(c) for c in FAMILIES])
def test_optimum_ort_models_run_our_exports_as_pytorch(tmp_path, hf_home, variant, model_class, task, overrides):
    torch.manual_seed(0)
    config = tiny_vit_config(**overrides) if variant == "vit" else tiny_config(variant, **overrides)
    pytorch = model_class(config).eval()
    pytorch.save_pretrained(tmp_path / "ckpt")
    if variant == "vit":
        image_processor().save_pretrained(tmp_path / "ckpt")
    export_onnx(str(tmp_path / "ckpt"), str(tmp_path / "onnx"), task, validate=False)
    ort = load_ort_model(tmp_path / "onnx", task, backend="optimum")
    assert type(ort).__name__ == OPTIMUM_CLASSES[task] and type(ort).__module__.startswith("optimum.")
    inputs = {"pixel_values": pixels(3)} if variant == "vit" else padded_text_inputs(left_padded=variant == "decoder")
    ort_task = "feature-extraction" if task == "image-feature-extraction" else task
    expected, actual = run_both(pytorch, ort, ort_task, inputs)
    mask = inputs.get("attention_mask")
    for want, got in zip(expected, actual):  # outputs per source token: the real tokens only
        real = mask.bool() if mask is not None and got.dim() > 2 and got.shape[:2] == mask.shape else ...
        torch.testing.assert_close(got[real], want[real], atol=1e-4, rtol=1e-4)
    if "generation" in task:
        assert_ort_greedy_equals_pytorch(ort, pytorch, prompt_length=6, left_pads=(2, 4))


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
