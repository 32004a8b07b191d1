"""transformers' ModelTesterMixin and ConfigTester on the CLIP-style dual encoder: the text tower, the image tower
(each with its projection) and the dual model (see upstream_tests.py)."""

import unittest

import hf_tformer as ht
from upstream_tests import CommonTestBase, PATCH_EMBEDDINGS, TextTester, not_applicable, upstream
from test_hf_common_vit import VISION_PROPERTIES, ViTTester

common, ConfigTester, _ = upstream()
TOWER_TESTS = ("test_attention_outputs", "test_hidden_states_output", "test_retain_grad_hidden_states_attentions",
               "test_inputs_embeds")


class CLIPTextTester(TextTester):
    def get_config(self) -> ht.TformerCLIPTextConfig:
        # eos = the vocabulary's last id, which ids_tensor never draws: each row pools at its argmax (legacy rule off)
        return ht.TformerCLIPTextConfig(**self.text_fields(), projection_dim=24, pad_token_id=0, bos_token_id=1,
                                        eos_token_id=self.vocab_size - 1)

    def inputs(self) -> dict:
        inputs = super().inputs()
        inputs["input_ids"][:, -1] = self.vocab_size - 1  # every row ends with end-of-text, where the tower pools
        inputs["attention_mask"][:, -1] = 1
        return inputs


class CLIPVisionTester(ViTTester):
    def get_config(self) -> ht.TformerCLIPVisionConfig:
        return ht.TformerCLIPVisionConfig(image_size=self.image_size, patch_size=self.patch_size,
                                          hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
                                          num_attention_heads=self.num_attention_heads, intermediate_size=37,
                                          projection_dim=24)


class CLIPTester:
    """Both towers' testers; the dual model's inputs are theirs together (text and image batches pair up)."""

    def __init__(self, parent, common) -> None:
        self.parent = parent
        self.text_model_tester = CLIPTextTester(parent, common)
        self.vision_model_tester = CLIPVisionTester(parent)
        self.batch_size = self.text_model_tester.batch_size
        self.seq_length = self.text_model_tester.seq_length
        self.hidden_size, self.num_hidden_layers, self.num_attention_heads = 32, 2, 4
        self.is_training = True

    def get_config(self) -> ht.TformerCLIPConfig:
        return ht.TformerCLIPConfig(text_config=self.text_model_tester.get_config().to_dict(),
                                    vision_config=self.vision_model_tester.get_config().to_dict(), projection_dim=24)

    def prepare_config_and_inputs_for_common(self) -> tuple:
        _, text = self.text_model_tester.prepare_config_and_inputs_for_common()
        _, image = self.vision_model_tester.prepare_config_and_inputs_for_common()
        return self.get_config(), {**text, **image, "return_loss": True}


class TformerCLIPTextCommonTest(CommonTestBase, common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (ht.TformerCLIPTextModel, ht.TformerCLIPTextModelWithProjection)

    def setUp(self):
        self.model_tester = CLIPTextTester(self, common)
        self.config_tester = ConfigTester(self, config_class=ht.TformerCLIPTextConfig, hidden_size=32,
                                          common_properties=["type_vocab_size", "num_hidden_layers",
                                                             "num_attention_heads"])


@not_applicable(PATCH_EMBEDDINGS)
class TformerCLIPVisionCommonTest(CommonTestBase, common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (ht.TformerCLIPVisionModel, ht.TformerCLIPVisionModelWithProjection)
    test_resize_embeddings = False  # no token table: the input embedding is the patch Conv2d, as in CLIP

    def setUp(self):
        self.model_tester = CLIPVisionTester(self)
        self.config_tester = ConfigTester(self, config_class=ht.TformerCLIPVisionConfig, has_text_modality=False,
                                          hidden_size=32, num_attention_heads=4, common_properties=VISION_PROPERTIES)


@not_applicable({test: (
    "the dual model's output nests each tower's (text_model_output / vision_model_output, as CLIPOutput); the "
    "tower tests above check hidden states, attentions and input embeddings") for test in TOWER_TESTS})
class TformerCLIPCommonTest(CommonTestBase, common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (ht.TformerCLIPModel,)
    _is_composite = True
    additional_model_inputs = ["pixel_values"]  # the dual model scores texts against images: it needs both

    def setUp(self):
        self.model_tester = CLIPTester(self, common)
        self.config_tester = ConfigTester(self, config_class=ht.TformerCLIPConfig, has_text_modality=False,
                                          common_properties=["logit_scale_init_value", "projection_dim"])
