"""Tensor parallelism the way users run it: torchrun, 2 CPU ranks (gloo), `tp_plan="auto"` on a saved checkpoint
loaded as remote code. Sharded logits and greedy tokens must equal the single-process ones."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import hf_tformer as ht
from conftest import random_ids, tiny_config

RANK_SCRIPT = textwrap.dedent("""
    import json, os, sys, torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    results = {}
    for name, folder in json.loads(sys.argv[1]).items():
        auto = AutoModelForSeq2SeqLM if name.startswith("seq2seq") else AutoModelForCausalLM
        model = auto.from_pretrained(folder, trust_remote_code=True, tp_plan="auto").eval()
        reference = torch.load(os.path.join(folder, "reference.pt"))
        attention = model.model.decoder.layers[0].self_attn
        with torch.no_grad():
            logits = model(**reference["inputs"]).logits
            tokens = model.generate(reference["inputs"]["input_ids"], max_new_tokens=5, do_sample=False)
        mlp = model.model.decoder.layers[-1].mlp
        results[name] = {
            "sharded": type(attention.q_proj.weight).__name__,
            "experts_sharded": type(mlp.experts[0].down_proj.weight).__name__ if hasattr(mlp, "experts") else None,
            "max_diff": (logits - reference["logits"]).abs().max().item(),
            "tokens_equal": torch.equal(tokens, reference["tokens"]),
        }
    if int(os.environ["RANK"]) == 0:
        print("RESULTS " + json.dumps(results))
""")

CASES = {
    "decoder-rotary-gqa": (ht.TformerDecoderForCausalLM, "decoder",
                           dict(position_embedding_type="rotary", num_key_value_heads=2, hidden_act="swiglu")),
    "decoder-relative": (ht.TformerDecoderForCausalLM, "decoder", dict(position_embedding_type="relative")),
    # a dense first layer and a sparse MoE one with a shared expert: every rule of both plans matches a module
    "decoder-moe": (ht.TformerDecoderForCausalLM, "decoder",
                    dict(position_embedding_type="rotary", hidden_act="swiglu", num_experts=4, num_experts_per_tok=2,
                         moe_intermediate_size=32, shared_expert_intermediate_size=32, moe_layers=[1])),
    "seq2seq-relative": (ht.TformerEncoderDecoderForConditionalGeneration, "encoder_decoder",
                         dict(position_embedding_type="relative", norm_type="rmsnorm")),
}


def save_case(folder, model_class, variant, overrides):
    torch.manual_seed(0)
    model = model_class(tiny_config(variant, **overrides)).eval()
    model.save_pretrained(folder)
    ids = random_ids(2, 7)
    inputs = {"input_ids": ids}
    if variant == "encoder_decoder":
        inputs["decoder_input_ids"] = ids[:, :4]
    with torch.no_grad():
        torch.save({"inputs": inputs, "logits": model(**inputs).logits,
                    "tokens": model.generate(ids, max_new_tokens=5, do_sample=False)}, folder / "reference.pt")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without torch.distributed")
def test_two_cpu_ranks_match_one_process(tmp_path, hf_home):
    folders = {}
    for name, (model_class, variant, overrides) in CASES.items():
        save_case(tmp_path / name, model_class, variant, overrides)
        folders[name] = str(tmp_path / name)
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(tmp_path / "rank.py"), json.dumps(folders)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    # Plan rules name only modules the models have (a gate projection exists only for gated activations).
    unmatched = [line for line in done.stderr.splitlines() if "match nothing" in line or "were not applied" in line]
    assert all("gate_proj" in line and "attn" not in line for line in unmatched), unmatched
    results = json.loads(lines[0][len("RESULTS "):])
    for name, result in results.items():
        assert result["sharded"] == "DTensor", (name, result)  # the plan was applied, not silently skipped
        assert result["experts_sharded"] == ("DTensor" if name == "decoder-moe" else None), (name, result)
        assert result["max_diff"] <= 1e-5, (name, result)
        assert result["tokens_equal"], (name, result)
