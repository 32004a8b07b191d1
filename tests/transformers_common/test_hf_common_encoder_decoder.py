"""transformers' ModelTesterMixin and ConfigTester on the encoder-decoder (2017 Transformer / BART-shaped) and its
conditional-generation head (see upstream_tests.py)."""

import unittest

import hf_tformer as ht
from upstream_tests import CommonTestBase, NO_LOCAL_ATTENTION, UNSHARDED_TIED_HEAD, TextTester, not_applicable, upstream

common, ConfigTester, GenerationTesterMixin = upstream()


class EncoderDecoderTester(TextTester):
    def get_config(self) -> ht.TformerEncoderDecoderConfig:
        fields = self.text_fields()
        layers = fields.pop("num_hidden_layers")
        return ht.TformerEncoderDecoderConfig(**fields, encoder_layers=layers, decoder_layers=layers, pad_token_id=0,
                                              bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)

    def inputs(self) -> dict:
        inputs = super().inputs()
        shape = [self.batch_size, self.seq_length]
        decoder_mask = self.common.random_attention_mask(shape)
        decoder_mask[:, 0] = 1  # a right-padded target row always starts with its start token
        return {**inputs, "decoder_input_ids": self.common.ids_tensor(shape, self.vocab_size),
                "decoder_attention_mask": decoder_mask}


@not_applicable({**NO_LOCAL_ATTENTION, **UNSHARDED_TIED_HEAD})
class TformerEncoderDecoderCommonTest(
    CommonTestBase, common.ModelTesterMixin, GenerationTesterMixin, unittest.TestCase
):
    all_model_classes = (ht.TformerEncoderDecoderModel, ht.TformerEncoderDecoderForConditionalGeneration)
    is_encoder_decoder = True

    def setUp(self):
        self.model_tester = EncoderDecoderTester(self, common)
        self.config_tester = ConfigTester(
            self, config_class=ht.TformerEncoderDecoderConfig, hidden_size=32,
            common_properties=["type_vocab_size", "encoder_layers", "decoder_layers"],
        )
