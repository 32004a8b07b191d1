"""The image encoder: shapes, transformers' ViT / DeiT numerics (also at other image sizes), attention backends,
losses, and loading as remote code with pipelines in a fresh process without hf_tformer."""

import json

import pytest
import torch
import transformers
from torch.nn import functional as F

import hf_tformer as ht
from conftest import run_without_hf_tformer
from hf_tformer_conversion import convert
from vision_helpers import (FEATURE_PIPELINE_CODE, VIT, check_feature_pipeline_results, image_processor, images,
                            perturbed, pipeline_scores, pixels, save_source, source_model, tiny_vit_config)


def build(cls=ht.TformerViTModel, attn_implementation: str = "sdpa", **overrides):
    torch.manual_seed(0)
    config = tiny_vit_config(**overrides)
    config._attn_implementation = attn_implementation
    return perturbed(cls(config))


def converted(name: str, folder) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(transformers' source model, ours converted from it)."""
    convert(save_source(name, folder / "source"), str(folder / "ours"), progress=False)
    ours = ht.TformerViTForImageClassification if name.endswith(("cls", "teacher")) else ht.TformerViTModel
    return source_model(name), ours.from_pretrained(folder / "ours").eval()


def test_output_shapes():
    model = build()
    with torch.no_grad():
        out = model(pixels(3), output_hidden_states=True, output_attentions=True)
    tokens = 1 + (VIT["image_size"] // VIT["patch_size"]) ** 2
    assert out.last_hidden_state.shape == (3, tokens, 32) and out.pooler_output.shape == (3, 32)
    assert len(out.hidden_states) == 3 and out.attentions[0].shape == (3, 4, tokens, tokens)
    assert ht.TformerViTModel(tiny_vit_config(), add_pooling_layer=False)(pixels(1)).pooler_output is None
    deit = build(distillation_token=True)
    assert deit(pixels(1)).last_hidden_state.shape == (1, tokens + 1, 32)
    with torch.no_grad():
        wide = model(pixels(2, 48, 64), interpolate_pos_encoding=True).last_hidden_state
    assert wide.shape == (2, 1 + 6 * 8, 32)
    logits, = build(ht.TformerViTForImageClassification)(pixels(2), return_dict=False)
    assert logits.shape == (2, 3)


@pytest.mark.parametrize("name", ["vit-cls", "deit-teacher", "vit"])
def test_interpolate_pos_encoding_matches_transformers_at_other_sizes(tmp_path, name):
    source, ours = converted(name, tmp_path)
    for height, width in [(48, 48), (48, 32), (16, 64), (32, 32)]:  # 16 x 64: as many patches as 32 x 32
        values = pixels(2, height, width, seed=height + width)
        with torch.no_grad():
            expected = source(values, interpolate_pos_encoding=True)
            actual = ours(values, interpolate_pos_encoding=True)
        torch.testing.assert_close(actual[0], expected[0], atol=1e-5, rtol=1e-5)
        assert actual[0].shape == expected[0].shape


@pytest.mark.parametrize("distillation_token", [False, True])
def test_sdpa_matches_eager(distillation_token):
    values = pixels(2, 48, 40, seed=5)
    outputs = []
    for implementation in ("sdpa", "eager"):
        model = build(ht.TformerViTForImageClassification, implementation, distillation_token=distillation_token,
                      distillation_head=distillation_token)
        with torch.no_grad():
            outputs.append(model(values, interpolate_pos_encoding=True, output_hidden_states=True))
    torch.testing.assert_close(outputs[0].logits, outputs[1].logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs[0].hidden_states[-1], outputs[1].hidden_states[-1], atol=1e-5, rtol=1e-5)


def test_losses_match_transformers_image_classification(tmp_path):
    source, ours = converted("vit-cls", tmp_path)
    values = pixels(4, seed=2)
    cases = {
        "single_label_classification": torch.tensor([0, 2, 1, 2]),
        "multi_label_classification": torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]]),
    }
    for problem_type, labels in cases.items():
        source.config.problem_type = ours.config.problem_type = None  # both infer it from the labels
        with torch.no_grad():
            expected, actual = source(values, labels=labels).loss, ours(values, labels=labels).loss
        assert ours.config.problem_type == problem_type
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-6)
    regression = perturbed(transformers.ViTForImageClassification(transformers.ViTConfig(**VIT, num_labels=1)))
    regression.save_pretrained(tmp_path / "regression")
    convert(str(tmp_path / "regression"), str(tmp_path / "ours-regression"), progress=False)
    ours = ht.TformerViTForImageClassification.from_pretrained(tmp_path / "ours-regression").eval()
    labels = torch.tensor([0.5, -1.0, 2.0, 0.0])
    with torch.no_grad():
        torch.testing.assert_close(ours(values, labels=labels).loss, regression(values, labels=labels).loss)
    assert ours.config.problem_type == "regression"


def test_with_teacher_averages_both_heads_and_trains_on_the_mean():
    model = build(ht.TformerViTForImageClassification, distillation_token=True, distillation_head=True)
    values, labels = pixels(2), torch.tensor([1, 0])
    out = model(values, labels=labels, output_hidden_states=True)
    final = out.hidden_states[-1]
    mean = (model.classifier(final[:, 0]) + model.distillation_classifier(final[:, 1])) / 2
    torch.testing.assert_close(out.logits, mean)
    torch.testing.assert_close(out.loss, F.cross_entropy(mean, labels))
    out.loss.backward()
    assert model.model.embeddings.distillation_token.grad.abs().sum() > 0


def test_a_classifier_checkpoint_loads_into_the_base_model_with_a_fresh_pooler(tmp_path):
    build(ht.TformerViTForImageClassification).save_pretrained(tmp_path)
    model, info = ht.TformerViTModel.from_pretrained(tmp_path, output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["pooler.dense.bias", "pooler.dense.weight"]


_FRESH_PROCESS = """
import json, sys, numpy as np, torch, transformers
from PIL import Image
from transformers import pipeline
rng = np.random.default_rng(0)
images = [Image.fromarray(rng.integers(0, 256, (20 + 7 * i, 30 + 5 * i, 3), dtype=np.uint8)) for i in range(3)]
base, classifier, results = {base!r}, {classifier!r}, {{}}
for folder, auto in ((base, "AutoModel"), (classifier, "AutoModelForImageClassification")):
    model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    data = torch.load(folder + "/reference.pt")
    with torch.no_grad():
        assert torch.equal(model(data["pixels"])[0], data["reference"]), auto
classify = pipeline("image-classification", model=classifier, trust_remote_code=True, top_k=3)
results["classified_one_by_one"] = [classify(image) for image in images]
results["classified_batched"] = classify(images, batch_size=3)
features_model = base
""" + FEATURE_PIPELINE_CODE


def test_remote_code_and_pipelines_from_a_saved_folder_in_a_fresh_process(tmp_path, hf_home):
    folders = {}
    for name, cls in (("base", ht.TformerViTModel), ("classifier", ht.TformerViTForImageClassification)):
        model = build(cls, id2label={0: "cat", 1: "dog", 2: "fox"})
        folder = tmp_path / name
        model.save_pretrained(folder)
        image_processor().save_pretrained(folder)
        values = pixels(2)
        with torch.no_grad():
            torch.save({"pixels": values, "reference": model(values)[0]}, folder / "reference.pt")
        folders[name] = (str(folder), model)
    stdout = run_without_hf_tformer(_FRESH_PROCESS.format(base=folders["base"][0], classifier=folders["classifier"][0]),
                                    cwd=tmp_path)
    results = json.loads(stdout.split("RESULTS", 1)[1])
    auto_map = json.loads((tmp_path / "base" / "config.json").read_text())["auto_map"]
    assert auto_map["AutoConfig"] == "configuration_tformer_vit.TformerViTConfig"
    assert auto_map["AutoModelForImageClassification"] == "modeling_tformer_vit.TformerViTForImageClassification"
    assert {"vision.py", "configuration_tformer_vit.py", "stack.py"} <= {p.name for p in (tmp_path / "base").glob("*.py")}

    # What the pipelines return is what the model computes here on the processor's pixels.
    inputs = image_processor()(images(3), return_tensors="pt")
    with torch.no_grad():
        probabilities = folders["classifier"][1](**inputs).logits.softmax(-1)
        base = folders["base"][1](**inputs)
    expected = [{["cat", "dog", "fox"][i]: float(p) for i, p in enumerate(row)} for row in probabilities]
    for key in ("classified_one_by_one", "classified_batched"):
        got = pipeline_scores(results[key])
        assert [sorted(g) for g in got] == [sorted(e) for e in expected]
        for g, e in zip(got, expected):
            assert all(abs(g[label] - e[label]) < 1e-5 for label in e), (key, g, e)
    check_feature_pipeline_results(results, base)
