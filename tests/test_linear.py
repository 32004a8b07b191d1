"""TformerLinear's CPU paths: the same arithmetic as F.linear, taken exactly where they are meant to be."""

import warnings

import pytest
import torch
from torch.nn import functional as F
from torch.profiler import profile

import hf_tformer as ht
from conftest import random_ids, tiny_config
from hf_tformer.linear import TformerLinear, onednn_linear_available, upcast_half_matmul, use_onednn_linear

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="torch build without oneDNN linear (non-x86)")
ONEDNN_OP = "mkldnn::_linear_pointwise"


def ops_run(fn) -> set:
    with profile() as prof:
        fn()
    return {event.name for event in prof.events()}


def vocabulary_projection() -> TformerLinear:
    """A GPT-2-like head shape, scaled down: 2**21 weight elements, the smallest that takes the oneDNN path."""
    torch.manual_seed(0)
    return TformerLinear(64, 32768).eval()


@needs_onednn
@pytest.mark.parametrize("rows", [1, 16, 128])
def test_large_weight_few_rows_without_grad_runs_onednn_and_matches_f_linear(rows):
    linear = vocabulary_projection()
    hidden = torch.randn(1, rows, 64)
    with torch.no_grad():
        assert ONEDNN_OP in ops_run(lambda: linear(hidden))
        torch.testing.assert_close(linear(hidden), F.linear(hidden, linear.weight, linear.bias), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_non_contiguous_rows_and_no_bias_match_f_linear():
    torch.manual_seed(0)
    linear = TformerLinear(64, 32768, bias=False).eval()
    last_positions = torch.randn(3, 7, 64)[:, -1:, :]  # (batch, 1, hidden), strided
    with torch.no_grad():
        out = linear(last_positions)
    assert out.shape == (3, 1, 32768)
    torch.testing.assert_close(out, F.linear(last_positions, linear.weight), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_path_is_skipped_where_it_does_not_apply():
    linear = vocabulary_projection()
    hidden = torch.randn(1, 4, 64)
    # Autograd: training and gradient checks see F.linear.
    assert ONEDNN_OP not in ops_run(lambda: linear(hidden))
    with torch.no_grad():
        assert ONEDNN_OP not in ops_run(lambda: linear(torch.randn(1, 129, 64)))  # compute-bound: MKL
        assert ONEDNN_OP not in ops_run(lambda: TformerLinear(64, 64)(hidden))  # per-call cost dominates
        assert ONEDNN_OP not in ops_run(lambda: linear.to(torch.bfloat16)(hidden.bfloat16()))
        linear.float()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about TF32 on Intel GPUs when the flags are touched
            with torch.backends.mkldnn.flags(enabled=False):
                assert ONEDNN_OP not in ops_run(lambda: linear(hidden))
        # TorchScript tracing (the ONNX exporter) records the portable op.
        traced = torch.jit.trace(linear, hidden)
        assert "aten::linear" in str(traced.graph) and "mkldnn" not in str(traced.graph)


@needs_onednn
def test_torch_compile_traces_f_linear_in_one_graph():
    linear = vocabulary_projection()
    hidden = torch.randn(1, 1, 64)
    compiled = torch.compile(linear, fullgraph=True, backend="eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(hidden), F.linear(hidden, linear.weight, linear.bias))


def test_the_availability_probe_leaves_the_random_stream_alone():
    onednn_linear_available.cache_clear()
    before = torch.get_rng_state()
    onednn_linear_available()
    assert torch.equal(before, torch.get_rng_state())


def test_tensor_subclasses_take_f_linear():
    class Tagged(torch.Tensor):
        pass

    weight = torch.zeros(32768, 64)
    with torch.no_grad():
        assert not use_onednn_linear(torch.zeros(1, 64).as_subclass(Tagged), weight)
        assert not use_onednn_linear(torch.zeros(1, 64), weight.as_subclass(Tagged))


@needs_onednn
def test_generation_with_a_large_vocabulary_is_unchanged_by_the_onednn_path():
    # The LM head (32 x 65536) takes oneDNN while decoding; prefill and decode steps must agree with plain F.linear.
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder", vocab_size=65536)).eval()
    ids = random_ids(2, 6)
    with torch.no_grad():
        fast = model(ids).logits
        assert ONEDNN_OP in ops_run(lambda: model(ids[:, :1]))
        fast_tokens = model.generate(ids, max_new_tokens=6, do_sample=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.backends.mkldnn.flags(enabled=False):
                reference = model(ids).logits
                reference_tokens = model.generate(ids, max_new_tokens=6, do_sample=False)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)
    assert torch.equal(fast_tokens, reference_tokens)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_matches_an_fp32_product_rounded_once(dtype):
    torch.manual_seed(0)
    linear = TformerLinear(64, 48).to(dtype)
    hidden = torch.randn(2, 8, 64, dtype=dtype)
    with torch.no_grad():
        out = linear(hidden)
        expected = F.linear(hidden.float(), linear.weight.float(), linear.bias.float()).to(dtype)
    assert out.dtype == dtype
    if upcast_half_matmul(hidden):  # CPUs without native bf16: exactly the fp32 product, rounded once
        assert torch.equal(out, expected)
    else:  # a native half GEMM accumulates in fp32 too; the rounding of the output may differ by an ulp
        torch.testing.assert_close(out, expected, rtol=1e-2, atol=1e-2)
