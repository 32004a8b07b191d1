"""bench/gpu_measure.py: the profiler names the SDPA kernel that ran, the spy reports the mask SDPA got, the FLOP
count and the atomic JSON writer."""

import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from hf_tformer_bench import gpu_measure as gm

CPU = torch.device("cpu")
QUERY = torch.randn(1, 2, 16, 8, generator=torch.Generator().manual_seed(0))


def attend(**kwargs):
    return lambda: F.scaled_dot_product_attention(QUERY, QUERY, QUERY, **kwargs)


def test_profiler_names_the_kernel_that_ran_and_a_refused_restriction():
    assert gm.sdpa_kernels(attend(), CPU) == ["cpu_flash"]
    with sdpa_kernel(SDPBackend.MATH):
        assert gm.sdpa_kernels(attend(), CPU) == ["math"]
    assert gm.sdpa_kernels(lambda: QUERY @ QUERY.transpose(-1, -2), CPU) == []
    assert gm.forced_kernels(attend(is_causal=True), CPU) == ["cpu_flash"]
    refused = gm.forced_kernels(attend(), CPU, "EFFICIENT_ATTENTION")  # no CPU kernel of that kind
    assert len(refused) == 1 and refused[0].startswith("error: "), refused


def test_mask_spy_reports_what_sdpa_was_handed_and_restores_it():
    mask = torch.zeros(1, 1, 16, 16)
    assert gm.sdpa_masks(attend(is_causal=True)) == ["none, causal"]
    assert gm.sdpa_masks(attend(attn_mask=mask)) == ["float32 (1, 1, 16, 16)"]
    assert gm.sdpa_masks(lambda: F.scaled_dot_product_attention(QUERY, QUERY, QUERY, mask.bool())) == [
        "bool (1, 1, 16, 16)"]
    assert F.scaled_dot_product_attention is torch.nn.functional.scaled_dot_product_attention
    assert F.scaled_dot_product_attention.__name__ == "scaled_dot_product_attention"


def test_forward_flops_counts_linears_and_halves_causal_attention():
    layer = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    assert gm.linear_parameters(layer) == 64
    full = gm.forward_flops(64, layers=1, hidden=4, batch=2, seq=10, causal=False)
    assert full == 2 * 64 * 20 + 4 * 100 * 4 * 2
    assert gm.forward_flops(64, layers=1, hidden=4, batch=2, seq=10, causal=True) == 2 * 64 * 20 + 2 * 100 * 4 * 2


def test_json_is_written_atomically_over_an_old_file(tmp_path):
    path = tmp_path / "out" / "r.json"
    gm.write_json(path, {"a": 1})
    gm.write_json(path, {"a": 2, "b": [1.5]})
    assert json.loads(path.read_text()) == {"a": 2, "b": [1.5]}
    assert [child.name for child in path.parent.iterdir()] == ["r.json"]
