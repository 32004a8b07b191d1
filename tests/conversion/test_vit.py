"""ViT / DeiT -> the image encoder and back, gated on parity over random pixel values."""

import json

import pytest
import torch
import transformers

import hf_tformer as ht
from hf_tformer_conversion import convert, to_native
from hf_tformer_conversion.__main__ import main as cli
from vision_helpers import SOURCES, pixels, save_source, source_model, tiny_vit_config

OURS = {"vit": ht.TformerViTModel, "vit-cls": ht.TformerViTForImageClassification, "deit": ht.TformerViTModel,
        "deit-cls": ht.TformerViTForImageClassification, "deit-teacher": ht.TformerViTForImageClassification}
TAGS = {"vit": "image-feature-extraction", "deit": "image-feature-extraction"}


@pytest.mark.parametrize("name", list(SOURCES))
def test_converts_with_parity_and_carries_the_image_processor(tmp_path, name):
    folder = save_source(name, tmp_path / "source")
    report = convert(folder, str(tmp_path / "ours"), progress=False)
    assert report.parity.max_abs_diff <= 1e-5 and report.target_class == OURS[name].__name__
    assert "preprocessor_config.json" in report.carried
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path / "ours")
    assert type(processor).__name__.startswith("ViTImageProcessor")
    card = (tmp_path / "ours" / "README.md").read_text()
    assert f"pipeline_tag: {TAGS.get(name, 'image-classification')}" in card
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["model_type"] == "hf_tformer_vit"
    assert config["distillation_token"] == name.startswith("deit")
    assert config["distillation_head"] == (name == "deit-teacher")

    source, ours = source_model(name), OURS[name].from_pretrained(tmp_path / "ours").eval()
    values = pixels(3, seed=7)  # not the gate's inputs
    with torch.no_grad():
        expected, actual = source(values), ours(values)
    torch.testing.assert_close(actual[0], expected[0], atol=1e-5, rtol=1e-5)
    if name in ("vit", "deit"):
        torch.testing.assert_close(actual.pooler_output, expected.pooler_output, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(SOURCES))
def test_to_native_and_back_computes_the_same_function(tmp_path, name):
    folder = save_source(name, tmp_path / "source")
    convert(folder, str(tmp_path / "ours"), progress=False)
    family = "deit" if name.startswith("deit") else "vit"
    report = to_native(str(tmp_path / "ours"), str(tmp_path / "back"), family)
    source = source_model(name)
    assert report.architecture == type(source).__name__ and report.parity.max_abs_diff <= 1e-5
    assert not list((tmp_path / "back").glob("*.py"))  # a plain native checkpoint: no remote code
    assert (tmp_path / "back" / "preprocessor_config.json").exists()
    back = type(source).from_pretrained(tmp_path / "back").eval()
    values = pixels(2, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(back(values)[0], source(values)[0], atol=1e-5, rtol=1e-5)


def test_the_cli_converts_deit_with_teacher(tmp_path, capsys):
    folder = save_source("deit-teacher", tmp_path / "source")
    assert cli([folder, str(tmp_path / "ours"), "--no-progress"]) == 0
    assert "TformerViTForImageClassification" in capsys.readouterr().out


@pytest.mark.parametrize("edit, match", [
    ({"qkv_bias": False}, "qkv_bias=False"),
    ({"pooler_act": "relu"}, "pooler_act='relu'"),
    ({"pooler_output_size": 16}, "pooler_output_size=16"),
    ({"image_size": [32, 48]}, r"image_size=\[32, 48\]"),
    ({"patch_size": 12, "image_size": 30}, "image_size=30 is not a multiple of patch_size=12"),
])
def test_configs_we_cannot_represent_are_refused_by_name(tmp_path, edit, match):
    folder = save_source("vit", tmp_path / "source")
    config = json.loads((tmp_path / "source" / "config.json").read_text())
    (tmp_path / "source" / "config.json").write_text(json.dumps({**config, **edit}))
    with pytest.raises(ValueError, match=match):
        convert(folder, str(tmp_path / "ours"), progress=False)
    assert not (tmp_path / "ours").exists()


@pytest.mark.parametrize("overrides, family, match", [
    ({}, "deit", "distillation_token=False: deit always has"),
    ({"distillation_token": True}, "vit", "distillation_token=True: vit has no"),
    ({"norm_type": "rmsnorm"}, "vit", "norm_type"),
    ({"embedding_layernorm": True}, "vit", "embedding_layernorm"),
    ({"hidden_act": "swiglu"}, "vit", "gated"),
])
def test_a_config_that_does_not_map_back_is_refused(tmp_path, overrides, family, match):
    ht.TformerViTForImageClassification(tiny_vit_config(**overrides)).save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError, match=match):
        to_native(str(tmp_path / "ours"), str(tmp_path / "back"), family)
    assert not (tmp_path / "back").exists()


def test_a_text_checkpoint_is_not_an_image_encoder(tmp_path):
    from conftest import tiny_config

    ht.TformerEncoderModel(tiny_config("encoder")).save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError, match="TformerEncoderModel has no vit counterpart"):
        to_native(str(tmp_path / "ours"), str(tmp_path / "back"), "vit")
