"""CLIP (the dual encoder and each tower, with and without projection) -> hf_tformer and back, gated on parity over
random pixel values and random padded text."""

import json

import pytest
import torch
import transformers

import hf_tformer as ht
from clip_helpers import EOS_ID, SOURCES, TEXT, VISION, save_source, source_model
from hf_tformer_conversion import convert, to_native
from vision_helpers import pixels

OURS = {"clip": ht.TformerCLIPModel, "text": ht.TformerCLIPTextModel,
        "text-projection": ht.TformerCLIPTextModelWithProjection, "vision": ht.TformerCLIPVisionModel,
        "vision-projection": ht.TformerCLIPVisionModelWithProjection}
FAMILY = {"clip": "clip", "text": "clip_text_model", "text-projection": "clip_text_model",
          "vision": "clip_vision_model", "vision-projection": "clip_vision_model"}
TAGS = {"clip": "zero-shot-image-classification", "vision": "image-feature-extraction",
        "vision-projection": "image-feature-extraction"}


def _inputs(name: str) -> dict:
    """Inputs other than the gate's: padded text ending in the end-of-text token, and images."""
    ids = torch.tensor([[5, 60, 7, 300, EOS_ID, EOS_ID], [9, 11, 12, 13, 14, EOS_ID]])
    text = {"input_ids": ids, "attention_mask": (torch.arange(6) < torch.tensor([[5], [6]])).long()}
    return {"clip": {**text, "pixel_values": pixels(3, seed=7)}, "text": text, "text-projection": text}.get(
        name, {"pixel_values": pixels(3, seed=7)})


def _assert_same_outputs(actual, expected, name: str) -> None:
    fields = [field for field in ("logits_per_image", "text_embeds", "image_embeds", "pooler_output")
              if getattr(expected, field, None) is not None]
    if name != "clip":
        fields.append("last_hidden_state")
    for field in fields:
        torch.testing.assert_close(getattr(actual, field), getattr(expected, field), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(SOURCES))
def test_converts_with_parity_carries_the_processor_and_goes_back(tmp_path, name):
    folder = save_source(name, tmp_path / "source")
    report = convert(folder, str(tmp_path / "ours"), progress=False)
    assert report.parity.max_abs_diff <= 1e-5 and report.target_class == OURS[name].__name__
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(report.carried)
    processor = transformers.AutoProcessor.from_pretrained(tmp_path / "ours")
    assert type(processor).__name__ == "CLIPProcessor"
    assert f"pipeline_tag: {TAGS.get(name, 'feature-extraction')}" in (tmp_path / "ours" / "README.md").read_text()
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["model_type"] == {"clip": "hf_tformer_clip", "text": "hf_tformer_clip_text",
                                    "vision": "hf_tformer_clip_vision"}[name.split("-")[0]]

    source, ours = source_model(name), OURS[name].from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        _assert_same_outputs(ours(**_inputs(name)), source(**_inputs(name)), name)

    back_report = to_native(str(tmp_path / "ours"), str(tmp_path / "back"), FAMILY[name])
    assert back_report.architecture == type(source).__name__ and back_report.parity.max_abs_diff <= 1e-5
    assert not list((tmp_path / "back").glob("*.py"))  # a plain native checkpoint: no remote code
    back = type(source).from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        _assert_same_outputs(back(**_inputs(name)), source(**_inputs(name)), name)


def test_a_vision_config_with_a_rectangular_image_size_is_refused(tmp_path):
    folder = save_source("vision", tmp_path / "source")
    config = json.loads((tmp_path / "source" / "config.json").read_text())
    (tmp_path / "source" / "config.json").write_text(json.dumps({**config, "image_size": [32, 48]}))
    with pytest.raises(ValueError, match=r"image_size=\[32, 48\] is not supported; only square sizes"):
        convert(folder, str(tmp_path / "ours"), progress=False)
    assert not (tmp_path / "ours").exists()


@pytest.mark.parametrize("model, family, match", [
    (lambda: ht.TformerCLIPVisionModel(ht.TformerCLIPVisionConfig(**VISION, norm_type="rmsnorm")),
     "clip_vision_model", "norm_type"),
    (lambda: ht.TformerCLIPTextModel(ht.TformerCLIPTextConfig(**TEXT, hidden_act="swiglu")), "clip_text_model",
     "gated"),
    (lambda: ht.TformerCLIPTextModel(ht.TformerCLIPTextConfig(**TEXT)), "clip_vision_model",
     "TformerCLIPTextModel has no clip_vision_model counterpart"),
    (lambda: ht.TformerViTModel(ht.TformerViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1,
                                                    num_attention_heads=4, intermediate_size=64)), "clip",
     "TformerViTModel has no clip counterpart"),
])
def test_a_checkpoint_that_does_not_map_back_is_refused(tmp_path, model, family, match):
    model().save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError, match=match):
        to_native(str(tmp_path / "ours"), str(tmp_path / "back"), family)
    assert not (tmp_path / "back").exists()
