"""Quantizing a remote-code decoder the ways users do: through from_pretrained(quantization_config=...) with torchao
and optimum-quanto, and with torch's own eager dynamic quantization (quantize_dynamic).

The loading runs in one fresh process where hf_tformer is not importable (how users meet our checkpoints; in a
process that imported hf_tformer, transformers 5 would pick its registered classes over the folder's code). It
records what it found; the tests compare that against the fp32 model of this process."""

import pytest
import torch

import hf_tformer as ht
from conftest import decoder_facts_from_fresh_process, random_ids, tiny_config
from hf_tformer.linear import TformerLinear
from hf_tformer_conversion.clients import require_client

require_client("torchao")
require_client("optimum-quanto")

PROMPT, NEW_TOKENS = 8, 8
LAYERS, PROJECTIONS_PER_LAYER = 2, 7  # q, k, v, o, gate, up, down
# Weight-only int8 with a scale per output row rounds each weight by at most half a step, max|w_row| / 254 (0.4 %
# of the row's largest weight). Through the 2 tiny layers that moves the logits by 1.1e-3 (quanto) / 1.3e-3 (torchao)
# at most (measured), against logits within +-0.58: 1e-2 leaves room for other CPU kernels and still fails on a
# wrong scale or layout (errors of the size of the logits themselves).
WEIGHT_ONLY_ATOL = 1e-2
# Dynamic quantization also rounds the activations to 8 bits per tensor at every linear: 8.1e-3 measured, 5e-2 bound.
DYNAMIC_ATOL = 5e-2

_QUANTIZE = """
import warnings
import torch
from transformers import AutoModelForCausalLM, QuantoConfig, TorchAoConfig
from torchao.quantization import Int8WeightOnlyConfig
from torch.ao.nn.quantized import dynamic as nnqd

def quantize_dynamic(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return torch.ao.quantization.quantize_dynamic(model, {{torch.nn.Linear}}, dtype=torch.qint8)

def stored_dtype(module):
    if isinstance(module, nnqd.Linear):
        return module.weight().dtype
    weight = module.weight
    data = getattr(weight, "qdata", getattr(weight, "_data", weight))  # torchao Int8Tensor, quanto WeightQBytesTensor
    return data.dtype

# The config object is the spelling both transformers versions take with torchao 0.18: the string
# "int8_weight_only" fails on both (4.57 imports torchao's removed `autoquant`; 5.x refuses strings).
scenarios = {{
    "torchao": lambda: load(quantization_config=TorchAoConfig(Int8WeightOnlyConfig())),
    "quanto": lambda: load(quantization_config=QuantoConfig(weights="int8")),
    "dynamic": lambda: quantize_dynamic(load()),
    "dynamic_plain": lambda: quantize_dynamic(load().to_plain_linear()),
}}

def load(**kwargs):
    return AutoModelForCausalLM.from_pretrained({folder!r}, trust_remote_code=True, dtype=torch.float32, **kwargs)

inputs = torch.load({folder!r} + "/inputs.pt")
facts = {{}}
for name, make in scenarios.items():
    model = make().eval()
    projections = [module for key, module in model.named_modules() if key.endswith("_proj")]
    with torch.no_grad():
        logits = model(**inputs).logits
    facts[name] = {{
        "module": type(model).__module__,
        "projection_classes": sorted({{type(module).__name__ for module in projections}}),
        "weight_classes": sorted({{type(module.weight).__name__ for module in projections if not callable(module.weight)}}),
        "stored_dtypes": sorted({{str(stored_dtype(module)) for module in projections}}),
        "dynamic_linears": sum(type(module) is nnqd.Linear for module in model.modules()),
        "float_linears": sum(isinstance(module, torch.nn.Linear) for module in model.modules()),
        "lm_head_weight_class": type(model.lm_head.weight).__name__ if not callable(model.lm_head.weight) else None,
        "lm_head_tied": model.lm_head.weight is model.model.embed_tokens.weight,
        "logits": logits,
        "tokens": model.generate(**inputs, max_new_tokens={new_tokens}, do_sample=False),
    }}
torch.save(facts, {folder!r} + "/facts.pt")
"""


def batch() -> dict:
    ids = random_ids(4, PROMPT)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.fixture(scope="module")
def quantized(tmp_path_factory) -> dict:
    """{scenario: facts} from the fresh process, plus "reference": the fp32 logits and greedy tokens here."""
    root = tmp_path_factory.mktemp("quantization")
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder", hidden_act="swiglu", num_key_value_heads=2)).eval()
    return decoder_facts_from_fresh_process(root, model, batch(), _QUANTIZE, NEW_TOKENS)


def check_close_and_generates(facts: dict, reference: dict, atol: float) -> None:
    torch.testing.assert_close(facts["logits"], reference["logits"], rtol=0, atol=atol)
    assert not torch.equal(facts["logits"], reference["logits"])  # the weights really were rounded
    tokens, expected = facts["tokens"], reference["tokens"]
    assert tokens.shape == expected.shape and torch.equal(tokens[:, :PROMPT], batch()["input_ids"])
    # Greedy choices between logits closer than the rounding error can flip, and a flip changes the rest of its
    # row: "mostly equal" is at most one row in four diverging (measured: all 32 new tokens equal, every scenario).
    agreement = (tokens[:, PROMPT:] == expected[:, PROMPT:]).float().mean().item()
    assert agreement >= 0.75, (tokens, expected)


@pytest.mark.parametrize("scenario, projection_class, weight_class", [
    ("torchao", "TformerLinear", "Int8Tensor"),  # our layer, its weight swapped for torchao's int8 tensor
    ("quanto", "QLinear", "WeightQBytesTensor"),  # quanto replaces the module
])
def test_weight_only_int8_through_from_pretrained(quantized, scenario, projection_class, weight_class):
    facts = quantized[scenario]
    assert facts["module"].startswith("transformers_modules")
    assert facts["projection_classes"] == [projection_class] and facts["weight_classes"] == [weight_class]
    assert facts["stored_dtypes"] == ["torch.int8"]
    # transformers keeps the output embeddings out of both quantizers (modules_to_not_convert): fp32, still tied.
    assert facts["lm_head_weight_class"] == "Parameter" and facts["lm_head_tied"]
    check_close_and_generates(facts, quantized["reference"], WEIGHT_ONLY_ATOL)


def test_torch_quantize_dynamic_skips_our_linear_subclass_by_itself(quantized):
    # torch matches modules by exact class (qconfig lookup, module mapping and nnqd.Linear.from_float alike): an
    # nn.Linear subclass is left alone, silently. If this starts failing, torch matches subclasses now.
    facts = quantized["dynamic"]
    assert facts["projection_classes"] == ["TformerLinear"] and facts["dynamic_linears"] == 0
    torch.testing.assert_close(facts["logits"], quantized["reference"]["logits"], rtol=1e-5, atol=1e-5)


def test_torch_quantize_dynamic_quantizes_every_linear_after_to_plain_linear(quantized):
    facts = quantized["dynamic_plain"]
    assert facts["projection_classes"] == ["Linear"] and facts["stored_dtypes"] == ["torch.qint8"]
    assert facts["dynamic_linears"] == LAYERS * PROJECTIONS_PER_LAYER + 1  # the LM head too, as for any model
    assert facts["float_linears"] == 0
    check_close_and_generates(facts, quantized["reference"], DYNAMIC_ATOL)


def test_to_plain_linear_keeps_parameters_ties_and_arithmetic():
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder", hidden_act="swiglu")).eval()
    parameters = dict(model.named_parameters())
    with torch.no_grad():
        reference = model(**batch()).logits
    assert model.to_plain_linear() is model
    assert not any(isinstance(module, TformerLinear) for module in model.modules())
    assert sum(type(module) is torch.nn.Linear for module in model.modules()) == LAYERS * PROJECTIONS_PER_LAYER + 1
    assert all(parameter is parameters[name] for name, parameter in model.named_parameters())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():  # the CPU fast paths are gone, the arithmetic is the same
        torch.testing.assert_close(model(**batch()).logits, reference, rtol=1e-5, atol=1e-5)
