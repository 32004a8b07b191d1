"""The image front end: bad pixel_values and bad vision configs are refused with the value and the fix."""

import pytest
import torch

import hf_tformer as ht
from vision_helpers import pixels, tiny_vit_config


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ht.TformerViTForImageClassification(tiny_vit_config()).eval()


@pytest.mark.parametrize("values, kwargs, error, match", [
    (pixels(1)[:, :1], {}, ValueError, r"1 channels but num_channels=3; convert the images"),
    (pixels(1, 30, 30), {}, ValueError, r"30x30 is not a multiple of patch_size=8; resize or crop"),
    (pixels(1, 30, 30), {"interpolate_pos_encoding": True}, ValueError, r"30x30 is not a multiple of patch_size=8"),
    (pixels(1, 40, 32), {}, ValueError, r"40x32 differs from image_size=32; .*interpolate_pos_encoding=True"),
    (pixels(1)[0], {}, ValueError, r"shape \(3, 32, 32\); it must be \(batch, channels, height, width\)"),
    ((pixels(1) * 100).to(torch.uint8), {}, ValueError, r"dtype torch.uint8; it must be floating point"),
    (pixels(1).tolist(), {}, TypeError, r"pixel_values must be a torch.Tensor, got list"),
    (None, {}, ValueError, r"pixel_values is required"),
])
def test_bad_pixel_values_are_refused_with_the_fix(model, values, kwargs, error, match):
    with pytest.raises(error, match=match):
        model(values, **kwargs)


def test_other_sizes_run_with_interpolation_and_half_precision_inputs_are_cast(model):
    with torch.no_grad():
        assert model(pixels(1, 40, 24), interpolate_pos_encoding=True).logits.shape == (1, 3)
        torch.testing.assert_close(model(pixels(2).double()).logits, model(pixels(2)).logits)


@pytest.mark.parametrize("overrides, match", [
    (dict(image_size=30), "image_size=30 is not a multiple of patch_size=8"),
    (dict(patch_size=0), "patch_size=0 must be a positive integer"),
    (dict(num_channels="3"), "num_channels='3' must be a positive integer"),
    (dict(position_embedding_type="learned"), "position_embedding_type='learned'.*leave it at 'none'"),
    (dict(type_vocab_size=2), "type_vocab_size=2: images have no token types"),
    (dict(distillation_head=True), "distillation_head=True .* set distillation_token=True"),
    (dict(distillation_token=1), "distillation_token=1 must be True or False"),
    (dict(hidden_size=30), "hidden_size=30 is not divisible by num_attention_heads=4"),
])
def test_bad_vision_configs_name_the_field(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_vit_config(**overrides)


def test_vision_config_has_no_token_table_and_round_trips(tmp_path):
    config = tiny_vit_config(distillation_token=True)
    assert config.vocab_size is None and config.num_prefix_tokens == 2 and config.num_patches == 16
    config.save_pretrained(tmp_path)
    again = ht.TformerViTConfig.from_pretrained(tmp_path)
    assert again.to_dict() == config.to_dict()
    with pytest.raises(ValueError, match="holds a 'hf_tformer_vit' config"):
        ht.TformerEncoderConfig.from_pretrained(tmp_path)


def test_position_type_none_leaves_positions_to_the_front_end():
    """The seam: with "none" the stack's embeddings add no positions (and own no table); a text stack may use it too."""
    from conftest import build, random_ids, run

    model = build("decoder", position_embedding_type="none", num_hidden_layers=1)
    assert not [name for name, _ in model.decoder.embeddings.named_parameters()]
    ids = random_ids(1, 6)
    # One causal layer without positions: a token's state depends on the set of tokens up to it, not their order.
    swapped = ids[:, [1, 0, 2, 3, 4, 5]]
    torch.testing.assert_close(run(model, ids)[:, 2:], run(model, swapped)[:, 2:])
    vit = ht.TformerViTModel(tiny_vit_config())
    assert not [name for name, _ in vit.encoder.embeddings.named_parameters()]
