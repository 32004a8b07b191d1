"""The contract vLLM's Transformers backend (vLLM 0.32, vllm/model_executor/models/transformers/) sets a remote-code
model, checked on our models directly: no vLLM needed, so it runs in both suites. tests/clients/test_vllm.py serves
the models with vLLM itself where it is installed.

What the backend does with a model, and so what is checked here:
- builds the base model (AutoModel) with `config._attn_implementation = "vllm"` and finds each layer's attention in
  the source of the module's forward: one call of a name read from `ALL_ATTENTION_FUNCTIONS[...]`, with
  `scaling=self.<attr>`; the module's int `layer_idx` names the KV-cache layer, `is_causal=False` anywhere makes the
  whole model an encoder-only (pooling) model;
- calls it like `model(input_ids=(1, tokens), position_ids=(1, tokens), use_cache=False, return_dict=False)`: the
  whole batch packed into one row, positions restarting at 0 per sequence, no attention mask; its attention function
  ignores the mask, takes sequence boundaries and causality from its own metadata and returns (tokens, heads * dim);
- replaces every nn.Linear by a parallel linear chosen by `base_model_tp_plan` (no rule: replicated);
- compiles `type(model.get_decoder())` with input_ids / inputs_embeds / position_ids as its dynamic arguments.
"""

import ast
import inspect
import re
import sys
import textwrap
import types
from dataclasses import dataclass
from typing import Any, Optional

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from transformers import AttentionInterface

import hf_tformer as ht
from hf_tformer.attention import TformerAttention

from conftest import VOCAB, build

LAYERS = 2  # tiny_config's depth


@dataclass
class Call:
    layer_idx: Any
    is_causal: Any
    attention_mask: Optional[torch.Tensor]
    kwargs: dict


class PackedBatchAttention:
    """Stands in for vLLM's attention function. Like it, it never reads `attention_mask`: sequence boundaries come
    from the batch metadata (vLLM's forward context; here `lengths`), causality from the module's `is_causal`, the
    kv heads stay grouped, and the output is (tokens, heads * head_dim)."""

    def __init__(self) -> None:
        self.lengths: list[int] = []
        self.calls: list[Call] = []

    def __call__(self, module, query, key, value, attention_mask, **kwargs):
        self.calls.append(Call(module.layer_idx, module.is_causal, attention_mask, kwargs))
        assert query.shape[0] == 1 and query.shape[2] == sum(self.lengths), "expected one packed row"
        outputs, start = [], 0
        for length in self.lengths:
            rows = slice(start, start + length)
            outputs.append(F.scaled_dot_product_attention(
                query[:, :, rows], key[:, :, rows], value[:, :, rows],
                is_causal=module.is_causal, scale=kwargs["scaling"], enable_gqa=True,
            ))
            start += length
        output = torch.cat(outputs, dim=2)  # (1, heads, tokens, head_dim)
        return output.transpose(1, 2).reshape(query.shape[2], -1), None


@pytest.fixture
def vllm_attention():
    """Registers the stand-in under vLLM's name for the test only (vLLM registers its own when imported)."""
    mapping = AttentionInterface._global_mapping
    previous = mapping.get("vllm")
    attention = PackedBatchAttention()
    AttentionInterface.register("vllm", attention)
    yield attention
    if previous is None:
        del mapping["vllm"]
    else:
        mapping["vllm"] = previous


def _packed_call(model, sequences: list[torch.Tensor], **kwargs) -> torch.Tensor:
    """vLLM's call of the base model: one row, positions restarting per sequence; -> (tokens, hidden)."""
    input_ids = torch.cat(sequences)[None]
    position_ids = torch.cat([torch.arange(len(sequence)) for sequence in sequences])[None]
    with torch.no_grad():
        outputs = model(input_ids=input_ids, inputs_embeds=None, use_cache=False, position_ids=position_ids,
                        return_dict=False, **kwargs)
    return outputs[0][0]


def _sequences(*lengths: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(len(lengths))
    return [torch.randint(3, VOCAB, (length,), generator=generator) for length in lengths]


SERVED = {  # the variants vLLM serves (it has no encoder-decoder path), across the position types it can take
    "decoder-rotary-gqa": ("decoder", dict(position_embedding_type="rotary", num_key_value_heads=2,
                                           norm_type="rmsnorm", hidden_act="swiglu")),
    # max_position_embeddings below the packed row's 12 tokens: only the positions must fit the table
    "decoder-learned": ("decoder", dict(position_embedding_type="learned", max_position_embeddings=8)),
    "decoder-sinusoidal-mqa": ("decoder", dict(position_embedding_type="sinusoidal", num_key_value_heads=1)),
    "encoder": ("encoder", dict(max_position_embeddings=8)),
    "encoder-rotary-pre": ("encoder", dict(position_embedding_type="rotary", norm_placement="pre",
                                           type_vocab_size=0)),
}


@pytest.mark.parametrize("name", SERVED)
def test_packed_batch_equals_each_sequence_alone(name, vllm_attention):
    variant, overrides = SERVED[name]
    model = build(variant, **overrides)
    sequences = _sequences(5, 7)
    vllm_attention.lengths = [len(sequence) for sequence in sequences]
    model.config._attn_implementation = "vllm"
    packed = _packed_call(model, sequences)
    model.config._attn_implementation = "sdpa"
    with torch.no_grad():
        alone = [model(input_ids=sequence[None]).last_hidden_state[0] for sequence in sequences]
    torch.testing.assert_close(packed, torch.cat(alone), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", ["decoder", "encoder"])
def test_every_layer_dispatches_through_the_interface_with_kwargs_unchanged(variant, vllm_attention):
    model = build(variant, attn_implementation="vllm")
    sequences = _sequences(3, 4)
    vllm_attention.lengths = [len(sequence) for sequence in sequences]
    marker = object()  # vLLM-side kwargs (e.g. its aux-hidden-state flags) must arrive untouched
    _packed_call(model, sequences, vllm_marker=marker)
    calls = vllm_attention.calls
    assert [call.layer_idx for call in calls] == list(range(LAYERS))
    assert all(call.is_causal is (variant == "decoder") for call in calls)
    assert all(call.kwargs.get("vllm_marker") is marker for call in calls)
    # no mask is built for an implementation that never reads one (a packed row's would be tokens^2)
    assert all(call.attention_mask is None for call in calls)
    scales = {module.layer_idx: module.scaling for module in model.modules() if isinstance(module, TformerAttention)}
    assert all(call.kwargs["scaling"] == scales[call.layer_idx] for call in calls)


def test_relative_positions_are_refused_not_silently_dropped(vllm_attention):
    """The T5 bias travels in the mask, which vLLM's attention never reads: an error, not wrong outputs."""
    model = build("decoder", attn_implementation="vllm", position_embedding_type="relative")
    vllm_attention.lengths = [4]
    with pytest.raises(ValueError, match="relative.*'vllm'"):
        _packed_call(model, _sequences(4))


def _interface_calls(cls: type) -> list[ast.Call]:
    """Calls in `cls.forward` of a name assigned from `ALL_ATTENTION_FUNCTIONS[...]` (how vLLM finds attention)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls.forward)))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Subscript):
            base = node.value.value
            if isinstance(base, ast.Name) and base.id == "ALL_ATTENTION_FUNCTIONS":
                names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names]


def test_attention_forward_makes_one_interface_call_with_a_static_scale():
    calls = _interface_calls(TformerAttention)
    assert len(calls) == 1
    scaling = [keyword.value for keyword in calls[0].keywords if keyword.arg == "scaling"]
    assert len(scaling) == 1 and isinstance(scaling[0], ast.Attribute)
    assert isinstance(scaling[0].value, ast.Name) and scaling[0].value.id == "self"
    module = build("decoder").decoder.layers[0].self_attn
    assert isinstance(getattr(module, scaling[0].attr), float)


@pytest.mark.parametrize("variant", ["decoder", "encoder"])
def test_attention_modules_name_their_layer_and_causality(variant):
    model = build(variant, num_key_value_heads=2)
    attention = [module for module in model.modules() if isinstance(module, TformerAttention)]
    assert sorted(module.layer_idx for module in attention) == list(range(LAYERS))
    causal = {getattr(module, "is_causal") for module in model.modules() if hasattr(module, "is_causal")}
    assert causal == {variant == "decoder"}  # one False anywhere makes vLLM serve the model as an encoder
    config = model.config
    first = attention[0]
    assert first.q_proj.out_features == config.num_attention_heads * config.head_dim
    assert first.k_proj.out_features == config.num_key_value_heads * config.head_dim


def _plan_style(plan: dict[str, str], name: str) -> Optional[str]:
    """The style transformers' TP applies to `name` (`*` stands for a layer index)."""
    for pattern, style in plan.items():
        if re.fullmatch(re.escape(pattern).replace(r"\*", r"\d+"), name):
            return style
    return None


def _vllm_plan_style(plan: dict[str, str], name: str) -> str:
    """The style vLLM applies: its first rule that `re.match`es the prefixed name, else replicate."""
    return next((style for pattern, style in plan.items() if re.match(f"model.{pattern}", f"model.{name}")),
                "replicate")


EXPECTED_STYLE = {"q_proj": "colwise", "k_proj": "colwise", "v_proj": "colwise", "o_proj": "rowwise",
                  "gate_proj": "colwise", "up_proj": "colwise", "down_proj": "rowwise"}


@pytest.mark.parametrize("variant,hidden_act", [("decoder", "swiglu"), ("decoder", "gelu_new"), ("encoder", "gelu")])
def test_tp_plan_shards_every_linear(variant, hidden_act):
    model = build(variant, hidden_act=hidden_act)
    plan = type(model.config).base_model_tp_plan
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    assert len(linears) == LAYERS * (4 + (3 if hidden_act == "swiglu" else 2))
    for name in linears:
        expected = EXPECTED_STYLE[name.rsplit(".", 1)[-1]]
        assert _plan_style(plan, name) == expected, name
        assert _vllm_plan_style(plan, name) == expected, name


def test_vocab_embedding_is_the_input_embedding():
    model = build("decoder")
    embedding = model.get_input_embeddings()
    assert type(embedding) is nn.Embedding and embedding.num_embeddings == model.config.vocab_size


@pytest.mark.parametrize("cls", [ht.TformerDecoderModel, ht.TformerDecoderForCausalLM, ht.TformerEncoderModel])
def test_get_decoder_is_the_base_model_vllm_compiles(cls):
    variant = "encoder" if cls is ht.TformerEncoderModel else "decoder"
    model = cls(build(variant).config)
    decoder = model.get_decoder()
    assert type(decoder) is (ht.TformerEncoderModel if variant == "encoder" else ht.TformerDecoderModel)
    parameters = inspect.signature(type(decoder).forward).parameters
    assert {"input_ids", "inputs_embeds", "position_ids"} <= set(parameters)


@pytest.mark.parametrize("cls", [ht.TformerDecoderModel, ht.TformerDecoderForCausalLM, ht.TformerEncoderModel,
                                 ht.TformerEncoderForSequenceClassification])
def test_declares_attention_backend_support_and_standard_prefix(cls):
    assert cls._supports_attention_backend is True and cls.is_backend_compatible()
    assert cls.base_model_prefix == "model"  # vLLM maps checkpoint names onto `model.`


CPU_HEAD_SIZES = [32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512]  # vLLM 0.32's CPUAttentionBackend


@pytest.fixture
def vllm_platform(monkeypatch):
    """vLLM loaded on its CPU platform, as far as our check looks (the two modules it reads), without vLLM."""
    platform = types.SimpleNamespace(is_cpu=lambda: True)
    backend = types.SimpleNamespace(get_supported_head_sizes=lambda: list(CPU_HEAD_SIZES))
    monkeypatch.setitem(sys.modules, "vllm.platforms", types.SimpleNamespace(current_platform=platform))
    monkeypatch.setitem(sys.modules, "vllm.v1.attention.backends.cpu_attn",
                        types.SimpleNamespace(CPUAttentionBackend=backend))
    return platform


@pytest.mark.parametrize("variant", ["decoder", "encoder"])
def test_vllm_on_cpu_refuses_an_unsupported_head_dim_while_building_the_model(variant, vllm_attention, vllm_platform):
    """vLLM's CPU kernel refuses head_dim 8 only on the first request (killing the server); building is earlier."""
    with pytest.raises(ValueError, match=r"head_dim=8 \(hidden_size=32 / num_attention_heads=4\) is not a head size "
                                         r"vLLM's CPU attention supports \(\[32, 64, .*num_attention_heads in \[1\]"):
        build(variant, attn_implementation="vllm")


def test_the_head_dim_check_is_for_vllm_on_cpu_only(vllm_attention, vllm_platform):
    build("decoder", attn_implementation="vllm", hidden_size=64, num_attention_heads=2)  # head_dim 32: served
    build("decoder", attn_implementation="sdpa")  # head_dim 8, not built by vLLM
    vllm_platform.is_cpu = lambda: False  # vLLM checks its GPU backends' head sizes itself
    build("decoder", attn_implementation="vllm")

