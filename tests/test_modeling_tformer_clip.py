"""The CLIP-style dual encoder: transformers' CLIP numerics (both towers, both pooling rules, other image sizes,
the contrastive loss), bad input, tracing, configs, and loading as remote code with the zero-shot and
image-feature pipelines in a fresh process without hf_tformer."""

import json

import pytest
import torch
import transformers

import hf_tformer as ht
from clip_helpers import EOS_ID, SIZE, TEXT, VISION, clip_processor, save_source, source_model
from conftest import run_without_hf_tformer
from hf_tformer_conversion import convert
from vision_helpers import (FEATURE_PIPELINE_CODE, check_feature_pipeline_results, images, perturbed,
                            pipeline_scores, pixels)

FEATURES_ARE_OUTPUTS = int(transformers.__version__.split(".")[0]) >= 5
PHRASES = ["a photo of a cat", "dog", "a fox photo", "cat dog fox"]


@pytest.fixture(scope="module")
def processor(tmp_path_factory):
    return clip_processor(tmp_path_factory.mktemp("processor"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(transformers' CLIPModel, ours converted from it)."""
    folder = tmp_path_factory.mktemp("clip")
    convert(save_source("clip", folder / "source"), str(folder / "ours"), progress=False)
    return source_model("clip"), ht.TformerCLIPModel.from_pretrained(folder / "ours").eval()


def build(cls=ht.TformerCLIPModel, attn_implementation: str = "sdpa", **overrides):
    torch.manual_seed(0)
    if cls is ht.TformerCLIPModel:
        config = ht.TformerCLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=24, **overrides)
    elif cls in (ht.TformerCLIPTextModel, ht.TformerCLIPTextModelWithProjection):
        config = ht.TformerCLIPTextConfig(**{**TEXT, **overrides})
    else:
        config = ht.TformerCLIPVisionConfig(**{**VISION, **overrides})
    config._attn_implementation = attn_implementation
    return perturbed(cls(config))


def test_matches_transformers_clip_on_padded_texts_and_other_image_sizes(pair, processor):
    source, ours = pair
    inputs = processor.tokenizer(PHRASES, padding=True, return_tensors="pt")
    assert not inputs["attention_mask"].all()  # right padding with the end-of-text token
    for height, width in [(SIZE, SIZE), (48, 40)]:
        values = pixels(3, height, width, seed=height)
        with torch.no_grad():
            expected = source(**inputs, pixel_values=values, interpolate_pos_encoding=True, return_loss=False,
                              output_hidden_states=True)
            actual = ours(**inputs, pixel_values=values, interpolate_pos_encoding=True, output_hidden_states=True)
        assert actual.logits_per_image.shape == (3, 4)
        for name in ("logits_per_image", "logits_per_text", "text_embeds", "image_embeds"):
            torch.testing.assert_close(getattr(actual, name), getattr(expected, name), atol=1e-5, rtol=1e-5)
        for tower in ("text_model_output", "vision_model_output"):
            ours_tower, theirs = getattr(actual, tower), getattr(expected, tower)
            torch.testing.assert_close(ours_tower.pooler_output, theirs.pooler_output, atol=1e-5, rtol=1e-5)
            assert len(ours_tower.hidden_states) == len(theirs.hidden_states) == 3
            for index in range(3):
                torch.testing.assert_close(ours_tower.hidden_states[index], theirs.hidden_states[index], atol=1e-5,
                                           rtol=1e-5)
        torch.testing.assert_close(actual.text_model_output.last_hidden_state[inputs["attention_mask"].bool()],
                                   expected.text_model_output.last_hidden_state[inputs["attention_mask"].bool()],
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(actual.vision_model_output.last_hidden_state,
                                   expected.vision_model_output.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_features_are_what_transformers_returns_on_this_version(pair, processor):
    source, ours = pair
    inputs = processor.tokenizer(PHRASES[:2], padding=True, return_tensors="pt")
    values = pixels(2)
    with torch.no_grad():
        pairs = [(ours.get_text_features(**inputs), source.get_text_features(**inputs)),
                 (ours.get_image_features(values), source.get_image_features(values))]
    for actual, expected in pairs:
        assert type(actual) is type(expected)
        if FEATURES_ARE_OUTPUTS:  # transformers 5: the tower's output, projected features as pooler_output
            actual, expected = actual.pooler_output, expected.pooler_output
        assert actual.shape == (2, 24)
        torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def test_contrastive_loss_matches_transformers_and_trains_the_logit_scale(pair):
    source, ours = pair
    ids, values = torch.randint(0, EOS_ID, (3, 6)), pixels(3, seed=4)
    ids[:, -1] = EOS_ID
    expected = source(input_ids=ids, pixel_values=values, return_loss=True)
    actual = ours(input_ids=ids, pixel_values=values, return_loss=True)
    torch.testing.assert_close(actual.loss, expected.loss, atol=1e-5, rtol=1e-5)
    actual.loss.backward()
    assert ours.logit_scale.grad is not None and ours.logit_scale.grad.abs() > 0
    ours.zero_grad()
    assert ours(input_ids=ids, pixel_values=values).loss is None


@pytest.mark.parametrize("eos_token_id", [2, EOS_ID])
def test_text_pooling_follows_both_eos_rules(tmp_path, eos_token_id):
    """eos_token_id=2 (configs before transformers' fix): the highest id of each row; else the first eos id."""
    source = perturbed(transformers.CLIPTextModel(transformers.CLIPTextConfig(**{**TEXT, "eos_token_id": eos_token_id})))
    source.save_pretrained(tmp_path / "source")
    convert(str(tmp_path / "source"), str(tmp_path / "ours"), progress=False)
    ours = ht.TformerCLIPTextModel.from_pretrained(tmp_path / "ours").eval()
    ids = torch.tensor([[5, 400, 7, EOS_ID, EOS_ID, EOS_ID], [9, 300, 8, 4, 1, 2]])  # row 1 has no eos
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        expected, actual = source(input_ids=ids, attention_mask=mask), ours(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(actual.pooler_output, expected.pooler_output, atol=1e-5, rtol=1e-5)
    rows = (3, 1) if eos_token_id == 2 else (3, 0)  # highest id of each row / first eos (none: the first token)
    torch.testing.assert_close(actual.pooler_output, actual.last_hidden_state[[0, 1], list(rows)])


def test_sdpa_and_eager_agree_and_padding_does_not_reach_real_tokens():
    ids = torch.tensor([[5, 60, 7, EOS_ID, EOS_ID], [9, 11, 300, 4, EOS_ID]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    outputs = [build(ht.TformerCLIPTextModel, implementation)(ids, attention_mask=mask)
               for implementation in ("sdpa", "eager")]
    torch.testing.assert_close(outputs[0].last_hidden_state, outputs[1].last_hidden_state, atol=1e-5, rtol=1e-5)
    alone = build(ht.TformerCLIPTextModel)(ids[:1, :4])
    torch.testing.assert_close(outputs[0].last_hidden_state[:1, :4], alone.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_towers_with_projection_and_their_shapes():
    text = build(ht.TformerCLIPTextModelWithProjection)
    out = text(torch.tensor([[5, 6, EOS_ID]]), output_attentions=True)
    assert out.text_embeds.shape == (1, 24) and out.attentions[0].shape == (1, 4, 3, 3)
    torch.testing.assert_close(out.text_embeds, text.text_projection(text.model(torch.tensor([[5, 6, EOS_ID]]))[1]))
    vision = build(ht.TformerCLIPVisionModelWithProjection)
    image_embeds, last = vision(pixels(2), return_dict=False)[:2]
    assert image_embeds.shape == (2, 24) and last.shape == (2, 1 + (SIZE // 8) ** 2, 40)
    assert vision.model.encoder.final_norm is None and vision.model.embeddings.projection.bias is None


@pytest.mark.parametrize("call, match", [
    (lambda m: m(input_ids=torch.tensor([[5, EOS_ID]])), r"pixel_values is None: TformerCLIPModel .* needs both"),
    (lambda m: m(pixel_values=pixels(1)), r"input_ids is None: TformerCLIPModel .* get_text_features"),
    (lambda m: m(), r"input_ids and pixel_values are None"),
    (lambda m: m(input_ids=torch.ones(1, 33, dtype=torch.long), pixel_values=pixels(1)),
     r"33 positions are needed but max_position_embeddings=32 .*; shorten the input \(truncation=True\)"),
    (lambda m: m(input_ids=torch.tensor([[5, EOS_ID]]), pixel_values=pixels(1)[:, :1]),
     r"1 channels but num_channels=3; convert the images"),
    (lambda m: m(input_ids=torch.tensor([[5, EOS_ID]]), pixel_values=pixels(1, 48, 48)),
     r"48x48 differs from image_size=32; .*interpolate_pos_encoding=True"),
    (lambda m: m.get_text_features(), r"input_ids is None: the text tower pools at the end-of-text token"),
    (lambda m: m.get_image_features(pixels(1, 30, 30)), r"30x30 is not a multiple of patch_size=8"),
])
def test_bad_input_names_the_value_and_the_fix(call, match):
    with pytest.raises(ValueError, match=match):
        call(build())


def test_traces_for_export_and_runs_other_shapes():
    model = build().requires_grad_(False)  # traced as constants
    ids, values = torch.tensor([[5, 6, 7, EOS_ID], [8, 9, EOS_ID, EOS_ID]]), pixels(3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])

    def logits_per_image(input_ids, pixel_values, attention_mask):
        return model(input_ids, pixel_values, attention_mask, return_dict=False)[0]  # (images, texts)

    with torch.no_grad():
        traced = torch.jit.trace(logits_per_image, (ids, values, mask), check_trace=False)
        other = (torch.tensor([[5, 60, 70, 80, 9, EOS_ID]]), pixels(2, seed=9), torch.ones(1, 6, dtype=torch.long))
        torch.testing.assert_close(traced(*other), model(*other).logits_per_image)


@pytest.mark.parametrize("build_config, match", [
    (lambda: ht.TformerCLIPConfig(projection_dim=0), "projection_dim=0 must be a positive integer"),
    (lambda: ht.TformerCLIPConfig(logit_scale_init_value="2.6"), "logit_scale_init_value='2.6' must be a number"),
    (lambda: ht.TformerCLIPConfig(text_config=[1]), r"text_config=\[1\] must be a dict or a TformerCLIPTextConfig"),
    (lambda: ht.TformerCLIPTextConfig(position_embedding_type="rotary"), "position_embedding_type='rotary'"),
    (lambda: ht.TformerCLIPTextConfig(eos_token_id=None), "eos_token_id=None: CLIP's text tower pools at"),
    (lambda: ht.TformerCLIPVisionConfig(distillation_token=True), "distillation_token=True: CLIP's image tower"),
    (lambda: ht.TformerCLIPVisionConfig(patch_embedding_bias=None), "patch_embedding_bias=None must be True or"),
    (lambda: ht.TformerCLIPConfig(vision_config={"hidden_act": "tanh"}), "hidden_act='tanh' is not supported"),
])
def test_bad_configs_name_the_field(build_config, match):
    with pytest.raises(ValueError, match=match):
        build_config()


def test_config_round_trips_with_its_towers(tmp_path):
    config = ht.TformerCLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=24)
    config.save_pretrained(tmp_path)
    again = transformers.AutoConfig.from_pretrained(tmp_path)
    assert isinstance(again.text_config, ht.TformerCLIPTextConfig)
    assert isinstance(again.vision_config, ht.TformerCLIPVisionConfig)
    assert {**again.to_dict(), "_name_or_path": ""} == {**config.to_dict(), "_name_or_path": ""}
    assert (again.text_config.hidden_act, again.vision_config.embedding_layernorm) == ("quick_gelu", True)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["text_config"]["model_type"] == "hf_tformer_clip_text" and saved["projection_dim"] == 24
    # a tower's config reads its part of the dual encoder's config.json, as CLIPTextConfig.from_pretrained does
    assert ht.TformerCLIPTextConfig.from_pretrained(tmp_path).to_dict() == config.text_config.to_dict()
    assert ht.TformerCLIPVisionConfig.from_pretrained(tmp_path).to_dict() == config.vision_config.to_dict()


_FRESH_PROCESS = """
import json, sys, numpy as np, torch, transformers
from PIL import Image
from transformers import pipeline
rng = np.random.default_rng(0)
images = [Image.fromarray(rng.integers(0, 256, (20 + 7 * i, 30 + 5 * i, 3), dtype=np.uint8)) for i in range(3)]
dual, vision, text, results = {dual!r}, {vision!r}, {text!r}, {{}}
for folder, auto, kind in ((dual, "AutoModelForZeroShotImageClassification", "TformerCLIPModel"),
                           (dual, "AutoModel", "TformerCLIPModel"), (vision, "AutoModel", "TformerCLIPVisionModel"),
                           (text, "AutoModel", "TformerCLIPTextModelWithProjection")):
    model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules") and type(model).__name__ == kind, type(model)
    data = torch.load(folder + "/reference.pt")
    with torch.no_grad():
        difference = float((model(**data["inputs"])[0] - data["reference"]).abs().max())
        assert difference <= 1e-6, (folder, auto, difference)
processor = transformers.AutoProcessor.from_pretrained(dual)
results["processor"] = type(processor).__name__
labels = ["cat", "dog", "fox photo"]
classify = pipeline("zero-shot-image-classification", model=dual, trust_remote_code=True)
results["one_by_one"] = [classify(image, candidate_labels=labels) for image in images]
results["batched"] = classify(images, candidate_labels=labels, batch_size=3)
features_model = vision
""" + FEATURE_PIPELINE_CODE


def test_remote_code_processor_and_pipelines_from_saved_folders_in_a_fresh_process(tmp_path, hf_home, processor):
    models = {"dual": build(), "vision": build(ht.TformerCLIPVisionModel),
              "text": build(ht.TformerCLIPTextModelWithProjection)}
    sample = {"dual": {"input_ids": torch.tensor([[5, 6, EOS_ID]]), "pixel_values": pixels(2)},
              "vision": {"pixel_values": pixels(2)}, "text": {"input_ids": torch.tensor([[5, 6, EOS_ID]])}}
    folders = {}
    for name, model in models.items():
        folders[name] = tmp_path / name
        model.save_pretrained(folders[name])
        processor.save_pretrained(folders[name])
        # The reference comes from the saved weights. Even so, with one thread the fresh process's outputs differ in
        # the last bits (~1e-7: the CPU GEMV path depends on buffer alignment), so equality is up to 1e-6.
        reloaded = type(model).from_pretrained(folders[name]).eval()
        with torch.no_grad():
            torch.save({"inputs": sample[name], "reference": reloaded(**sample[name])[0]}, folders[name] / "reference.pt")
    stdout = run_without_hf_tformer(_FRESH_PROCESS.format(**{k: str(v) for k, v in folders.items()}), cwd=tmp_path)
    results = json.loads(stdout.split("RESULTS", 1)[1])
    assert results["processor"] == "CLIPProcessor"
    auto_map = json.loads((folders["dual"] / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModelForZeroShotImageClassification"] == "modeling_tformer_clip.TformerCLIPModel"
    assert {"vision.py", "configuration_tformer_clip.py", "stack.py"} <= {p.name for p in folders["dual"].glob("*.py")}

    # What the zero-shot pipeline returns is softmax(logits_per_image) over the prompts it builds from the labels.
    labels = ["cat", "dog", "fox photo"]
    prompts = processor.tokenizer([f"This is a photo of {label}." for label in labels], padding=True,
                                  return_tensors="pt")
    with torch.no_grad():
        probabilities = models["dual"](**prompts, **processor.image_processor(images(3), return_tensors="pt"))
    expected = [dict(zip(labels, row.tolist())) for row in probabilities.logits_per_image.softmax(-1)]
    for key in ("one_by_one", "batched"):
        got = pipeline_scores(results[key])
        for g, e in zip(got, expected):
            assert sorted(g) == sorted(e) and all(abs(g[label] - e[label]) < 1e-5 for label in e), (key, g, e)
    with torch.no_grad():
        base = models["vision"](**processor.image_processor(images(3), return_tensors="pt"))
    check_feature_pipeline_results(results, base)
