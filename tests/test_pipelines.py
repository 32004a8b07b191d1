"""Every pipeline task from a saved checkpoint folder (model + tokenizer + remote code), batched == one at a time."""

import numbers

import pytest
import torch
import transformers
from transformers import pipeline

import hf_tformer as ht
from hf_tformer_demo.toy_tokenizer import train_tokenizer

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5
removed_in_5 = pytest.mark.skipif(TRANSFORMERS_5, reason="pipeline task removed in transformers 5")
LABELS = {0: "NEGATIVE", 1: "POSITIVE", 2: "NEUTRAL"}
TEXTS = ["the quick brown fox", "paris is the capital of france and berlin is the capital of germany", "a model"]


def _sizes(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=32, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)


def checkpoint(tmp_path, model_class, tokenizer_kind: str, **config_overrides):
    tokenizer = train_tokenizer(tokenizer_kind)
    config_class = model_class.config_class
    layers = {"encoder_layers": 2, "decoder_layers": 2} if config_class.model_type.endswith("encoder_decoder") else {
        "num_hidden_layers": 2}
    torch.manual_seed(0)
    model = model_class(config_class(**_sizes(tokenizer), **layers, **config_overrides)).eval()
    folder = tmp_path / model_class.__name__
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def assert_batched_equals_single(pipe, inputs, **kwargs):
    batched = [_unwrap(item) for item in pipe(inputs, batch_size=len(inputs), **kwargs)]
    single = [_unwrap(pipe(item, **kwargs)) for item in inputs]
    assert_same_results(batched, single)
    return batched


def _unwrap(value):
    """Pipelines nest single results differently per task and call style; compare the innermost item lists."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def assert_same_results(actual, expected, path: str = "result") -> None:
    """Equal structure, labels and strings; scores within 1e-4 (batched padding changes the last float bits).

    Scores arrive as Python floats or numpy float32 depending on the task, so any real number is compared
    numerically, never by rounding (rounding flips at the boundary).
    """
    if isinstance(expected, numbers.Real) and not isinstance(expected, (bool, numbers.Integral)):
        assert isinstance(actual, numbers.Real), f"{path}: {actual!r} is not a number"
        assert abs(float(actual) - float(expected)) <= 1e-4, f"{path}: {actual} != {expected}"
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), f"{path}: keys {actual} != {expected}"
        for key in expected:
            assert_same_results(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(actual, (list, tuple)) and len(actual) == len(expected), f"{path}: {actual} != {expected}"
        for index, (a, e) in enumerate(zip(actual, expected)):
            assert_same_results(a, e, f"{path}[{index}]")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def test_feature_extraction(tmp_path):
    pipe = pipeline("feature-extraction", model=checkpoint(tmp_path, ht.TformerEncoderModel, "wordpiece"),
                    trust_remote_code=True)
    out = pipe(TEXTS[0])
    assert len(out[0][0]) == 32
    batched = pipe(TEXTS, batch_size=3)
    for text, features in zip(TEXTS, batched):  # batched rows carry padding positions after the real tokens
        alone = torch.tensor(pipe(text))
        torch.testing.assert_close(torch.tensor(features)[:, : alone.shape[1]], alone, atol=1e-5, rtol=1e-5)


def test_fill_mask(tmp_path):
    pipe = pipeline("fill-mask", model=checkpoint(tmp_path, ht.TformerEncoderForMaskedLM, "wordpiece"),
                    trust_remote_code=True)
    texts = ["the quick [MASK] fox", "paris is the [MASK] of france"]
    out = assert_batched_equals_single(pipe, texts, top_k=3)
    assert len(out[0]) == 3 and {"score", "token", "token_str", "sequence"} <= set(out[0][0])


def test_text_classification_uses_id2label(tmp_path):
    folder = checkpoint(tmp_path, ht.TformerEncoderForSequenceClassification, "wordpiece", num_labels=3,
                        id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
    pipe = pipeline("text-classification", model=folder, trust_remote_code=True)
    out = assert_batched_equals_single(pipe, TEXTS)
    assert all(item["label"] in LABELS.values() and 0 <= item["score"] <= 1 for item in out)


def test_token_classification_with_aggregation(tmp_path):
    folder = checkpoint(tmp_path, ht.TformerEncoderForTokenClassification, "wordpiece", num_labels=3,
                        id2label={0: "O", 1: "B-LOC", 2: "I-LOC"})
    pipe = pipeline("token-classification", model=folder, trust_remote_code=True, aggregation_strategy="simple")
    out = pipe(TEXTS, batch_size=3)
    assert_same_results(out, [pipe(text) for text in TEXTS])
    for entities, text in zip(out, TEXTS):
        for entity in entities:
            assert entity["entity_group"] in {"O", "LOC"}
            assert text[entity["start"]:entity["end"]].lower() == entity["word"].replace(" ", "") or entity["word"]


@removed_in_5
def test_question_answering(tmp_path):
    pipe = pipeline("question-answering", model=checkpoint(tmp_path, ht.TformerEncoderForQuestionAnswering,
                                                             "wordpiece"), trust_remote_code=True)
    context = "paris is the capital of france and berlin is the capital of germany"
    out = pipe(question="what is the capital of france", context=context)
    assert {"score", "start", "end", "answer"} <= set(out)
    assert context[out["start"]:out["end"]] == out["answer"]


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_text_generation(tmp_path, kind):
    pipe = pipeline("text-generation", model=checkpoint(tmp_path, ht.TformerDecoderForCausalLM, kind),
                    trust_remote_code=True)
    kwargs = dict(max_new_tokens=6, do_sample=False)
    single = [pipe(text, **kwargs)[0]["generated_text"] for text in TEXTS]
    pipe.tokenizer.padding_side = "left"
    batched = [out[0]["generated_text"] for out in pipe(TEXTS, batch_size=3, **kwargs)]
    assert batched == single
    assert all(text.startswith(prompt) for text, prompt in zip(single, TEXTS))


@removed_in_5
@pytest.mark.parametrize("task", ["text2text-generation", "summarization", "translation"])
def test_sequence_to_sequence_tasks(tmp_path, task):
    folder = checkpoint(tmp_path, ht.TformerEncoderDecoderForConditionalGeneration, "unigram")
    pipe = pipeline(task, model=folder, trust_remote_code=True)
    key = {"text2text-generation": "generated_text", "summarization": "summary_text",
           "translation": "translation_text"}[task]
    out = assert_batched_equals_single(pipe, TEXTS, max_new_tokens=6, do_sample=False)
    assert all(isinstance(item[key], str) for item in out)


def test_a_task_the_checkpoint_cannot_serve_is_a_clear_error(tmp_path):
    folder = checkpoint(tmp_path, ht.TformerDecoderForCausalLM, "bpe")
    with pytest.raises(ValueError, match="fill-mask|AutoModelForMaskedLM|Unrecognized"):
        pipeline("fill-mask", model=folder, trust_remote_code=True)


def test_a_checkpoint_without_tokenizer_is_a_clear_error(tmp_path):
    folder = tmp_path / "no_tokenizer"
    ht.TformerDecoderForCausalLM(ht.TformerDecoderConfig(vocab_size=50, hidden_size=16, num_attention_heads=2,
                                                         intermediate_size=32, num_hidden_layers=1)).save_pretrained(folder)
    # 4.57 reaches TformerTokenizerFast (auto_map) and its message; 5.x raises its own ValueError first.
    expected = "backend tokenizer" if TRANSFORMERS_5 else "holds no usable tokenizer"
    with pytest.raises(ValueError, match=expected):
        pipeline("text-generation", model=str(folder), trust_remote_code=True)
