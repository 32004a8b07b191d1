"""Stand-ins, written here, for the modules that transformers' test_modeling_common.py and test_configuration_common.py
import but the transformers sdist does not ship (upstream_tests.register_package wires them in):

- `.generation.test_utils.GenerationTesterMixin`: an empty marker class. ModelTesterMixin only checks that the tester
  of a model that can generate inherits it; transformers' own generation tests are not run here (ours are
  tests/test_generation.py and tests/test_modeling_tformer_*.py).
- `.utils.test_configuration_utils.config_common_kwargs`: each public field of the installed version's
  PretrainedConfig, set to a value other than its default (ConfigTester checks that a config keeps them).
- `.exporters.test_export.ExportTesterMixin` (transformers 5.x): an empty base class; transformers' torch.export tests
  are not run here (our ONNX export is tested in tests/export/).
"""

from transformers import PretrainedConfig


class GenerationTesterMixin:
    """A marker: ModelTesterMixin checks that the tester of a model that can generate inherits it."""


class ExportTesterMixin:
    """ModelTesterMixin's base on transformers 5.x; no tests of its own here."""


_NON_DEFAULT = {
    "return_dict": False,
    "output_hidden_states": True,
    "dtype": "float16",
    "use_bfloat16": True,
    "torchscript": True,
    "tf_legacy_loss": True,
    "pruned_heads": {"1": [0]},
    "tie_word_embeddings": False,
    "chunk_size_feed_forward": 3,
    "is_decoder": True,
    "add_cross_attention": True,
    "cross_attention_hidden_size": 24,
    "tie_encoder_decoder": True,
    "architectures": ["SomeModel"],
    "finetuning_task": "some-task",
    "id2label": {0: "a"},
    "label2id": {"a": 0},
    "tokenizer_class": "SomeTokenizerFast",
    "prefix": "a prefix",
    "bos_token_id": 5,
    "pad_token_id": 6,
    "eos_token_id": 7,
    "sep_token_id": 8,
    "decoder_start_token_id": 9,
    "task_specific_params": {"some-task": {}},
    "problem_type": "multi_label_classification",
    # generation fields (PretrainedConfig attributes on 4.57 only)
    "max_length": 30,
    "min_length": 2,
    "do_sample": True,
    "early_stopping": True,
    "num_beams": 4,
    "num_beam_groups": 2,
    "diversity_penalty": 0.3,
    "temperature": 0.5,
    "top_k": 7,
    "top_p": 0.8,
    "typical_p": 0.9,
    "repetition_penalty": 1.3,
    "length_penalty": 0.5,
    "no_repeat_ngram_size": 3,
    "encoder_no_repeat_ngram_size": 3,
    "bad_words_ids": [[4]],
    "num_return_sequences": 2,
    "output_scores": True,
    "return_dict_in_generate": True,
    "forced_bos_token_id": 3,
    "forced_eos_token_id": 4,
    "remove_invalid_values": True,
    "exponential_decay_length_penalty": (4, 1.5),
    "suppress_tokens": [2],
    "begin_suppress_tokens": [3],
}
_FIELDS = {name for name in vars(PretrainedConfig()) if not name.startswith("_")}
config_common_kwargs = {key: value for key, value in _NON_DEFAULT.items() if key in _FIELDS}

# module the upstream files import (relative to their package) -> {name: object} it must provide
MODULES = {
    "generation.test_utils": {"GenerationTesterMixin": GenerationTesterMixin},
    "utils.test_configuration_utils": {"config_common_kwargs": config_common_kwargs},
    "exporters.test_export": {"ExportTesterMixin": ExportTesterMixin},
}
