"""The fine-tuning example runs a few Trainer steps with gradient checkpointing and its loss falls."""

import sys
from pathlib import Path

import pytest
from transformers import pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))  # examples/ are scripts, not a package
from fine_tune import fine_tune  # noqa: E402


@pytest.mark.parametrize("task, pipeline_task", [("classification", "text-classification"),
                                                 ("causal-lm", "text-generation")])
def test_fine_tuning_lowers_the_loss_and_saves_a_usable_checkpoint(tmp_path, task, pipeline_task):
    out = tmp_path / task
    losses = fine_tune(task, out, steps=30)
    assert losses[-1] < 0.8 * losses[0], losses  # 30 steps: ~-30% (causal LM) to ~-99% (classification)
    pipe = pipeline(pipeline_task, model=str(out), trust_remote_code=True)
    assert pipe("paris is the capital of france", **({"max_new_tokens": 3} if task == "causal-lm" else {}))


def test_an_existing_destination_is_not_overwritten_without_force(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit, match="--force"):
        fine_tune("classification", tmp_path / "runs", steps=1)


def test_force_never_deletes_a_folder_of_other_files(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    with pytest.raises(SystemExit, match="not an output folder"):
        fine_tune("classification", notes, steps=1, force=True)
    assert (notes / "thesis.txt").read_text() == "years of work"


def test_force_replaces_an_earlier_run_in_one_swap(tmp_path):
    out = tmp_path / "run"
    fine_tune("classification", out, steps=1)
    (out / "stale.txt").write_text("from the earlier run")
    fine_tune("classification", out, steps=1, force=True)
    assert (out / "config.json").is_file() and not (out / "stale.txt").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["run"]  # no staging or lock folder left beside it
