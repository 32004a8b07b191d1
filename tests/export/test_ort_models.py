"""Our ONNX Runtime model classes (hf_tformer_export.ort_*), on transformers 4.57 and 5.x alike, no optimum: every
single-graph task's outputs by name against PyTorch, transformers' pipelines over them, the decoder's generate()
(greedy, beam, sampling, left-padded batches, streaming; with and without past; GQA / MQA) against PyTorch's tokens,
loading in a process where hf_tformer cannot be imported, saving, and the errors for a missing graph or runtime.
(Seq2seq and Whisper: tests/export/test_ort_seq2seq.py, test_export_whisper.py.)"""

import pytest
import torch
import transformers
from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer, TextStreamer, pipeline

import hf_tformer as ht
from clip_helpers import TEXT, VISION, clip_processor, padded_texts
from conftest import run_without_hf_tformer, tiny_config
from ort_helpers import padded_text_inputs, saved_tiny_decoder
from hf_tformer_demo.toy_tokenizer import train_tokenizer
from hf_tformer_export.export import export_onnx
from hf_tformer_export.runtime import load_ort_model
from test_pipelines import LABELS, TEXTS, assert_same_results, checkpoint
from vision_helpers import LABELS as IMAGE_LABELS, image_processor, images, perturbed, pixels, tiny_vit_config

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5


def export(folder, task: str, out=None):
    """Export `folder` for `task` (validation: tests/export/test_export*.py) and load it in our class."""
    out = out or folder.parent / f"{folder.name}-onnx"
    export_onnx(str(folder), str(out), task, validate=False)
    return load_ort_model(out, task)


# --- every single-graph task: the PyTorch model's output fields, by name ----------------------------------------

CLIP_CONFIGS = {ht.TformerCLIPModel: lambda: ht.TformerCLIPConfig(text_config=TEXT, vision_config=VISION,
                                                                    projection_dim=24),
                ht.TformerCLIPTextModel: lambda: ht.TformerCLIPTextConfig(**TEXT),
                ht.TformerCLIPVisionModelWithProjection: lambda: ht.TformerCLIPVisionConfig(**VISION)}
# (PyTorch class, task, inputs, the fields our class returns)
HEADS = [
    (ht.TformerEncoderModel, "feature-extraction", "text", {"last_hidden_state"}),
    (ht.TformerEncoderForMaskedLM, "fill-mask", "text", {"logits"}),
    (ht.TformerEncoderForSequenceClassification, "text-classification", "text", {"logits"}),
    (ht.TformerEncoderForTokenClassification, "token-classification", "text", {"logits"}),
    (ht.TformerEncoderForQuestionAnswering, "question-answering", "text", {"start_logits", "end_logits"}),
    (ht.TformerDecoderModel, "feature-extraction", "left-padded text", {"last_hidden_state"}),
    (ht.TformerDecoderForSequenceClassification, "text-classification", "left-padded text", {"logits"}),
    (ht.TformerDecoderForCausalLM, "text-generation", "left-padded text", {"logits"}),
    (ht.TformerDecoderForCausalLM, "text-generation-with-past", "left-padded text", {"logits", "past_key_values"}),
    (ht.TformerViTModel, "feature-extraction", "images", {"last_hidden_state"}),
    (ht.TformerViTForImageClassification, "image-classification", "images", {"logits"}),
    (ht.TformerCLIPModel, "zero-shot-image-classification", "texts and images",
     {"logits_per_image", "logits_per_text", "text_embeds", "image_embeds"}),
    (ht.TformerCLIPModel, "feature-extraction", "texts and images",
     {"logits_per_image", "logits_per_text", "text_embeds", "image_embeds"}),
    (ht.TformerCLIPTextModel, "feature-extraction", "texts", {"last_hidden_state", "pooler_output"}),
    (ht.TformerCLIPVisionModelWithProjection, "feature-extraction", "images", {"image_embeds", "last_hidden_state"}),
]


def _head_model(model_class):
    torch.manual_seed(0)
    if model_class in CLIP_CONFIGS:
        return perturbed(model_class(CLIP_CONFIGS[model_class]()))
    if "ViT" in model_class.__name__:
        return model_class(tiny_vit_config(id2label=IMAGE_LABELS)).eval()
    variant = "encoder" if "Encoder" in model_class.__name__ else "decoder"
    return model_class(tiny_config(variant, num_labels=3)).eval()


def _head_inputs(kind: str) -> dict[str, torch.Tensor]:
    if kind == "images":
        return {"pixel_values": pixels(3)}
    if kind == "texts":  # the text tower's graph takes input_ids alone: rows of one length
        return {"input_ids": padded_texts((6, 6, 6))["input_ids"]}
    if kind == "texts and images":
        return {**padded_texts((4, 7, 2)), "pixel_values": pixels(2)}
    return padded_text_inputs(left_padded=kind == "left-padded text")


def assert_same_outputs(ort_output, torch_output, mask) -> None:
    """Every field of our output equals PyTorch's field of that name (on real tokens where rows are padded); a
    cache holds PyTorch's keys and values."""
    for name, actual in ort_output.items():
        expected = getattr(torch_output, name)
        if name == "past_key_values":
            for ours, theirs in zip(actual.layers, expected.layers):
                for tensor, reference in ((ours.keys, theirs.keys), (ours.values, theirs.values)):
                    real = mask.bool()[:, None, :].expand(-1, tensor.shape[1], -1)  # (batch, heads, positions)
                    torch.testing.assert_close(tensor[real], reference[real], atol=1e-4, rtol=1e-4)
            continue
        per_token = mask is not None and actual.dim() >= 2 and actual.shape[:2] == mask.shape
        real = mask.bool() if per_token else ...
        torch.testing.assert_close(actual[real], expected[real], atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.filterwarnings("ignore::hf_tformer_export.export.MissingPreprocessorWarning")  # no pipeline here
@pytest.mark.parametrize("model_class, task, inputs, fields", HEADS,
                         ids=[f"{c.__name__}-{t}" for c, t, _, _ in HEADS])
def test_every_head_returns_the_pytorch_models_outputs_by_name(tmp_path, hf_home, model_class, task, inputs,
                                                               fields):
    model = _head_model(model_class)
    model.save_pretrained(tmp_path / "ckpt")
    ort = export(tmp_path / "ckpt", task)
    assert type(ort).__module__.startswith("hf_tformer_export.ort_")
    values = _head_inputs(inputs)
    output = ort(**values)
    with torch.no_grad():
        expected = model(**values, **({"use_cache": True} if task.endswith("-with-past") else {}))
    assert set(output.keys()) == fields and fields <= set(expected.keys())
    mask = values.get("attention_mask") if "text" in inputs and "images" not in inputs else None
    assert_same_outputs(output, expected, mask)


# --- transformers' pipelines over our ORT models ----------------------------------------------------------------

ENCODER_LABELS = dict(num_labels=3, id2label=LABELS, label2id={v: k for k, v in LABELS.items()})
QUESTION = {"question": "what is the capital of france",
            "context": "paris is the capital of france and berlin is the capital of germany"}
# task -> (PyTorch class, tokenizer kind, config overrides, the task exported, pipeline inputs, call kwargs)
TEXT_PIPELINES = {
    "feature-extraction": (ht.TformerEncoderModel, "wordpiece", {}, "feature-extraction", TEXTS, {}),
    "fill-mask": (ht.TformerEncoderForMaskedLM, "wordpiece", {}, "fill-mask",
                  ["the quick [MASK] fox", "paris is the [MASK] of france"], {"top_k": 3}),
    "text-classification": (ht.TformerEncoderForSequenceClassification, "wordpiece", ENCODER_LABELS,
                            "text-classification", TEXTS, {"top_k": None}),
    "token-classification": (ht.TformerEncoderForTokenClassification, "wordpiece",
                             dict(num_labels=3, id2label={0: "O", 1: "B-LOC", 2: "I-LOC"}), "token-classification",
                             TEXTS, {"aggregation_strategy": "simple"}),
    "question-answering": (ht.TformerEncoderForQuestionAnswering, "wordpiece", {}, "question-answering",
                           [QUESTION], {}),
    "text-generation": (ht.TformerDecoderForCausalLM, "bpe", {}, "text-generation-with-past", TEXTS,
                        {"max_new_tokens": 6, "do_sample": False}),
}


@pytest.mark.parametrize("task", [
    task if task != "question-answering" else pytest.param(task, marks=pytest.mark.skipif(
        TRANSFORMERS_5, reason="transformers 5 removed the question-answering pipeline")) for task in TEXT_PIPELINES])
def test_text_pipelines_on_our_ort_models_give_pytorchs_results(tmp_path, hf_home, task):
    model_class, kind, overrides, exported, inputs, kwargs = TEXT_PIPELINES[task]
    folder = checkpoint(tmp_path, model_class, kind, **overrides)
    ort = export(tmp_path / model_class.__name__, exported, out=tmp_path / "onnx")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "onnx")  # the tokenizer carried into the export
    pipes = [pipeline(task, model=ort, tokenizer=tokenizer), pipeline(task, model=folder, trust_remote_code=True)]
    if task == "text-generation":
        for pipe in pipes:
            pipe.tokenizer.padding_side = "left"
    ours, theirs = ([pipe(item, **kwargs) for item in inputs] for pipe in pipes)
    assert_same_results(ours, theirs)
    if len(inputs) > 1 and task != "feature-extraction":  # a padded batch (features: padded rows are longer)
        assert_same_results(pipes[0](inputs, batch_size=len(inputs), **kwargs), theirs)


def test_image_classification_pipeline_on_our_ort_model(tmp_path, hf_home):
    folder = tmp_path / "ckpt"
    _head_model(ht.TformerViTForImageClassification).save_pretrained(folder)
    image_processor().save_pretrained(folder)
    ort = export(folder, "image-classification", out=tmp_path / "onnx")
    processor = AutoImageProcessor.from_pretrained(tmp_path / "onnx")  # the one saved next to the export
    ours = pipeline("image-classification", model=ort, image_processor=processor)
    theirs = pipeline("image-classification", model=str(folder), trust_remote_code=True)
    pictures = images(3)
    expected = theirs(pictures, top_k=3)
    assert_same_results(ours(pictures, top_k=3, batch_size=3), expected)
    assert {row["label"] for row in expected[0]} == set(IMAGE_LABELS.values())


def test_zero_shot_image_classification_pipeline_on_our_ort_model(tmp_path, hf_home):
    folder = tmp_path / "ckpt"
    _head_model(ht.TformerCLIPModel).save_pretrained(folder)
    clip_processor(tmp_path / "processor").save_pretrained(folder)
    ort = export(folder, "zero-shot-image-classification", out=tmp_path / "onnx")
    processor = AutoProcessor.from_pretrained(tmp_path / "onnx")
    ours = pipeline("zero-shot-image-classification", model=ort, tokenizer=processor.tokenizer,
                    image_processor=processor.image_processor)
    theirs = pipeline("zero-shot-image-classification", model=str(folder), trust_remote_code=True)
    labels = ["a photo of a cat", "dog", "fox"]
    assert_same_results(ours(images(2), candidate_labels=labels), theirs(images(2), candidate_labels=labels))


# --- the decoder's generate() ----------------------------------------------------------------------------------

# name -> (config overrides, exported task)
DECODERS = {"past": ({}, "text-generation-with-past"), "no-past": ({}, "text-generation"),
            "gqa": ({"num_key_value_heads": 2}, "text-generation-with-past"),
            "mqa": ({"num_key_value_heads": 1}, "text-generation-with-past")}
MODES = {"greedy": dict(do_sample=False), "beam": dict(do_sample=False, num_beams=3),
         "sample": dict(do_sample=True, top_k=20, temperature=0.8)}


@pytest.fixture(scope="module")
def decoders(tmp_path_factory) -> dict:
    """name -> (PyTorch model, our ORT model, export folder), tiny decoders with the toy BPE tokenizer's ids."""
    root = tmp_path_factory.mktemp("decoders")
    models = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(root / "hf_home"))
        for name, (overrides, task) in DECODERS.items():
            model = saved_tiny_decoder(root / name, **overrides)
            models[name] = (model, export(root / name, task), root / f"{name}-onnx")
    return models


def left_padded_prompts(prompt_length: int = 6, pads: tuple[int, ...] = (0, 2, 4)) -> dict[str, torch.Tensor]:
    ids = torch.randint(3, 160, (len(pads), prompt_length), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    for row, pad in enumerate(pads):
        mask[row, :pad] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", DECODERS)
def test_generate_gives_pytorchs_tokens_on_a_left_padded_batch(decoders, name, mode):
    pytorch, ort, _ = decoders[name]
    assert ort.use_cache == (name != "no-past") and ort.generation_config.use_cache == (name != "no-past")
    kwargs = dict(**left_padded_prompts(), max_new_tokens=10, min_new_tokens=10, **MODES[mode])
    tokens = []
    for model in (ort, pytorch):
        torch.manual_seed(0)  # sampling draws the same numbers from the same probabilities
        tokens.append(model.generate(**kwargs))
    assert tokens[0].shape == (3, 16) and torch.equal(*tokens)


def test_an_export_with_past_also_generates_without_the_cache(decoders):
    pytorch, ort, _ = decoders["gqa"]
    kwargs = dict(**left_padded_prompts(), max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert torch.equal(ort.generate(**kwargs, use_cache=False), pytorch.generate(**kwargs))


def test_an_export_without_past_refuses_a_cache_step_naming_the_fix(decoders):
    _, ort, _ = decoders["no-past"]
    with pytest.raises(ValueError, match="has no past keys / values.*use_cache=False"):
        ort(input_ids=torch.tensor([[5]]), attention_mask=torch.ones(1, 4, dtype=torch.long))


def test_text_streamer_prints_pytorchs_text(decoders, capsys):
    tokenizer = train_tokenizer("bpe")
    pytorch, ort, _ = decoders["past"]
    ids = tokenizer("the quick brown", return_tensors="pt")["input_ids"]
    printed = []
    for model in (ort, pytorch):
        capsys.readouterr()
        tokens = model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                                streamer=TextStreamer(tokenizer))
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1] and printed[0].strip() == tokenizer.decode(tokens[0]).strip()


# --- loading, saving, errors -----------------------------------------------------------------------------------

def test_an_export_loads_and_generates_where_hf_tformer_cannot_be_imported(decoders, tmp_path):
    pytorch, _, folder = decoders["gqa"]
    prompts = left_padded_prompts()
    expected = pytorch.generate(**prompts, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    torch.save({**prompts, "tokens": expected}, tmp_path / "reference.pt")
    code = f"""
    import sys
    import torch
    from hf_tformer_export import config_code, ort_causal_lm, ort_heads, ort_model, ort_seq2seq, runtime, tasks
    from hf_tformer_export.runtime import load_ort_model
    data = torch.load("{tmp_path / 'reference.pt'}")
    model = load_ort_model("{folder}", "text-generation-with-past")
    tokens = model.generate(input_ids=data["input_ids"], attention_mask=data["attention_mask"], max_new_tokens=8,
                            min_new_tokens=8, do_sample=False)
    assert torch.equal(tokens, data["tokens"]), (tokens, data["tokens"])
    assert not [name for name in sys.modules if name.split(".")[0] == "hf_tformer"]
    print("OK", type(model).__module__, model.config.model_type)
    """
    printed = run_without_hf_tformer(code, cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf_home")})
    assert "OK hf_tformer_export.ort_causal_lm hf_tformer_decoder" in printed


def test_a_variant_that_was_not_exported_names_the_files_there(decoders):
    _, _, folder = decoders["past"]
    with pytest.raises(ValueError, match=r"model_quantized\.onnx does not exist \(the folder has \['model\.onnx'\]\); "
                                         r"export the checkpoint .*--quantize"):
        load_ort_model(folder, "text-generation-with-past", variant="quantized")


def test_a_folder_that_is_neither_an_export_nor_a_cached_repo_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="'no/such-export' is neither a local folder nor a Hub repo"):
        load_ort_model("no/such-export", "fill-mask")


def test_save_pretrained_copies_a_loadable_export(decoders, tmp_path):
    _, ort, folder = decoders["mqa"]
    ort.save_pretrained(tmp_path / "copy")
    assert sorted(p.name for p in (tmp_path / "copy").iterdir()) == sorted(p.name for p in folder.iterdir())
    ort.save_pretrained(folder)  # into its own folder: nothing to copy, nothing lost
    assert (folder / "model.onnx").stat().st_size > 0
    copy = load_ort_model(tmp_path / "copy", "text-generation-with-past")
    kwargs = dict(**left_padded_prompts(), max_new_tokens=5, do_sample=False)
    assert torch.equal(copy.generate(**kwargs), ort.generate(**kwargs))


def test_loading_without_onnxruntime_names_the_package_to_install(decoders, monkeypatch):
    """Only onnxruntime is needed to run an export (onnx, for exporting, may be missing)."""
    import importlib.util

    _, _, folder = decoders["past"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "onnx" else real(name, *args))
    assert load_ort_model(folder, "text-generation-with-past").use_cache
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else real(name, *args))
    with pytest.raises(ValueError, match="need onnxruntime, which this environment lacks: pip install 'hf-tformer"):
        load_ort_model(folder, "text-generation-with-past")
