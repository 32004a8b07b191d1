"""transformers' ModelTesterMixin and ConfigTester on the decoder (Llama-shaped: rotary, GQA, RMSNorm, SwiGLU) and its
heads (see upstream_tests.py)."""

import unittest

import hf_tformer as ht
from upstream_tests import CommonTestBase, COMMON_PROPERTIES, TextTester, not_applicable, upstream

common, ConfigTester, GenerationTesterMixin = upstream()


class DecoderTester(TextTester):
    def get_config(self) -> ht.TformerDecoderConfig:
        return ht.TformerDecoderConfig(
            **self.text_fields(), num_key_value_heads=2, position_embedding_type="rotary", norm_type="rmsnorm",
            hidden_act="swiglu", pad_token_id=0, bos_token_id=1, eos_token_id=2,
        )


@not_applicable({"test_output_router_logits_from_config": (
    "this tester's decoder is dense: its outputs carry router logits only for a sparse MoE config (num_experts), "
    "though the one config schema has output_router_logits; tests/test_moe.py checks MoE router logits")})
class TformerDecoderCommonTest(
    CommonTestBase, common.ModelTesterMixin, GenerationTesterMixin, unittest.TestCase
):
    all_model_classes = (
        ht.TformerDecoderModel, ht.TformerDecoderForCausalLM, ht.TformerDecoderForSequenceClassification
    )

    def setUp(self):
        self.model_tester = DecoderTester(self, common)
        self.config_tester = ConfigTester(
            self, config_class=ht.TformerDecoderConfig, hidden_size=32, common_properties=COMMON_PROPERTIES
        )
