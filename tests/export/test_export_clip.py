"""ONNX export of the CLIP-style dual encoder and its towers through optimum (optimum's own CLIP ONNX configs over
our model types): every output against PyTorch at other text / image batches, lengths and image sizes, fused
attention, the processor carried into the export, ORTModelForZeroShotImageClassification, the zero-shot pipelines on
the ORT model, and loading in a fresh process without hf_tformer."""

import pytest
import torch

pytest.importorskip("optimum.exporters.onnx", reason="optimum-onnx is installed in the transformers 4.57 environment")

import hf_tformer as ht  # noqa: E402
from clip_helpers import EOS_ID, TEXT, VISION, clip_processor  # noqa: E402
from conftest import run_without_hf_tformer  # noqa: E402
from hf_tformer_export.__main__ import main as cli  # noqa: E402
from hf_tformer_export.export import QUANTIZED_FILE, MissingPreprocessorWarning, export_onnx  # noqa: E402
from hf_tformer_export.runtime import load_ort_model  # noqa: E402
from hf_tformer_export.validate_clip import run_session  # noqa: E402
from vision_helpers import images, perturbed, pixels  # noqa: E402

pytestmark = pytest.mark.needs_optimum

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


def texts(lengths: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded texts ending in the end-of-text token (which also pads), as CLIP's tokenizer makes them."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), EOS_ID)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, : length - 1] = torch.randint(0, EOS_ID - 1, (length - 1,), generator=generator)
        mask[row, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("task, attention", [
    ("zero-shot-image-classification", "fused"), ("feature-extraction", "fused"),
    ("zero-shot-image-classification", "plain"),
])
def test_dual_encoder_export_matches_pytorch_at_any_batch_length_and_image_size(tmp_path, hf_home, task, attention):
    folder = save(tmp_path)
    out = tmp_path / "onnx"
    report = export_onnx(str(folder), str(out), task, attention=attention)
    assert report.validation[0].max_abs_diff <= 1e-4  # every output, 3 padded texts x 4 images
    counts = report.node_counts["model.onnx"]
    if attention == "fused":  # every layer of both towers one packed Attention (the text tower's unidirectional)
        assert (counts.get("Attention"), counts.get("MultiHeadAttention", 0), counts.get("Softmax", 0)) == (4, 0, 0)
    else:
        assert counts.get("Softmax") == 4 and not counts.get("Attention") and not counts.get("MultiHeadAttention")
    for name in ("preprocessor_config.json", "tokenizer.json", "vocab.json", "merges.txt"):
        assert (out / name).is_file(), name  # optimum carries the processor into the export
    card = (out / "README.md").read_text()
    assert f"pipeline_tag: {task}" in card and "ORTModelForZeroShotImageClassification" in card
    assert "pipeline(\"zero-shot-image-classification\", model=model" in card
    assert "padded texts and random pixel values" in card
    ort = load_ort_model(out, task)
    assert type(ort).__name__ == "ORTModelForZeroShotImageClassification"
    assert ort.input_names.keys() >= {"input_ids", "attention_mask", "pixel_values"}
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
    ort = load_ort_model(tmp_path / "onnx", "feature-extraction")  # optimum's class: last_hidden_state only
    torch.testing.assert_close(torch.as_tensor(ort(**inputs).last_hidden_state), expected.last_hidden_state,
                               atol=1e-4, rtol=1e-4)


def test_zero_shot_pipelines_on_the_ort_model_score_as_pytorch(tmp_path, hf_home, capsys):
    from optimum.pipelines import pipeline as optimum_pipeline
    from transformers import AutoProcessor, pipeline

    folder = save(tmp_path)
    assert cli(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--task", "zero-shot-image-classification",
                "--quantize", "--no-progress"]) == 0
    assert "INT8 vs fp32" in capsys.readouterr().out
    assert (tmp_path / "onnx" / QUANTIZED_FILE).is_file()
    ort = load_ort_model(tmp_path / "onnx", "zero-shot-image-classification")
    processor = AutoProcessor.from_pretrained(tmp_path / "onnx")  # the processor saved next to the export
    parts = dict(tokenizer=processor.tokenizer, image_processor=processor.image_processor)
    pytorch = pipeline("zero-shot-image-classification", model=str(folder), trust_remote_code=True)
    pictures = images(3)
    expected = pytorch(pictures, candidate_labels=LABELS)
    for pipe in (pipeline("zero-shot-image-classification", model=ort, **parts),
                 optimum_pipeline("zero-shot-image-classification", model=ort, accelerator="ort", **parts)):
        batched = pipe(pictures, candidate_labels=LABELS)
        assert batched == [pipe(picture, candidate_labels=LABELS) for picture in pictures]  # batched == one by one
        for want, got in zip(expected, batched):
            assert [row["label"] for row in got] == [row["label"] for row in want]
            torch.testing.assert_close(torch.tensor([row["score"] for row in got]),
                                       torch.tensor([row["score"] for row in want]), atol=1e-4, rtol=1e-4)


def test_loading_and_zero_shot_pipeline_without_hf_tformer(tmp_path, hf_home):
    folder = save(tmp_path)
    export_onnx(str(folder), str(tmp_path / "onnx"), "zero-shot-image-classification")
    inputs = texts((4, 7))
    values = pixels(2)
    with torch.no_grad():
        expected = ht.TformerCLIPModel.from_pretrained(folder).eval()(**inputs, pixel_values=values)
    torch.save({**inputs, "pixel_values": values, "logits": expected.logits_per_image}, tmp_path / "reference.pt")
    code = f"""
    import torch
    import hf_tformer_export
    from optimum.onnxruntime import ORTModelForZeroShotImageClassification
    from transformers import AutoProcessor, pipeline
    hf_tformer_export.register()
    data = torch.load("{tmp_path / 'reference.pt'}")
    model = ORTModelForZeroShotImageClassification.from_pretrained("{tmp_path / 'onnx'}", trust_remote_code=True)
    logits = torch.as_tensor(model(input_ids=data["input_ids"], attention_mask=data["attention_mask"],
                                   pixel_values=data["pixel_values"]).logits_per_image)
    torch.testing.assert_close(logits, data["logits"], atol=1e-4, rtol=1e-4)
    processor = AutoProcessor.from_pretrained("{tmp_path / 'onnx'}")
    pipe = pipeline("zero-shot-image-classification", model=model, tokenizer=processor.tokenizer,
                    image_processor=processor.image_processor)
    from PIL import Image
    print("OK", model.config.model_type, len(pipe(Image.new("RGB", (40, 30)), candidate_labels=["cat", "dog"])))
    """
    assert "OK hf_tformer_clip 2" in run_without_hf_tformer(code, cwd=tmp_path)


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
    (folder / "preprocessor_config.json").unlink()
    with pytest.warns(MissingPreprocessorWarning, match="no preprocessor_config.json.*CLIPProcessor"):
        export_onnx(str(folder), str(tmp_path / "onnx"), "zero-shot-image-classification", validate=False)
    assert not (tmp_path / "onnx" / "preprocessor_config.json").exists()
