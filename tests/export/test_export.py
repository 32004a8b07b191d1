"""ONNX export (our torch.onnx exporter, no optimum) for every task of every variant, validated against PyTorch with
ONNX Runtime; on transformers 4.57 also optimum's own export / CLI after register() (needs_optimum)."""

import pytest
import torch

import hf_tformer as ht
from conftest import run_without_hf_tformer, tiny_config
from ort_helpers import assert_ort_greedy_equals_pytorch
from hf_tformer_conversion.tolerance import ToleranceRule
from hf_tformer_export.__main__ import main as cli
from hf_tformer_export.export import QUANTIZED_FILE, export_onnx
from hf_tformer_export.runtime import CudaUnavailableWarning, cuda_unavailable_reason, load_ort_model, resolve_provider

HEADS = {
    "feature-extraction": ht.TformerEncoderModel, "fill-mask": ht.TformerEncoderForMaskedLM,
    "text-classification": ht.TformerEncoderForSequenceClassification,
    "token-classification": ht.TformerEncoderForTokenClassification,
    "question-answering": ht.TformerEncoderForQuestionAnswering,
}
DECODER_HEADS = {"text-generation": ht.TformerDecoderForCausalLM, "text-generation-with-past": ht.TformerDecoderForCausalLM,
                 "text-classification": ht.TformerDecoderForSequenceClassification}
SEQ2SEQ_HEADS = {"text2text-generation": ht.TformerEncoderDecoderForConditionalGeneration,
                 "text2text-generation-with-past": ht.TformerEncoderDecoderForConditionalGeneration}
CASES = ([("encoder", task, cls) for task, cls in HEADS.items()]
         + [("decoder", task, cls) for task, cls in DECODER_HEADS.items()]
         + [("encoder_decoder", task, cls) for task, cls in SEQ2SEQ_HEADS.items()])


def save(tmp_path, variant, model_class, name="ckpt", **overrides):
    torch.manual_seed(0)
    folder = tmp_path / name
    model_class(tiny_config(variant, **overrides)).eval().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("variant, task, model_class", CASES, ids=[f"{v}-{t}" for v, t, _ in CASES])
def test_every_task_exports_fused_and_matches_pytorch(tmp_path, hf_home, variant, task, model_class):
    folder = save(tmp_path, variant, model_class)
    report = export_onnx(str(folder), str(tmp_path / "onnx"), task)
    check = report.validation[0]
    assert check.max_abs_diff <= 1e-4
    if "generation" in task:
        assert check.greedy_identical is True
    # 2 layers each: encoder self attention packs into Attention (projection included); causal self attention and
    # cross attention are MultiHeadAttention (one decoder pass per graph: our exports have no merged decoder)
    packed = sum(counts.get("Attention", 0) for counts in report.node_counts.values())
    assert packed == {"encoder": 2, "decoder": 0, "encoder_decoder": 2}[variant]
    per_decoder_pass = {"encoder": 0, "decoder": 2, "encoder_decoder": 4}[variant]
    for name, counts in report.node_counts.items():
        fused = counts.get("MultiHeadAttention", 0)
        if variant == "encoder" or name == "encoder_model.onnx":
            assert fused == 0, name
        else:
            assert fused > 0 and fused % per_decoder_pass == 0, (name, fused)
    assert not any(counts.get("Softmax") for counts in report.node_counts.values())  # every attention fused
    assert not any(name.endswith("_merged.onnx") for name in report.files)


@pytest.mark.parametrize("overrides, packed", [
    ({}, 2),
    ({"attention_bias": False}, 2),
    ({"position_embedding_type": "rotary"}, 0),  # rotary: the Attention op cannot rotate; MultiHeadAttention
    ({"num_key_value_heads": 2}, 0),  # GQA: the packed weight layout wants one kv head per query head
    ({"position_embedding_type": "relative"}, 0),  # T5 bias per head and query: MultiHeadAttention's attention_bias
    ({"sliding_window": 3}, 0),  # local attention: a banded mask, not key padding
], ids=["bias", "no-bias", "rotary", "gqa", "relative", "sliding"])
def test_encoder_packs_self_attention_only_where_the_op_matches(tmp_path, hf_home, overrides, packed):
    folder = save(tmp_path, "encoder", ht.TformerEncoderForSequenceClassification, **overrides)
    report = export_onnx(str(folder), str(tmp_path / "onnx"), "text-classification")
    counts = report.node_counts["model.onnx"]
    assert (counts.get("Attention", 0), counts.get("MultiHeadAttention", 0)) == (packed, 2 - packed)
    assert report.validation[0].max_abs_diff <= 1e-4  # padded rows included


@pytest.mark.parametrize("kv_heads", [2, 1], ids=["gqa", "mqa"])
@pytest.mark.parametrize("attention", ["fused", "plain"])
def test_gqa_and_mqa_decoders_generate_pytorchs_tokens_on_ort(tmp_path, hf_home, kv_heads, attention):
    folder = save(tmp_path, "decoder", ht.TformerDecoderForCausalLM, num_key_value_heads=kv_heads)
    export_onnx(str(folder), str(tmp_path / "onnx"), "text-generation-with-past", attention=attention)
    ort = load_ort_model(tmp_path / "onnx", "text-generation-with-past")
    past = {i.name: i.shape for i in ort.session.session.get_inputs()}["past_key_values.0.key"]
    assert past[1] == kv_heads  # the graph's key/value heads follow num_key_value_heads
    pytorch = ht.TformerDecoderForCausalLM.from_pretrained(folder).eval()
    assert_ort_greedy_equals_pytorch(ort, pytorch, prompt_length=6, left_pads=(2, 4))


@pytest.mark.needs_optimum
def test_plain_optimum_main_export_works_after_registration(tmp_path, hf_home):
    """optimum's own exporter after register(); our ORT class loads its export too."""
    from optimum.exporters.onnx import main_export

    from hf_tformer_export import register

    folder = save(tmp_path, "encoder", ht.TformerEncoderForMaskedLM)
    register()
    main_export(str(folder), tmp_path / "onnx", task="fill-mask", trust_remote_code=True)
    ort = load_ort_model(tmp_path / "onnx", "fill-mask")
    ids = torch.randint(3, 90, (2, 5))
    with torch.no_grad():
        expected = ht.TformerEncoderForMaskedLM.from_pretrained(folder).eval()(ids).logits
    torch.testing.assert_close(torch.as_tensor(ort(input_ids=ids, attention_mask=torch.ones_like(ids)).logits),
                               expected, atol=1e-4, rtol=1e-4)


@pytest.mark.needs_optimum
def test_optimum_cli_through_our_entry_point(tmp_path, hf_home):
    folder = save(tmp_path, "decoder", ht.TformerDecoderForCausalLM)
    cli(["optimum-cli", "export", "onnx", "--model", str(folder), "--task", "text-generation-with-past",
         "--trust-remote-code", str(tmp_path / "onnx")])
    assert (tmp_path / "onnx" / "model.onnx").exists()


def test_int8_and_fp16_variants(tmp_path, hf_home, capsys):
    folder = save(tmp_path, "encoder", ht.TformerEncoderForSequenceClassification)
    assert cli(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--task", "text-classification",
                "--quantize", "--fp16"]) == 0
    printed = capsys.readouterr().out
    assert "INT8 vs fp32" in printed and "fused attention {'Attention': 2}" in printed
    assert {p.name for p in (tmp_path / "onnx").glob("*.onnx")} == {"model.onnx", QUANTIZED_FILE, "model_fp16.onnx"}
    import onnx

    fp16 = onnx.load(str(tmp_path / "onnx" / "model_fp16.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in fp16.graph.initializer)
    report = export_onnx(str(folder), str(tmp_path / "onnx"), "text-classification", quantize=True, force=True)
    assert report.quantization.agreement == 1.0 and report.quantization.max_abs_diff < 0.05
    assert report.node_counts[QUANTIZED_FILE].get("DynamicQuantizeLinear", 0) > 0
    assert report.node_counts[QUANTIZED_FILE].get("QAttention", 0) == 2  # the packed q/k/v weights quantized too


def test_int8_and_fp16_for_every_graph_of_a_seq2seq_export(tmp_path, hf_home):
    import onnx

    folder = save(tmp_path, "encoder_decoder", ht.TformerEncoderDecoderForConditionalGeneration)
    report = export_onnx(str(folder), str(tmp_path / "onnx"), "text2text-generation-with-past", quantize=True,
                         fp16=True)
    fp32 = [name for name in report.files if not name.endswith(("_quantized.onnx", "_fp16.onnx"))]
    assert set(fp32) == {"encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"}
    assert set(report.files) == {n.replace(".onnx", s) for n in fp32 for s in (".onnx", "_quantized.onnx", "_fp16.onnx")}
    assert all(report.node_counts[n.replace(".onnx", "_quantized.onnx")].get("DynamicQuantizeLinear") for n in fp32)
    assert report.quantization.agreement >= 0.9 and report.quantization.max_abs_diff < 0.5
    quantized = load_ort_model(tmp_path / "onnx", "text2text-generation-with-past", variant="quantized")
    assert sorted(session.path.name for session in quantized.sessions.values()) == sorted(
        n.replace(".onnx", "_quantized.onnx") for n in fp32)
    source = torch.randint(3, 90, (2, 6))
    assert quantized.generate(source, max_new_tokens=4, do_sample=False).shape == (2, 5)
    encoder_fp16 = onnx.load(str(tmp_path / "onnx" / "encoder_model_fp16.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in encoder_fp16.graph.initializer)


@pytest.mark.needs_optimum
def test_optimum_loads_an_export_without_hf_tformer(tmp_path, hf_home):
    """optimum's ORTModelForSequenceClassification, in a process where hf_tformer cannot be imported (our own
    classes: tests/export/test_ort_models.py)."""
    folder = save(tmp_path, "encoder", ht.TformerEncoderForSequenceClassification)
    export_onnx(str(folder), str(tmp_path / "onnx"), "text-classification")
    ids = torch.randint(3, 90, (2, 5))
    with torch.no_grad():
        torch.save({"ids": ids, "logits": ht.TformerEncoderForSequenceClassification.from_pretrained(folder).eval()(
            ids).logits}, tmp_path / "reference.pt")
    code = f"""
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    model = ORTModelForSequenceClassification.from_pretrained("{tmp_path / 'onnx'}", trust_remote_code=True)
    data = torch.load("{tmp_path / 'reference.pt'}")
    logits = torch.as_tensor(model(input_ids=data["ids"], attention_mask=torch.ones_like(data["ids"])).logits)
    torch.testing.assert_close(logits, data["logits"], atol=1e-4, rtol=1e-4)
    print("OK")
    """
    assert "OK" in run_without_hf_tformer(code, cwd=tmp_path)


# --- bad input ----------------------------------------------------------------------------------------------------

def test_unknown_task_lists_the_valid_ones(tmp_path, capsys):
    folder = save(tmp_path, "encoder", ht.TformerEncoderModel)
    with pytest.raises(ValueError, match=r"task='text-generation' is not supported for hf_tformer_encoder; valid "
                                         r"tasks: \['feature-extraction', 'fill-mask'"):
        export_onnx(str(folder), str(tmp_path / "onnx"), "text-generation")
    assert cli(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--task", "summarization"]) == 1
    assert "valid tasks" in capsys.readouterr().err
    assert not (tmp_path / "onnx").exists()


def test_a_folder_that_is_not_an_hf_tformer_checkpoint(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match="not an hf_tformer checkpoint.*hf_tformer_conversion"):
        export_onnx(str(tmp_path / "bert"), str(tmp_path / "onnx"), "feature-extraction")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an hf_tformer checkpoint"):
        export_onnx(str(tmp_path / "empty"), str(tmp_path / "onnx"), "feature-extraction")


def test_existing_destination_needs_force(tmp_path, hf_home):
    folder = save(tmp_path, "encoder", ht.TformerEncoderModel)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "model.onnx").write_text("an earlier export")  # what --force may replace
    (tmp_path / "onnx" / "keep.txt").write_text("user data")
    with pytest.raises(ValueError, match="--force"):
        export_onnx(str(folder), str(tmp_path / "onnx"), "feature-extraction")
    assert (tmp_path / "onnx" / "keep.txt").exists()
    export_onnx(str(folder), str(tmp_path / "onnx"), "feature-extraction", force=True)
    assert not (tmp_path / "onnx" / "keep.txt").exists() and (tmp_path / "onnx" / "model.onnx").exists()


def test_failed_validation_writes_nothing(tmp_path, hf_home):
    folder = save(tmp_path, "encoder", ht.TformerEncoderModel)
    with pytest.raises(ValueError, match="validation failed for model.onnx"):
        # a rule that admits no difference at all: ONNX Runtime's fused kernels round differently
        export_onnx(str(folder), str(tmp_path / "onnx"), "feature-extraction", tolerance=ToleranceRule(0.0, 0.0, 0.0))
    assert not (tmp_path / "onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnx")]


def test_cuda_without_a_gpu_warns_and_falls_back_to_cpu(tmp_path, hf_home):
    reason = cuda_unavailable_reason()
    if reason is None:  # a GPU machine: CUDA is used, with IO binding
        assert resolve_provider("cuda") == "CUDAExecutionProvider"
        return
    folder = save(tmp_path, "encoder", ht.TformerEncoderModel)
    export_onnx(str(folder), str(tmp_path / "onnx"), "feature-extraction")
    with pytest.warns(CudaUnavailableWarning, match="running on the CPU execution provider"):
        model = load_ort_model(tmp_path / "onnx", "feature-extraction", device="cuda")
    assert model.session.session.get_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="device='tpu'"):
        resolve_provider("tpu")


def test_a_converted_t5_exports_with_its_relative_bias_and_generates_the_same_tokens(tmp_path, hf_home):
    from transformers import T5Config, T5ForConditionalGeneration

    from hf_tformer_conversion import convert

    torch.manual_seed(0)
    T5ForConditionalGeneration(T5Config(
        vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
        relative_attention_max_distance=12, decoder_start_token_id=0)).save_pretrained(tmp_path / "t5")
    convert(str(tmp_path / "t5"), str(tmp_path / "ours"), progress=False)
    report = export_onnx(str(tmp_path / "ours"), str(tmp_path / "onnx"), "text2text-generation-with-past")
    check = report.validation[0]
    assert check.max_abs_diff <= 1e-4 and check.greedy_identical is True
    # the bias differs per head and query, so no self attention is packed; all attention is MultiHeadAttention
    assert report.node_counts["encoder_model.onnx"].get("MultiHeadAttention") == 2
    assert not any(counts.get("Attention") for counts in report.node_counts.values())


@pytest.mark.parametrize("variant, model_class, task", [
    ("encoder", ht.TformerEncoderForMaskedLM, "fill-mask"),
    ("decoder", ht.TformerDecoderForCausalLM, "text-generation-with-past"),
    ("encoder_decoder", ht.TformerEncoderDecoderForConditionalGeneration, "text2text-generation"),
], ids=["encoder", "decoder", "encoder_decoder"])
def test_a_tied_lm_head_is_stored_once_and_still_quantized(tmp_path, hf_home, variant, model_class, task):
    import onnx
    from onnx import numpy_helper

    folder = save(tmp_path, variant, model_class, vocab_size=3000)  # the vocabulary dominates the weights
    model = model_class.from_pretrained(folder)
    parameter_bytes = sum(p.numel() * 4 for p in model.parameters())  # tied weights counted once
    quantize = variant != "encoder_decoder"
    report = export_onnx(str(folder), str(tmp_path / "onnx"), task, quantize=quantize)
    graph = "decoder_model.onnx" if variant == "encoder_decoder" else "model.onnx"
    initializers = onnx.load(str(tmp_path / "onnx" / graph)).graph.initializer
    stored = sum(numpy_helper.to_array(init).nbytes for init in initializers)
    assert stored <= 1.02 * parameter_bytes  # a second copy of the 3000-row table would be +~70%
    shapes = [tuple(init.dims) for init in initializers]
    assert (32, 3000) in shapes and (3000, 32) not in shapes  # the table is stored as the head's MatMul reads it
    if quantize:  # the head is a MatMul like the others: INT8 quantizes it with them
        fp32, int8 = report.node_counts["model.onnx"], report.node_counts[QUANTIZED_FILE]
        assert not fp32.get("Gemm") and int8.get("MatMulInteger") == fp32["MatMul"]
