"""ONNX export of the image encoder (hf_tformer_vit) with our exporter: every image task, fused attention, INT8 /
fp16, dynamic batch, the image processor carried into the export, our ORT classes (pipelines over them:
tests/export/test_ort_models.py); on transformers 4.57 optimum's main_export and ORTModel* on them, in a fresh process
without hf_tformer (needs_optimum)."""

import json

import pytest
import torch

import hf_tformer as ht
from conftest import run_without_hf_tformer
from hf_tformer_export.__main__ import main as cli
from hf_tformer_export.export import QUANTIZED_FILE, MissingPreprocessorWarning, export_onnx
from hf_tformer_export.runtime import load_ort_model
from vision_helpers import LABELS, image_processor, pixels, tiny_vit_config

HEADS = {"feature-extraction": ht.TformerViTModel, "image-feature-extraction": ht.TformerViTModel,
         "image-classification": ht.TformerViTForImageClassification}


def save(tmp_path, model_class, processor: bool = True):
    torch.manual_seed(0)
    folder = tmp_path / "ckpt"
    config = tiny_vit_config(id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    model_class(config).eval().save_pretrained(folder)
    if processor:
        image_processor().save_pretrained(folder)
    return folder


def pytorch_output(folder, task: str, pixel_values: torch.Tensor) -> torch.Tensor:
    model = HEADS[task].from_pretrained(folder).eval()
    with torch.no_grad():
        output = model(pixel_values)
    return output.logits if task == "image-classification" else output.last_hidden_state


@pytest.mark.parametrize("task, attention", [
    ("image-classification", "fused"), ("feature-extraction", "fused"), ("image-feature-extraction", "fused"),
    ("image-classification", "plain"),
])
def test_image_tasks_export_match_pytorch_at_any_batch(tmp_path, hf_home, task, attention):
    folder = save(tmp_path, HEADS[task])
    report = export_onnx(str(folder), str(tmp_path / "onnx"), task, attention=attention)
    assert report.validation[0].max_abs_diff <= 1e-4  # a batch of 3; optimum traced with 2
    counts = report.node_counts["model.onnx"]
    if attention == "fused":  # one com.microsoft.Attention per layer (q/k/v projection inside), nothing decomposed
        assert (counts.get("Attention"), counts.get("MultiHeadAttention", 0), counts.get("Softmax", 0)) == (2, 0, 0)
    else:
        assert counts.get("Softmax") == 2 and not counts.get("Attention")
    out = tmp_path / "onnx"
    assert (out / "preprocessor_config.json").is_file()  # optimum copies the checkpoint's image processor
    card = (out / "README.md").read_text()
    tag = "image-classification" if task == "image-classification" else "image-feature-extraction"
    assert f"pipeline_tag: {tag}" in card and "random pixel values" in card
    ort = load_ort_model(out, task)
    assert type(ort).__name__ == ("TformerORTModelForImageClassification" if task == "image-classification"
                                  else "TformerORTModelForFeatureExtraction")
    for batch in (1, 5):  # dynamic batch
        inputs = pixels(batch, seed=batch)
        result = ort(pixel_values=inputs)
        actual = result.logits if task == "image-classification" else result.last_hidden_state
        torch.testing.assert_close(torch.as_tensor(actual), pytorch_output(folder, task, inputs), atol=1e-4,
                                   rtol=1e-4)
    if task == "feature-extraction":  # the graph resamples the positions: other image sizes run too
        inputs = pixels(2, height=48, width=40)
        with torch.no_grad():
            expected = HEADS[task].from_pretrained(folder).eval()(inputs, interpolate_pos_encoding=True)
        torch.testing.assert_close(torch.as_tensor(ort(pixel_values=inputs).last_hidden_state),
                                   expected.last_hidden_state, atol=1e-4, rtol=1e-4)


def test_int8_and_fp16_through_the_command_line(tmp_path, hf_home, capsys):
    import onnx

    folder = save(tmp_path, ht.TformerViTForImageClassification)
    assert cli(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--task", "image-classification",
                "--quantize", "--fp16", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "fused attention {'Attention': 2}" in printed and "INT8 vs fp32" in printed
    assert {p.name for p in (tmp_path / "onnx").glob("*.onnx")} == {"model.onnx", QUANTIZED_FILE, "model_fp16.onnx"}
    fp16 = onnx.load(str(tmp_path / "onnx" / "model_fp16.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16.graph.initializer)
    quantized = load_ort_model(tmp_path / "onnx", "image-classification", variant="quantized")
    inputs = pixels(4)
    logits = torch.as_tensor(quantized(pixel_values=inputs).logits)
    expected = pytorch_output(folder, "image-classification", inputs)
    assert torch.equal(logits.argmax(-1), expected.argmax(-1)) and (logits - expected).abs().max() < 0.05
    report = export_onnx(str(folder), str(tmp_path / "onnx"), "image-classification", quantize=True, force=True)
    assert report.node_counts[QUANTIZED_FILE].get("QAttention") == 2  # the packed q/k/v weights quantized too


@pytest.mark.needs_optimum
def test_plain_optimum_main_export_and_loading_without_hf_tformer(tmp_path, hf_home):
    """optimum's own main_export after register(); then a fresh process without hf_tformer loads both exports
    with optimum's ORTModel classes directly (register() from hf_tformer_export, then from_pretrained)."""
    from optimum.exporters.onnx import main_export

    from hf_tformer_export import register

    folder = save(tmp_path, ht.TformerViTForImageClassification)
    register()
    main_export(str(folder), tmp_path / "classify", task="image-classification", trust_remote_code=True)
    export_onnx(str(folder), str(tmp_path / "features"), "image-feature-extraction")
    inputs = pixels(3)
    torch.save({"pixels": inputs, "logits": pytorch_output(folder, "image-classification", inputs),
                "hidden": pytorch_output(folder, "feature-extraction", inputs)}, tmp_path / "reference.pt")
    code = f"""
    import torch
    import hf_tformer_export
    from optimum.onnxruntime import ORTModelForFeatureExtraction, ORTModelForImageClassification
    hf_tformer_export.register()
    data = torch.load("{tmp_path / 'reference.pt'}")
    classify = ORTModelForImageClassification.from_pretrained("{tmp_path / 'classify'}", trust_remote_code=True)
    features = ORTModelForFeatureExtraction.from_pretrained("{tmp_path / 'features'}", trust_remote_code=True)
    logits = torch.as_tensor(classify(pixel_values=data["pixels"]).logits)
    hidden = torch.as_tensor(features(pixel_values=data["pixels"]).last_hidden_state)
    torch.testing.assert_close(logits, data["logits"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(hidden, data["hidden"], atol=1e-4, rtol=1e-4)
    print("OK", classify.config.model_type)
    """
    assert "OK hf_tformer_vit" in run_without_hf_tformer(code, cwd=tmp_path)


# --- bad input ----------------------------------------------------------------------------------------------------

def test_a_task_the_image_model_does_not_support_names_the_supported_ones(tmp_path, capsys):
    folder = save(tmp_path, ht.TformerViTForImageClassification)
    valid = r"\['feature-extraction', 'image-feature-extraction', 'image-classification'\]"
    with pytest.raises(ValueError, match=r"task='fill-mask' is not supported for hf_tformer_vit; valid tasks: " + valid):
        export_onnx(str(folder), str(tmp_path / "onnx"), "fill-mask")
    assert cli(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--task", "text-classification"]) == 1
    assert "valid tasks: ['feature-extraction', 'image-feature-extraction'" in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists()


def test_a_checkpoint_without_an_image_processor_warns_how_to_add_one(tmp_path, hf_home):
    folder = save(tmp_path, ht.TformerViTModel, processor=False)
    with pytest.warns(MissingPreprocessorWarning, match="no preprocessor_config.json.*ViTImageProcessor"):
        export_onnx(str(folder), str(tmp_path / "onnx"), "feature-extraction", validate=False)
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["model_type"] == "hf_tformer_vit"
    assert not (tmp_path / "onnx" / "preprocessor_config.json").exists()
