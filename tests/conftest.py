"""Tiny configs and helpers shared by the tests (CPU, seconds each)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import settings, strategies as st

import hf_tformer as ht

torch.set_num_threads(2)
settings.register_profile("ci", max_examples=12, deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci")

VARIANTS = ("encoder", "decoder", "encoder_decoder")
CONFIG_CLASSES = {
    "encoder": ht.TformerEncoderConfig,
    "decoder": ht.TformerDecoderConfig,
    "encoder_decoder": ht.TformerEncoderDecoderConfig,
}
BASE_MODELS = {
    "encoder": ht.TformerEncoderModel,
    "decoder": ht.TformerDecoderModel,
    "encoder_decoder": ht.TformerEncoderDecoderModel,
}
VOCAB = 97


def tiny_config(variant: str, **overrides):
    """A 2-layer, 32-wide model of the variant, without dropout (deterministic forward)."""
    values = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout=0.0,
        attention_dropout=0.0,
    )
    if variant == "encoder_decoder":
        values.update(encoder_layers=2, decoder_layers=2)
    else:
        values.update(num_hidden_layers=2)
    values.update(overrides)
    return CONFIG_CLASSES[variant](**values)


# Architectural choices that every invariance must hold across.
config_choices = st.fixed_dictionaries(
    {
        "position_embedding_type": st.sampled_from(["sinusoidal", "learned", "rotary", "relative"]),
        "norm_placement": st.sampled_from(["pre", "post"]),
        "norm_type": st.sampled_from(["layernorm", "rmsnorm"]),
        "hidden_act": st.sampled_from(["relu", "gelu", "gelu_new", "silu", "swiglu", "geglu", "geglu_new"]),
        "num_key_value_heads": st.sampled_from([1, 2, 4]),
        "attention_bias": st.booleans(),
        "mlp_bias": st.booleans(),
        "scale_embeddings": st.booleans(),
        "embedding_layernorm": st.booleans(),
    }
)


def build(variant: str, attn_implementation: str = "sdpa", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = tiny_config(variant, **overrides)
    config._attn_implementation = attn_implementation
    return BASE_MODELS[variant](config).eval()


def random_ids(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=generator)


def run(model, input_ids, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None):
    """Last hidden state of any base model (the decoder side for the encoder-decoder)."""
    kwargs = {}
    if isinstance(model, ht.TformerEncoderDecoderModel):
        kwargs["decoder_input_ids"] = decoder_input_ids if decoder_input_ids is not None else input_ids
        kwargs["decoder_attention_mask"] = decoder_attention_mask
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state


# --- fresh processes where hf_tformer cannot be imported -------------------------------------------------------

_BLOCK_HF_TFORMER = """
import sys
class _NoHfTformer:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_tformer":
            raise ImportError("hf_tformer is deliberately not importable in this process")
sys.meta_path.insert(0, _NoHfTformer())
"""


def run_without_hf_tformer(code: str, cwd: Path, env: dict | None = None) -> str:
    """Run `code` in a fresh interpreter where `import hf_tformer` fails; return stdout, raise on failure."""
    # The child computes with as many threads as this process (conftest sets 2), whatever OMP_NUM_THREADS says:
    # bit-identical comparisons across the two need the same reduction order.
    full_env = {**os.environ, "PYTHONPATH": "", "OMP_NUM_THREADS": str(torch.get_num_threads()), **(env or {})}
    result = subprocess.run(
        [sys.executable, "-c", _BLOCK_HF_TFORMER + textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"subprocess failed:\n{result.stdout}\n{result.stderr[-4000:]}")
    return result.stdout


def decoder_facts_from_fresh_process(root: Path, model, inputs: dict, script: str, new_tokens: int, **fields) -> dict:
    """Save `model` and `inputs` in root/decoder, run `script` (formatted with folder, new_tokens and `fields`; it
    writes facts.pt there) without hf_tformer, and return those facts plus "reference": this process's logits and
    greedy tokens for the same inputs."""
    folder = root / "decoder"
    model.save_pretrained(folder)
    torch.save(inputs, folder / "inputs.pt")
    run_without_hf_tformer(script.format(folder=str(folder), new_tokens=new_tokens, **fields), cwd=root,
                           env={"HF_HOME": str(root / "hf_home")})
    facts = torch.load(folder / "facts.pt")
    with torch.no_grad():
        facts["reference"] = {"logits": model(**inputs).logits,
                              "tokens": model.generate(**inputs, max_new_tokens=new_tokens, do_sample=False)}
    return facts


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An isolated HF cache, so dynamic modules from other tests never leak in."""
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    return home
