"""A sparse mixture-of-experts decoder exports with our exporter (text-generation-with-past): the
traced graph takes moe.py's dense path (every expert, routing weights zero where a token did not pick it), and ONNX
Runtime with past key/values generates PyTorch's tokens on a left-padded batch (export validation)."""

import torch

import hf_tformer as ht
from conftest import tiny_config
from hf_tformer_export.export import export_onnx


def test_moe_decoder_exports_with_past_and_generates_pytorchs_tokens_on_ort(tmp_path, hf_home):
    torch.manual_seed(0)
    config = tiny_config("decoder", hidden_act="swiglu", position_embedding_type="rotary", num_key_value_heads=2,
                         num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
                         shared_expert_intermediate_size=16, moe_layers=[1])
    ht.TformerDecoderForCausalLM(config).eval().save_pretrained(tmp_path / "ckpt")
    report = export_onnx(str(tmp_path / "ckpt"), str(tmp_path / "onnx"), "text-generation-with-past")
    check = report.validation[0]  # ORT with past vs PyTorch: logits and greedy tokens on a left-padded batch
    assert check.max_abs_diff <= 1e-4 and check.greedy_identical is True
    assert report.node_counts["model.onnx"].get("TopK") == 1  # the one MoE layer's router
