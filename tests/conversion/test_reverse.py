"""The way back: hf_tformer checkpoints into native transformers classes, gated on the same parity check."""

import pytest
import torch

import hf_tformer as ht
from conftest import tiny_config
from hf_tformer_conversion import convert, to_native
from hf_tformer_conversion.__main__ import main as cli
from test_convert import save, sources

ROUND_TRIPS = ["bert-cls", "bert-mlm", "roberta-mlm", "gpt2", "llama", "bart", "marian", "t5", "t5-v1.1", "mixtral",
               "qwen2-moe", "mistral", "qwen2", "qwen3", "gpt-neox"]


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_native_to_ours_and_back_computes_the_same_function(tmp_path, hf_home, name):
    source = sources()[name].eval()
    folder = save(source, tmp_path / "source")
    convert(folder, str(tmp_path / "ours"), progress=False)
    report = to_native(str(tmp_path / "ours"), str(tmp_path / "back"), source.config.model_type)
    assert report.architecture == type(source).__name__ and report.parity.max_abs_diff <= 1e-5
    assert not list((tmp_path / "back").glob("*.py"))  # a plain native checkpoint: no remote code
    back = type(source).from_pretrained(tmp_path / "back").eval()
    ids = torch.randint(3, 120, (2, 7))
    extra = {"decoder_input_ids": ids[:, :3]} if source.config.is_encoder_decoder else {}
    with torch.no_grad():
        torch.testing.assert_close(back(input_ids=ids, **extra)[0], source(input_ids=ids, **extra)[0],
                                   atol=1e-5, rtol=1e-5)


def test_a_model_built_in_hf_tformer_leaves_as_gpt2_through_the_cli(tmp_path, hf_home, capsys):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder", hidden_dropout=0.1)).eval()  # GPT-2's defaults
    model.save_pretrained(tmp_path / "ours")
    assert cli(["--to-native", "gpt2", str(tmp_path / "ours"), str(tmp_path / "gpt2"), "--no-progress"]) == 0
    assert "GPT2LMHeadModel" in capsys.readouterr().out
    native = GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").eval()
    ids = torch.randint(3, 90, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(native(ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides, field", [
    ({"position_embedding_type": "rotary"}, "position_embedding_type"),
    ({"norm_type": "rmsnorm"}, "norm_type"),
    ({"hidden_act": "swiglu"}, "hidden_act"),
])
def test_a_config_that_does_not_map_is_refused_by_field(tmp_path, overrides, field):
    ht.TformerDecoderForCausalLM(tiny_config("decoder", **overrides)).save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError, match=field):
        to_native(str(tmp_path / "ours"), str(tmp_path / "gpt2"), "gpt2")
    assert not (tmp_path / "gpt2").exists()


@pytest.mark.parametrize("overrides, model_type, field", [
    ({}, "mixtral", "num_experts=0"),
    ({"num_experts": 4, "shared_expert_intermediate_size": 16}, "mixtral", "shared_expert_intermediate_size=16"),
    ({"num_experts": 4}, "qwen2_moe", "shared_expert_intermediate_size=0"),
], ids=["dense-to-mixtral", "shared-expert-to-mixtral", "no-shared-expert-to-qwen2-moe"])
def test_an_moe_config_that_does_not_map_is_refused_by_field(tmp_path, overrides, model_type, field):
    config = tiny_config("decoder", hidden_act="swiglu", position_embedding_type="rotary", norm_type="rmsnorm",
                         mlp_bias=False, attention_bias=False, **overrides)
    ht.TformerDecoderForCausalLM(config).save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError, match=field):
        to_native(str(tmp_path / "ours"), str(tmp_path / "native"), model_type)
    assert not (tmp_path / "native").exists()


def test_bad_targets_and_destinations(tmp_path):
    ht.TformerEncoderModel(tiny_config("encoder")).save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError, match="TformerEncoderModel has no gpt2 counterpart"):
        to_native(str(tmp_path / "ours"), str(tmp_path / "out"), "gpt2")
    with pytest.raises(ValueError, match="'distilbert' is not supported"):
        to_native(str(tmp_path / "ours"), str(tmp_path / "out"), "distilbert")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an hf_tformer checkpoint"):
        to_native(str(tmp_path / "empty"), str(tmp_path / "out"), "bert")
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match="--force"):
        to_native(str(tmp_path / "ours"), str(tmp_path / "out"), "bert")
