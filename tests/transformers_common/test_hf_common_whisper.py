"""transformers' ModelTesterMixin and ConfigTester on the speech encoder-decoder (Whisper-shaped) and its
conditional-generation head (see upstream_tests.py)."""

import unittest

import hf_tformer as ht
from upstream_tests import CommonTestBase, NO_LOCAL_ATTENTION, UNSHARDED_TIED_HEAD, TextTester, not_applicable, upstream

common, ConfigTester, GenerationTesterMixin = upstream()
RESIZE_TESTS = ("test_resize_tokens_embeddings", "test_resize_embeddings_untied")
DEFAULT_TOKEN_IDS = {"test_model_forward_default_config_values": (
    "drops the token ids from the config: Whisper's defaults (50257, ...) lie outside this tester's 99-token "
    "vocabulary, which our config refuses at init (ValueError); it also feeds input_ids, not input_features")}


class WhisperTester(TextTester):
    """16 mel bins x 60 frames in (30 encoder positions after the stride-2 convolution), 7 decoder tokens."""

    def __init__(self, parent, common) -> None:
        super().__init__(parent, common)
        self.num_mel_bins, self.max_source_positions = 16, 30
        self.encoder_seq_length = self.key_length = self.max_source_positions
        self.decoder_seq_length = self.seq_length

    def get_config(self) -> ht.TformerWhisperConfig:
        fields = self.text_fields()
        layers = fields.pop("num_hidden_layers")
        fields.pop("max_position_embeddings")
        return ht.TformerWhisperConfig(**fields, encoder_layers=layers, decoder_layers=layers,
                                       num_mel_bins=self.num_mel_bins, max_source_positions=self.max_source_positions,
                                       max_target_positions=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                       decoder_start_token_id=1, begin_suppress_tokens=None)

    def inputs(self) -> dict:
        shape = [self.batch_size, self.seq_length]
        frames = [self.batch_size, self.num_mel_bins, 2 * self.max_source_positions]
        return {"input_features": self.common.floats_tensor(frames),
                "decoder_input_ids": self.common.ids_tensor(shape, self.vocab_size)}


@not_applicable({**NO_LOCAL_ATTENTION, **UNSHARDED_TIED_HEAD, **DEFAULT_TOKEN_IDS, **{test: (
    "edits inputs_dict['input_ids']; a speech model's inputs are input_features (its text is decoder_input_ids); "
    "the text encoder-decoder's tester resizes the same decoder and shared table") for test in RESIZE_TESTS}})
class TformerWhisperCommonTest(
    CommonTestBase, common.ModelTesterMixin, GenerationTesterMixin, unittest.TestCase
):
    all_model_classes = (ht.TformerWhisperModel, ht.TformerWhisperForConditionalGeneration)
    is_encoder_decoder = True

    def setUp(self):
        self.model_tester = WhisperTester(self, common)
        # has_text_modality=False: it would build Config(vocab_size=3), which Whisper's default token ids (50257, ...)
        # do not fit (refused at init); vocab_size is this tester's text_fields() all the same
        self.config_tester = ConfigTester(self, config_class=ht.TformerWhisperConfig, has_text_modality=False,
                                          hidden_size=32, num_attention_heads=4,
                                          common_properties=["type_vocab_size", "encoder_layers", "decoder_layers"])
