"""The sparse mixture-of-experts feed-forward (moe.py) against transformers' Mixtral and Qwen2-MoE blocks, its
load-balancing loss against transformers' own, and the grouped (sort by expert) path against naive references."""

import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock, load_balancing_loss_func
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeSparseMoeBlock

import hf_tformer as ht
from conftest import tiny_config
from hf_tformer.moe import TformerSparseMoe, group_by_expert, load_balancing_loss, route

HIDDEN, EXPERTS, TOP_K, INNER = 32, 4, 2, 24


def moe_config(**overrides) -> ht.TformerDecoderConfig:
    values = dict(hidden_act="swiglu", mlp_bias=False, num_experts=EXPERTS, num_experts_per_tok=TOP_K,
                  moe_intermediate_size=INNER, position_embedding_type="rotary", norm_type="rmsnorm")
    return tiny_config("decoder", **{**values, **overrides})


def _randomize(module: torch.nn.Module) -> None:
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.3)


def _load_reference_weights(ours: TformerSparseMoe, reference: torch.nn.Module) -> None:
    """transformers 4.57 keeps one Linear per expert (Mixtral w1/w3/w2, Qwen2-MoE gate/up/down_proj); 5.x stores
    the experts fused as 3-D tensors: gate_up_proj (experts, 2 * inner, hidden), down_proj (experts, hidden, inner)."""
    with torch.no_grad():
        ours.gate.weight.copy_(reference.gate.weight)
        for index, expert in enumerate(ours.experts):
            if isinstance(reference.experts, torch.nn.ModuleList):
                theirs = reference.experts[index]
                names = ("w1", "w3", "w2") if hasattr(theirs, "w1") else ("gate_proj", "up_proj", "down_proj")
                gate, up, down = (getattr(theirs, name).weight for name in names)
            else:
                gate, up = reference.experts.gate_up_proj[index].chunk(2, dim=0)
                down = reference.experts.down_proj[index]
            expert.gate_proj.weight.copy_(gate)
            expert.up_proj.weight.copy_(up)
            expert.down_proj.weight.copy_(down)
        if hasattr(reference, "shared_expert"):
            for name in ("gate_proj", "up_proj", "down_proj"):
                getattr(ours.shared_expert, name).weight.copy_(getattr(reference.shared_expert, name).weight)
            ours.shared_expert_gate.weight.copy_(reference.shared_expert_gate.weight)


def _reference_outputs(reference: torch.nn.Module, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(output, router logits): 4.57's blocks return both; 5.x's return the output and record the router's."""
    output = reference(hidden)
    if isinstance(output, tuple):
        return output
    return output, reference.gate(hidden.reshape(-1, hidden.shape[-1]))[0]


def _native_config(kind: str, **overrides):
    shape = dict(hidden_size=HIDDEN, num_experts_per_tok=TOP_K, num_attention_heads=4, hidden_act="silu")
    if kind == "mixtral":
        return transformers.MixtralConfig(**shape, intermediate_size=INNER, num_local_experts=EXPERTS, **overrides)
    return transformers.Qwen2MoeConfig(**shape, moe_intermediate_size=INNER, num_experts=EXPERTS,
                                       shared_expert_intermediate_size=40, **overrides)


@pytest.mark.parametrize("kind, overrides, ours_overrides", [
    ("mixtral", {}, {}),
    ("qwen2_moe", {"norm_topk_prob": False}, {"norm_topk_prob": False, "shared_expert_intermediate_size": 40}),
    ("qwen2_moe", {"norm_topk_prob": True}, {"shared_expert_intermediate_size": 40}),
], ids=["mixtral", "qwen2-moe", "qwen2-moe-renormalised"])
def test_block_matches_transformers_outputs_and_router_logits(kind, overrides, ours_overrides):
    native = _native_config(kind, **overrides)
    block_class = MixtralSparseMoeBlock if kind == "mixtral" else Qwen2MoeSparseMoeBlock
    reference = block_class(native).eval()
    _randomize(reference)
    ours = TformerSparseMoe(moe_config(**ours_overrides)).eval()
    _load_reference_weights(ours, reference)
    hidden = torch.randn(3, 7, HIDDEN, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, expected_logits = _reference_outputs(reference, hidden)
        actual, logits = ours(hidden)
    torch.testing.assert_close(logits, expected_logits, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)


def _naive(ours: TformerSparseMoe, hidden: torch.Tensor) -> torch.Tensor:
    """Token by token, expert by expert: the definition the grouped path must equal."""
    tokens = hidden.reshape(-1, hidden.shape[-1])
    weights, experts = route(ours.gate(tokens), ours.top_k, ours.norm_topk_prob)
    rows = []
    for token, token_weights, token_experts in zip(tokens, weights, experts):
        row = torch.zeros_like(token)
        for weight, expert in zip(token_weights, token_experts.tolist()):
            row = row + weight * ours.experts[expert](token[None])[0]
        rows.append(row)
    return torch.stack(rows).reshape(hidden.shape)


def test_grouped_path_equals_a_naive_per_token_loop_and_the_traceable_dense_path():
    torch.manual_seed(0)
    ours = TformerSparseMoe(moe_config(num_experts=5, num_experts_per_tok=3)).eval()
    _randomize(ours)
    hidden = torch.randn(2, 9, HIDDEN)
    tokens = hidden.reshape(-1, HIDDEN)
    with torch.no_grad():
        grouped, _ = ours(hidden)
        naive = _naive(ours, hidden)
        weights, experts = route(ours.gate(tokens), ours.top_k, ours.norm_topk_prob)
        dense = ours._dense(tokens, weights, experts).reshape(hidden.shape)
        traced = torch.jit.trace(ours, hidden)(hidden)[0]  # tracing takes the dense path
    torch.testing.assert_close(grouped, naive, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(dense, grouped, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(traced, grouped, atol=1e-6, rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(tokens=st.integers(0, 12), num_experts=st.integers(1, 6), data=st.data())
def test_grouping_puts_each_assignment_in_its_experts_slice(tokens, num_experts, data):
    top_k = data.draw(st.integers(1, num_experts))
    picks = [data.draw(st.permutations(range(num_experts)))[:top_k] for _ in range(tokens)]
    experts = torch.tensor(picks, dtype=torch.long).reshape(tokens, top_k)
    order, counts = group_by_expert(experts, num_experts)
    assert sorted(order.tolist()) == list(range(tokens * top_k))  # a permutation of the assignments
    assert counts.tolist() == [sum(row.count(e) for row in picks) for e in range(num_experts)]
    start = 0
    for expert, count in enumerate(counts.tolist()):
        assignments = order[start:start + count]
        assert all(picks[a // top_k][a % top_k] == expert for a in assignments.tolist())
        assert assignments.tolist() == sorted(assignments.tolist())  # stable: token order kept within an expert
        start += count


@pytest.mark.parametrize("padded", [False, True])
def test_aux_loss_equals_transformers_load_balancing_loss(padded):
    generator = torch.Generator().manual_seed(0)
    logits = tuple(torch.randn(2 * 6, EXPERTS, generator=generator) for _ in range(3))  # 3 layers, batch 2 x 6
    mask = None
    if padded:
        mask = torch.ones(2, 6, dtype=torch.long)
        mask[1, 4:] = 0
    expected = load_balancing_loss_func(logits, EXPERTS, TOP_K, mask)
    torch.testing.assert_close(load_balancing_loss(logits, EXPERTS, TOP_K, mask), expected)


def test_model_returns_router_logits_of_moe_layers_and_adds_the_aux_loss():
    torch.manual_seed(0)
    config = moe_config(num_hidden_layers=3, moe_layers=[0, 2], router_aux_loss_coef=0.5)
    model = ht.TformerDecoderForCausalLM(config).eval()
    assert [type(block.mlp).__name__ for block in model.model.decoder.layers] == \
        ["TformerSparseMoe", "TformerFeedForward", "TformerSparseMoe"]
    ids = torch.randint(3, 90, (2, 6))
    with torch.no_grad():
        plain = model(ids, labels=ids)
        out = model(ids, labels=ids, output_router_logits=True)
    assert plain.router_logits is None and plain.aux_loss is None
    assert [tuple(logits.shape) for logits in out.router_logits] == [(12, EXPERTS)] * 2
    torch.testing.assert_close(out.aux_loss, load_balancing_loss_func(out.router_logits, EXPERTS, TOP_K, None))
    torch.testing.assert_close(out.loss, plain.loss + 0.5 * out.aux_loss)


def test_training_reaches_the_router_and_every_used_expert():
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(moe_config(num_hidden_layers=1)).train()
    ids = torch.randint(3, 90, (2, 8))
    model(ids, labels=ids, output_router_logits=True).loss.backward()
    moe = model.model.decoder.layers[0].mlp
    assert moe.gate.weight.grad.abs().sum() > 0  # through the routing weights and the aux loss
    assert all(expert.down_proj.weight.grad is not None for expert in moe.experts)


def test_padding_changes_neither_the_real_tokens_nor_the_aux_loss():
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(moe_config()).eval()
    row = torch.randint(3, 90, (1, 5))
    padded = torch.cat([row, torch.randint(3, 90, (1, 3))], dim=1)  # garbage after the real tokens
    mask = torch.tensor([[1] * 5 + [0] * 3])
    with torch.no_grad():
        alone = model(row, output_router_logits=True)
        with_padding = model(padded, attention_mask=mask, output_router_logits=True)
    torch.testing.assert_close(with_padding.logits[:, :5], alone.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(with_padding.aux_loss, alone.aux_loss)


@pytest.mark.parametrize("overrides, field", [
    ({"num_experts": -1}, "num_experts"),
    ({"num_experts_per_tok": 5}, "num_experts_per_tok"),
    ({"moe_layers": [2]}, "moe_layers"),
    ({"shared_expert_intermediate_size": -3}, "shared_expert_intermediate_size"),
    ({"router_aux_loss_coef": -0.1}, "router_aux_loss_coef"),
])
def test_bad_moe_fields_are_named(overrides, field):
    with pytest.raises(ValueError, match=field):
        moe_config(**overrides)


def test_moe_is_refused_outside_the_decoder():
    with pytest.raises(ValueError, match="decoder variant"):
        tiny_config("encoder", num_experts=4)
