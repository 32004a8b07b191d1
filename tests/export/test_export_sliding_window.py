"""A sliding-window decoder exports with our exporter (text-generation-with-past). The graph takes
past key/values as a full cache (graphs.CausalLMWithPast) and applies the window as a banded mask, so ONNX Runtime
generates PyTorch's tokens (whose own cache keeps only window - 1 keys) on a left-padded batch well past the window;
the ORT cache is not bounded by the window (see README)."""

import torch

import hf_tformer as ht
from conftest import tiny_config
from ort_helpers import assert_ort_greedy_equals_pytorch
from hf_tformer_export.export import export_onnx
from hf_tformer_export.runtime import load_ort_model


def test_sliding_window_decoder_generates_pytorchs_tokens_on_ort(tmp_path, hf_home):
    torch.manual_seed(0)  # one full and one sliding layer: both masks go through the graph
    config = tiny_config("decoder", position_embedding_type="rotary", num_key_value_heads=2, sliding_window=4,
                         layer_types=["full_attention", "sliding_attention"])
    ht.TformerDecoderForCausalLM(config).eval().save_pretrained(tmp_path / "ckpt")
    report = export_onnx(str(tmp_path / "ckpt"), str(tmp_path / "onnx"), "text-generation-with-past")
    check = report.validation[0]
    assert check.max_abs_diff <= 1e-4 and check.greedy_identical is True
    ort = load_ort_model(tmp_path / "onnx", "text-generation-with-past")
    pytorch = ht.TformerDecoderForCausalLM.from_pretrained(tmp_path / "ckpt").eval()
    assert_ort_greedy_equals_pytorch(ort, pytorch, prompt_length=10, left_pads=(2, 6))
