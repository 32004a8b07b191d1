"""transformers' own common model tests as the package `transformers_upstream_tests`.

They come from the transformers sdist of the installed version (scripts/fetch_transformers_tests.py, run by
scripts/setup.sh) into .transformers-tests/<version>/; nothing of them is kept in this repository. The modules they
import that the sdist lacks are stand-ins of ours (upstream_shims.py). Without the fetched folder the tester modules
skip with the fetch command and test_hf_common_fetched.py fails.
"""

import importlib
import importlib.metadata
import re
import sys
import types
import unittest
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
UPSTREAM = HERE.parent.parent / ".transformers-tests" / importlib.metadata.version("transformers")
PACKAGE = "transformers_upstream_tests"
FILES = ("test_modeling_common.py", "test_configuration_common.py", "__init__.py")  # as the fetch script writes them
FETCHED = all((UPSTREAM / name).is_file() for name in FILES)
FETCH = (f"{UPSTREAM} is missing: fetch transformers' common tests for this environment's version with "
         "`<venv>/bin/python scripts/fetch_transformers_tests.py` (scripts/setup.sh does it for .venv and .venv5).")


def register_package() -> None:
    """The fetched folder as a package, and our stand-ins as the submodules its relative imports name."""
    if PACKAGE in sys.modules:
        return
    import upstream_shims

    package = types.ModuleType(PACKAGE)
    package.__path__ = [str(UPSTREAM)]
    sys.modules[PACKAGE] = package
    for dotted, names in upstream_shims.MODULES.items():
        parent, child = dotted.split(".")
        sys.modules.setdefault(f"{PACKAGE}.{parent}", types.ModuleType(f"{PACKAGE}.{parent}"))
        module = types.ModuleType(f"{PACKAGE}.{dotted}")
        module.__dict__.update(names)
        sys.modules[module.__name__] = module


# The auto class each of our models is registered for -> the task-mapping names ModelTesterMixin reads to pick
# labels (`_prepare_for_class`) and to leave base models out of the training tests, as it does for the native models
# listed there. Speech seq2seq models are also text seq2seq LMs: their labels are made like those (4.57's test module
# has no speech mapping; 5.x's makes no labels from it).
_TASK_MAPPINGS = {
    "AutoModel": ("MODEL_MAPPING_NAMES",),
    "AutoModelForMaskedLM": ("MODEL_FOR_MASKED_LM_MAPPING_NAMES",),
    "AutoModelForSequenceClassification": ("MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES",),
    "AutoModelForTokenClassification": ("MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES",),
    "AutoModelForQuestionAnswering": ("MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES",),
    "AutoModelForCausalLM": ("MODEL_FOR_CAUSAL_LM_MAPPING_NAMES",),
    "AutoModelForSeq2SeqLM": ("MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",),
    "AutoModelForImageClassification": ("MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES",),
    "AutoModelForSpeechSeq2Seq": (
        "MODEL_FOR_SPEECH_SEQ_2_SEQ_MAPPING_NAMES", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES",
    ),
}


def _declare_our_models(module: types.ModuleType) -> None:
    """Add every hf_tformer model class to the task mapping of the auto class it is registered for (its
    `_auto_class`), *in the upstream test module's namespace only* (copies: transformers' mappings stay as they are)."""
    import hf_tformer  # noqa: F401  (every variant's classes exist and are registered)
    from hf_tformer.pretrained import TformerPreTrainedModel

    pending = list(TformerPreTrainedModel.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        for mapping in _TASK_MAPPINGS.get(getattr(cls, "_auto_class", None), ()):
            if hasattr(module, mapping):
                names = getattr(module, mapping)
                setattr(module, mapping, type(names)({**names, cls.__name__: cls.__name__}))


def upstream() -> tuple[types.ModuleType, type, type]:
    """(transformers' test_modeling_common module, its ConfigTester, the GenerationTesterMixin it checks for), with
    our models declared in its task mappings. Skips the calling test module when they are not fetched (the failure
    is test_hf_common_fetched.py's)."""
    if not FETCHED:
        pytest.skip(FETCH, allow_module_level=True)
    register_package()
    modeling = importlib.import_module(f"{PACKAGE}.test_modeling_common")
    configuration = importlib.import_module(f"{PACKAGE}.test_configuration_common")
    _declare_our_models(modeling)
    return modeling, configuration.ConfigTester, modeling.GenerationTesterMixin


def not_applicable(reasons: dict[str, str]):
    """Class decorator: each common test named in `reasons` (and its parametrised variants, name_NN_...) reports
    its reason as a skip. For the tests that do not apply to our models; every reason says why."""

    def decorate(cls: type) -> type:
        for name in dir(cls):
            for test, reason in reasons.items():
                if name == test or re.fullmatch(rf"{test}_\d+(_\w*)?", name):
                    setattr(cls, name, unittest.skip(reason)(lambda self: None))
        return cls

    return decorate


NO_CHUNKING = {"test_feed_forward_chunking": (
    "our feed-forward is not chunked (config.chunk_size_feed_forward is not read): the test would compare two "
    "identical forwards")}
STRICT_LOADING = {"test_model_weights_reload_no_missing_tied_weights": (
    "our from_pretrained refuses a checkpoint that lacks backbone weights (ValueError, README 'Loading is strict') "
    "instead of initialising them at random; this test loads a file with no weights at all")}
# ModelTesterMixin sets sliding_window=2 on every config that has the field; ours all have it (one schema), and the
# encoder-decoder refuses local attention. Our own tests check sdpa == eager for it (tests/test_attention.py).
NO_LOCAL_ATTENTION = {"test_eager_matches_sdpa_inference": (
    "forces sliding_window=2, which the encoder-decoder refuses (no local attention there); sdpa == eager is "
    "checked by tests/test_attention.py")}


class CommonTestBase:
    """Put before ModelTesterMixin. Sets the flags of ModelTesterMixin that none of our models applies to, and
    skips (with the reason) the common tests in STRICT_LOADING and NO_CHUNKING; setUp makes `model_tester` and
    `config_tester`, as in transformers' own tests."""

    test_pruning = False  # no prune_heads(): transformers 5 removed head pruning, and we never had it
    test_head_masking = False  # no head_mask input (transformers 5 removed it; ours refuses it by name)

    def test_config(self) -> None:
        self.config_tester.run_common_tests()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        not_applicable({**STRICT_LOADING, **NO_CHUNKING})(cls)


# The tied output projection of the encoder-decoders is deliberately left whole (modeling_tformer_encoder_decoder.py).
UNSHARDED_TIED_HEAD = {"test_tied_head_has_a_tp_plan_entry": (
    "the encoder-decoder's tied head stays whole under tensor parallelism: transformers 5 vocab-shards only a base "
    "model's `embed_tokens`, and sharding the head would shard the shared table its lookups need (the seq2seq "
    "case of tests/test_tensor_parallel.py runs it whole)")}
# An image model's input embedding is its patch Conv2d (as ViT's), which this test requires to be an nn.Embedding.
PATCH_EMBEDDINGS = {"test_model_get_set_embeddings": (
    "asserts an nn.Embedding input embedding; an image model's is its patch Conv2d, as ViT's")}


# 4.57's ConfigTester builds Config(<n-th property>=n) for n = 0, 1, ...: our configs refuse invalid sizes at init
# (hidden_size=0, or one the heads do not divide), so the properties are listed in an order for which n is valid.
COMMON_PROPERTIES = ["type_vocab_size", "num_hidden_layers", "num_attention_heads"]


class TextTester:
    """A tiny text config's shared fields and a batch of (input_ids, attention_mask), as transformers' model testers
    build them; a variant's tester adds its config class and extra inputs."""

    def __init__(self, parent, common: types.ModuleType, batch_size: int = 2, seq_length: int = 7) -> None:
        self.parent, self.common = parent, common
        self.batch_size, self.seq_length = batch_size, seq_length
        self.vocab_size, self.hidden_size, self.num_hidden_layers, self.num_attention_heads = 99, 32, 2, 4
        self.is_training = True

    def text_fields(self) -> dict:
        return dict(vocab_size=self.vocab_size, hidden_size=self.hidden_size, num_hidden_layers=self.num_hidden_layers,
                    num_attention_heads=self.num_attention_heads, intermediate_size=37, max_position_embeddings=64,
                    num_labels=3)

    def get_config(self):
        raise NotImplementedError

    def inputs(self) -> dict:
        shape = [self.batch_size, self.seq_length]
        return {"input_ids": self.common.ids_tensor(shape, self.vocab_size),
                "attention_mask": self.common.random_attention_mask(shape)}

    def prepare_config_and_inputs_for_common(self) -> tuple:
        return self.get_config(), self.inputs()
