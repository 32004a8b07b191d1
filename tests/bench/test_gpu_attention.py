"""bench/gpu_attention.py end to end on CPU with --quick: every section reaches the JSON, with sane figures."""

import json
import math

import pytest
import torch

from hf_tformer_bench.gpu_attention import main

MODELS = {"encoder", "decoder"}


def positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def run_quick(tmp_path, *extra: str) -> dict:
    threads = torch.get_num_threads()
    try:  # one thread: two OpenMP threads on two shared cores wait on each other for whole scheduler slices
        main(["--device", "cpu", "--quick", "--threads", "1", "--out", str(tmp_path / "r.json"), *extra])
    finally:
        torch.set_num_threads(threads)
        assert [path.name for path in tmp_path.iterdir()] == ["r.json"]  # written atomically, no temporary left
    return json.loads((tmp_path / "r.json").read_text())


def check_sections(results: dict) -> None:
    assert list(results) == ["environment", "forward", "backends", "memory", "peak_fraction", "agreement"]
    assert {(row["model"], row["seq"]) for row in results["forward"]} == {(m, s) for m in MODELS for s in (64, 128)}
    for row in results["forward"]:
        assert all(positive(row[key]) for key in ("native_ms", "ours_ms", "ratio", "ours_ones_mask_ms")), row
        assert math.isfinite(row["max_abs_diff"]) and row["max_abs_diff"] < 0.1, row
    for row in results["backends"]:
        assert row["ours"] and row["native"], row  # every case ran some SDPA kernel
    no_mask = {row["model"]: row for row in results["backends"]
               if row["mask"] == "none" and row["use_cache"] == ("default" if row["model"] == "encoder" else False)}
    assert no_mask["encoder"]["ours"] == ["cpu_flash"] and no_mask["encoder"]["ours_sdpa_mask"] == ["none"]
    assert no_mask["decoder"]["ours"] == ["cpu_flash"] and no_mask["decoder"]["ours_sdpa_mask"] == ["none, causal"]
    assert results["memory"] == {"available": False, "note": "n/a (cuda only)"}
    assert positive(results["peak_fraction"]["matmul_tflops"])
    assert len(results["peak_fraction"]["rows"]) == 4
    assert all(positive(row["ours_fraction"]) and positive(row["native_fraction"])
               for row in results["peak_fraction"]["rows"])


def agreement(results: dict) -> dict:
    return {(row["model"], row["implementation"]): row for row in results["agreement"]}


def test_quick_cpu_run_fills_every_section_flex_left_out(tmp_path):
    results = run_quick(tmp_path, "--skip", "flex_attention")
    check_sections(results)
    rows = agreement(results)
    for model in MODELS:
        assert rows[model, "sdpa"]["passed"] and rows[model, "eager"]["passed"]
        assert rows[model, "flex_attention"]["skipped"] == "--skip"
        assert "CUDA" in rows[model, "flash_attention_2"]["skipped"]


@pytest.mark.once  # flex attention compiles its kernel (inductor)
def test_quick_cpu_run_with_flex_attention_agrees(tmp_path):
    rows = agreement(run_quick(tmp_path, "--skip", "eager"))
    for model in MODELS:
        assert rows[model, "flex_attention"]["passed"], rows[model, "flex_attention"]
        assert rows[model, "flex_attention"]["max_abs_diff"] > 0  # the bf16 run really ran, not the fp32 reference


def test_unknown_skip_is_refused_by_name(capsys):
    with pytest.raises(SystemExit):
        main(["--device", "cpu", "--quick", "--skip", "flash"])
    assert "--skip flash: not one of" in capsys.readouterr().err


def test_a_failing_section_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    import hf_tformer_bench.gpu_attention as bench

    def out_of_memory(*args):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(bench, "memory_section", out_of_memory)
    with pytest.raises(ValueError, match="sections memory failed"):
        run_quick(tmp_path, "--skip", "flex_attention,eager")
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["memory"] == {"error": "RuntimeError: CUDA out of memory (simulated)"}
    assert {row["implementation"] for row in results["agreement"] if row.get("passed")} == {"sdpa"}
