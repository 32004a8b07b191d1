"""ONNX export of the CLIP-style dual encoder and its towers (our exporter, laid out as optimum exports native CLIP
and its text / vision towers): every output against PyTorch at other text / image batches, lengths and image sizes,
fused attention, the processor carried into the export, our ONNX Runtime classes (any transformers version) and
optimum's ORTModelForZeroShotImageClassification (4.57), the zero-shot pipelines on them, and loading in a fresh
process without hf_tformer."""

import pytest
import torch

import hf_tformer as ht
from clip_helpers import TEXT, VISION, clip_processor, padded_texts as texts
from conftest import run_without_hf_tformer
from hf_tformer_export.__main__ import main as cli
from hf_tformer_export.export import PROCESSOR_FILES, QUANTIZED_FILE, MissingPreprocessorWarning, export_onnx
from hf_tformer_export.runtime import load_ort_model
from hf_tformer_export.validate_clip import run_session
from vision_helpers import images, perturbed, pixels

OUTPUTS = ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds")
LABELS = ["a photo of a cat", "dog", "fox"]


def save(tmp_path, model_class=ht.TformerCLIPModel):
    """A tiny checkpoint of `model_class` with CLIP's processor (tokenizer + image processor) next to it."""
    torch.manual_seed(0)
    if model_class is ht.TformerCLIPModel:
        config = ht.TformerCLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=24)
    elif "Text" in model_class.__name__:
        config = ht.TformerCLIPTextConfig(**TEXT)
    else:
        config = ht.TformerCLIPVisionConfig(**VISION)
    folder = tmp_path / "ckpt"
    perturbed(model_class(config)).eval().save_pretrained(folder)
    clip_processor(tmp_path / "processor").save_pretrained(folder)
    return folder


@pytest.mark.parametrize("task, attention", [
    ("zero-shot-image-classification", "fused"), ("feature-extraction", "fused"),
    ("zero-shot-image-classification", "plain"),
])
def test_dual_encoder_export_matches_pytorch_at_any_batch_length_and_image_size(tmp_path, hf_home, task, attention):
    from transformers import AutoProcessor

    folder = save(tmp_path)
    out = tmp_path / "onnx"
    report = export_onnx(str(folder), str(out), task, attention=attention)
    assert report.validation[0].max_abs_diff <= 1e-4  # every output, 3 padded texts x 4 images
    counts = report.node_counts["model.onnx"]
    if attention == "fused":  # every layer of both towers one packed Attention (the text tower's unidirectional)
        assert (counts.get("Attention"), counts.get("MultiHeadAttention", 0), counts.get("Softmax", 0)) == (4, 0, 0)
    else:
        assert counts.get("Softmax") == 4 and not counts.get("Attention") and not counts.get("MultiHeadAttention")
    processor = AutoProcessor.from_pretrained(out)  # the checkpoint's processor is carried into the export
    assert type(processor.image_processor).__name__.startswith("CLIPImageProcessor") and len(processor.tokenizer) > 0
    card = (out / "README.md").read_text()
    assert f"pipeline_tag: {task}" in card and "ORTModelForZeroShotImageClassification" in card
    assert "pipeline(\"zero-shot-image-classification\", model=model" in card
    assert "padded texts and random pixel values" in card
    ort = load_ort_model(out, task)
    assert type(ort).__name__ == "TformerORTModelForZeroShotImageClassification"
    assert set(ort.session.input_names) == {"input_ids", "attention_mask", "pixel_values"}
    reference = ht.TformerCLIPModel.from_pretrained(folder).eval()
    for lengths, values in [((6,), pixels(1, 32, 32)), ((4, 11, 7, 2), pixels(3, 32, 32, seed=3)),
                            ((5, 3), pixels(2, 48, 40, seed=4))]:  # dynamic batches, lengths and image size
        inputs = texts(lengths, seed=len(lengths))
        result = ort(**inputs, pixel_values=values)
        with torch.no_grad():
            expected = reference(**inputs, pixel_values=values, interpolate_pos_encoding=True)
        for name in OUTPUTS:
            torch.testing.assert_close(torch.as_tensor(getattr(result, name)), getattr(expected, name), atol=1e-4,
                                       rtol=1e-4)


@pytest.mark.parametrize("model_class, outputs", [
    (ht.TformerCLIPTextModel, ["last_hidden_state", "pooler_output"]),
    (ht.TformerCLIPTextModelWithProjection, ["text_embeds", "last_hidden_state"]),
    (ht.TformerCLIPVisionModel, ["last_hidden_state", "pooler_output"]),
    (ht.TformerCLIPVisionModelWithProjection, ["image_embeds", "last_hidden_state"]),
])
def test_towers_export_as_optimum_exports_clip_text_and_vision(tmp_path, hf_home, model_class, outputs):
    folder = save(tmp_path, model_class)
    report = export_onnx(str(folder), str(tmp_path / "onnx"), "feature-extraction")
    assert report.validation[0].max_abs_diff <= 1e-4
    counts = report.node_counts["model.onnx"]
    assert (counts.get("Attention"), counts.get("MultiHeadAttention", 0), counts.get("Softmax", 0)) == (2, 0, 0)
    text = "Text" in model_class.__name__
    tag = "feature-extraction" if text else "image-feature-extraction"
    assert f"pipeline_tag: {tag}" in (tmp_path / "onnx" / "README.md").read_text()
    # input_ids alone, as optimum's clip-text graph: right padding never reaches a real token of a causal tower
    inputs = {"input_ids": texts((3, 8, 5))["input_ids"]} if text else {"pixel_values": pixels(3)}
    actual = run_session(tmp_path / "onnx" / "model.onnx", inputs)
    assert list(actual) == outputs
    with torch.no_grad():
        expected = model_class.from_pretrained(folder).eval()(**inputs)
    for name in outputs:
        torch.testing.assert_close(actual[name], getattr(expected, name), atol=1e-4, rtol=1e-4)
    result = load_ort_model(tmp_path / "onnx", "feature-extraction")(**inputs)  # our class: every output
    for name in outputs:
        torch.testing.assert_close(getattr(result, name), getattr(expected, name), atol=1e-4, rtol=1e-4)


@pytest.fixture(scope="module")
def quantized_export(tmp_path_factory):
    """(checkpoint, export folder with the INT8 graph, the command's output) of the dual encoder."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("clip_cli")
    folder = save(root)
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setenv("HF_HOME", str(root / "hf_home"))  # remote code modules of this export only
        code = cli(["export", "onnx", str(folder), str(root / "onnx"), "--task", "zero-shot-image-classification",
                    "--quantize", "--no-progress"])
    assert code == 0
    return folder, root / "onnx", printed.getvalue()


def test_the_command_line_exports_the_int8_graph_and_reports_it(quantized_export):
    _, out, printed = quantized_export
    assert "INT8 vs fp32" in printed
    assert (out / QUANTIZED_FILE).is_file()
    quantized = load_ort_model(out, "zero-shot-image-classification", variant="quantized")
    assert quantized.session.path.name == QUANTIZED_FILE
    result = quantized(**texts((4, 6)), pixel_values=pixels(2))
    assert result.logits_per_image.shape == (2, 2) and torch.isfinite(result.logits_per_image).all()


@pytest.mark.parametrize("backend", ["hf_tformer", pytest.param("optimum", marks=pytest.mark.needs_optimum)])
def test_zero_shot_pipelines_on_the_ort_model_score_as_pytorch(quantized_export, hf_home, backend):
    from transformers import AutoProcessor, pipeline

    folder, out, _ = quantized_export
    ort = load_ort_model(out, "zero-shot-image-classification", backend=backend)
    processor = AutoProcessor.from_pretrained(out)  # the processor saved next to the export
    parts = dict(tokenizer=processor.tokenizer, image_processor=processor.image_processor)
    pytorch = pipeline("zero-shot-image-classification", model=str(folder), trust_remote_code=True)
    pictures = images(3)
    expected = pytorch(pictures, candidate_labels=LABELS)
    pipes = [pipeline("zero-shot-image-classification", model=ort, **parts)]
    if backend == "optimum":
        from optimum.pipelines import pipeline as optimum_pipeline

        pipes.append(optimum_pipeline("zero-shot-image-classification", model=ort, accelerator="ort", **parts))
    for pipe in pipes:
        batched = pipe(pictures, candidate_labels=LABELS)
        assert batched == [pipe(picture, candidate_labels=LABELS) for picture in pictures]  # batched == one by one
        for want, got in zip(expected, batched):
            assert [row["label"] for row in got] == [row["label"] for row in want]
            torch.testing.assert_close(torch.tensor([row["score"] for row in got]),
                                       torch.tensor([row["score"] for row in want]), atol=1e-4, rtol=1e-4)


# How a fresh process loads the export: ours, or optimum's class after register() (4.57).
LOADERS = {
    "hf_tformer": """
    from hf_tformer_export.runtime import load_ort_model
    model = load_ort_model("{folder}", "zero-shot-image-classification")""",
    "optimum": """
    import hf_tformer_export
    from optimum.onnxruntime import ORTModelForZeroShotImageClassification
    hf_tformer_export.register()
    model = ORTModelForZeroShotImageClassification.from_pretrained("{folder}", trust_remote_code=True)""",
}


@pytest.mark.parametrize("backend", ["hf_tformer", pytest.param("optimum", marks=pytest.mark.needs_optimum)])
def test_loading_and_zero_shot_pipeline_without_hf_tformer(quantized_export, tmp_path, backend):
    folder, out, _ = quantized_export
    inputs = texts((4, 7))
    values = pixels(2)
    with torch.no_grad():
        expected = ht.TformerCLIPModel.from_pretrained(folder).eval()(**inputs, pixel_values=values)
    torch.save({**inputs, "pixel_values": values, "logits": expected.logits_per_image}, tmp_path / "reference.pt")
    load = LOADERS[backend].format(folder=out)
    code = f"""
    import torch
    from transformers import AutoProcessor, pipeline
    data = torch.load("{tmp_path / 'reference.pt'}")
    {load.strip()}
    logits = torch.as_tensor(model(input_ids=data["input_ids"], attention_mask=data["attention_mask"],
                                   pixel_values=data["pixel_values"]).logits_per_image)
    torch.testing.assert_close(logits, data["logits"], atol=1e-4, rtol=1e-4)
    processor = AutoProcessor.from_pretrained("{out}")
    pipe = pipeline("zero-shot-image-classification", model=model, tokenizer=processor.tokenizer,
                    image_processor=processor.image_processor)
    from PIL import Image
    print("OK", model.config.model_type, len(pipe(Image.new("RGB", (40, 30)), candidate_labels=["cat", "dog"])))
    """
    assert "OK hf_tformer_clip 2" in run_without_hf_tformer(code, cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf")})


def test_a_task_the_dual_encoder_does_not_support_names_the_supported_ones(tmp_path, capsys):
    folder = save(tmp_path)
    with pytest.raises(ValueError, match=r"task='image-classification' is not supported for hf_tformer_clip; valid "
                                         r"tasks: \['zero-shot-image-classification', 'feature-extraction'\]"):
        export_onnx(str(folder), str(tmp_path / "onnx"), "image-classification")
    assert cli(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--task", "fill-mask"]) == 1
    assert "valid tasks: ['zero-shot-image-classification', 'feature-extraction']" in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists()


def test_a_dual_encoder_without_its_processor_warns_how_to_add_one(tmp_path, hf_home):
    folder = save(tmp_path)
    for name in PROCESSOR_FILES:  # transformers 5 saves the image processor inside processor_config.json
        (folder / name).unlink(missing_ok=True)
    with pytest.warns(MissingPreprocessorWarning, match="no preprocessor_config.json.*CLIPProcessor"):
        export_onnx(str(folder), str(tmp_path / "onnx"), "zero-shot-image-classification", validate=False)
    assert not any((tmp_path / "onnx" / name).exists() for name in PROCESSOR_FILES)
