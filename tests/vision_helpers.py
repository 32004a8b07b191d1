"""Tiny ViT / DeiT checkpoints (random weights) and images for the vision tests."""

from pathlib import Path

import numpy as np
import torch
import transformers

import hf_tformer as ht

SIZE, PATCH = 32, 8
VIT = dict(image_size=SIZE, patch_size=PATCH, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
           intermediate_size=64)
LABELS = {0: "cat", 1: "dog", 2: "fox"}
# name -> (transformers class, extra config)
SOURCES = {
    "vit": ("ViTModel", {}),
    "vit-cls": ("ViTForImageClassification", dict(id2label=LABELS, label2id={v: k for k, v in LABELS.items()})),
    "deit": ("DeiTModel", {}),
    "deit-cls": ("DeiTForImageClassification", dict(id2label=LABELS)),
    "deit-teacher": ("DeiTForImageClassificationWithTeacher", dict(id2label=LABELS)),
}


def perturbed(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter moved off its init (norms at 1/0 and zero biases would hide a mapping mistake)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model.eval()


def source_model(name: str) -> torch.nn.Module:
    class_name, extra = SOURCES[name]
    cls = getattr(transformers, class_name)
    config_class = transformers.DeiTConfig if class_name.startswith("DeiT") else transformers.ViTConfig
    torch.manual_seed(0)
    return perturbed(cls(config_class(**VIT, **extra)))


def image_processor(size: int = SIZE) -> transformers.ViTImageProcessor:
    return transformers.ViTImageProcessor(size={"height": size, "width": size})


def save_source(name: str, folder: Path) -> str:
    """A source checkpoint with its preprocessor_config.json, as on the Hub."""
    source_model(name).save_pretrained(folder)
    image_processor().save_pretrained(folder)
    return str(folder)


def tiny_vit_config(**overrides) -> ht.TformerViTConfig:
    return ht.TformerViTConfig(**{**VIT, "num_labels": 3, **overrides})


def pixels(batch: int = 2, height: int = SIZE, width: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def images(count: int, seed: int = 0) -> list:
    """PIL images of different sizes with random content (the processor resizes them)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (20 + 7 * i, 30 + 5 * i, 3), dtype=np.uint8)) for i in range(count)]


# The end of a fresh-process script (tests of remote code): the image-feature-extraction pipeline over the folder
# `features_model` one image at a time, batched and pooled, added to `results` and printed after "RESULTS".
FEATURE_PIPELINE_CODE = """
features = pipeline("image-feature-extraction", model=features_model, trust_remote_code=True)
results["features_one_by_one"] = [features(image) for image in images]
results["features_batched"] = features(images, batch_size=3)
results["pooled"] = [features(image, pool=True) for image in images]
assert not any(name.startswith("hf_tformer") for name in sys.modules)
print("RESULTS" + json.dumps(results))
"""


def check_feature_pipeline_results(results: dict, expected) -> None:
    """What FEATURE_PIPELINE_CODE printed equals `expected` (the model's output on the processor's pixels)."""
    for key in ("features_one_by_one", "features_batched"):
        got = torch.tensor([row[0] for row in results[key]])  # each: [tokens x hidden] of a batch of one
        torch.testing.assert_close(got, expected.last_hidden_state, atol=1e-5, rtol=1e-5)
    pooled = torch.tensor([row[0] for row in results["pooled"]])
    torch.testing.assert_close(pooled, expected.pooler_output, atol=1e-5, rtol=1e-5)


def pipeline_scores(results: list) -> list[dict]:
    """Classification pipeline results -> one {label: score} per image."""
    return [{item["label"]: item["score"] for item in result} for result in results]
