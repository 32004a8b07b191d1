"""transformers' ModelTesterMixin and ConfigTester on the image encoder (ViT-shaped) and its classifier (see
upstream_tests.py)."""

import unittest

import hf_tformer as ht
from upstream_tests import CommonTestBase, PATCH_EMBEDDINGS, not_applicable, upstream

common, ConfigTester, _ = upstream()
# 4.57's ConfigTester builds Config(<n-th property>=n) for n = 0, 1, ...: an order for which n is a valid value
VISION_PROPERTIES = ["attention_dropout", "num_hidden_layers", "num_attention_heads"]


class ViTTester:
    """A 32 x 32 image in 8 x 8 patches: 16 patch tokens + [CLS]."""

    def __init__(self, parent, batch_size: int = 2, image_size: int = 32, patch_size: int = 8) -> None:
        self.parent, self.batch_size, self.image_size, self.patch_size = parent, batch_size, image_size, patch_size
        self.num_channels, self.hidden_size, self.num_hidden_layers, self.num_attention_heads = 3, 32, 2, 4
        self.seq_length = (image_size // patch_size) ** 2 + 1
        self.is_training = True

    def get_config(self) -> ht.TformerViTConfig:
        return ht.TformerViTConfig(image_size=self.image_size, patch_size=self.patch_size,
                                   hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
                                   num_attention_heads=self.num_attention_heads, intermediate_size=37, num_labels=3)

    def prepare_config_and_inputs_for_common(self) -> tuple:
        pixels = common.floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        return self.get_config(), {"pixel_values": pixels}


@not_applicable(PATCH_EMBEDDINGS)
class TformerViTCommonTest(CommonTestBase, common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (ht.TformerViTModel, ht.TformerViTForImageClassification)
    test_resize_embeddings = False  # no token table: the input embedding is the patch Conv2d, as in ViT

    def setUp(self):
        self.model_tester = ViTTester(self)
        self.config_tester = ConfigTester(self, config_class=ht.TformerViTConfig, has_text_modality=False,
                                          hidden_size=32, num_attention_heads=4, common_properties=VISION_PROPERTIES)
