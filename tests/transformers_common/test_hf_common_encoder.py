"""transformers' ModelTesterMixin and ConfigTester on the encoder (BERT-shaped) and its task heads (see
upstream_tests.py)."""

import unittest

import hf_tformer as ht
from upstream_tests import CommonTestBase, COMMON_PROPERTIES, TextTester, upstream

common, ConfigTester, _ = upstream()


class EncoderTester(TextTester):
    def get_config(self) -> ht.TformerEncoderConfig:
        return ht.TformerEncoderConfig(**self.text_fields(), type_vocab_size=2, pad_token_id=0)

    def inputs(self) -> dict:
        return {**super().inputs(), "token_type_ids": self.common.ids_tensor([self.batch_size, self.seq_length], 2)}


class TformerEncoderCommonTest(CommonTestBase, common.ModelTesterMixin, unittest.TestCase):
    all_model_classes = (
        ht.TformerEncoderModel,
        ht.TformerEncoderForMaskedLM,
        ht.TformerEncoderForSequenceClassification,
        ht.TformerEncoderForTokenClassification,
        ht.TformerEncoderForQuestionAnswering,
    )

    def setUp(self):
        self.model_tester = EncoderTester(self, common)
        self.config_tester = ConfigTester(
            self, config_class=ht.TformerEncoderConfig, hidden_size=32, common_properties=COMMON_PROPERTIES
        )
