"""Output folders never cost the user a file: refused destinations, the swap, two writers, a killed writer's leftovers.

The writers race as real processes (subprocess); files on disk act as barriers, so no timing decides a result.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hf_tformer_conversion import staging
from hf_tformer_conversion.staging import DestinationBusyError, check_destination, claim_destination, staged_folder

# staging.py imports only the standard library: loaded alone, a writer starts in milliseconds, not after torch
WRITER = """
import importlib.util, sys, time
from pathlib import Path

spec = importlib.util.spec_from_file_location("staging", sys.argv[7])
staging = importlib.util.module_from_spec(spec)
spec.loader.exec_module(staging)
destination, force, go, ready, hold = Path(sys.argv[1]), sys.argv[2] == "force", Path(sys.argv[3]), \\
    Path(sys.argv[4]), float(sys.argv[5])
ready.with_suffix(".started").touch()  # imported
while not go.exists():  # every writer starts together
    time.sleep(0.005)
try:
    with staging.staged_folder(destination, force) as folder:
        (folder / "config.json").write_text(sys.argv[6])
        ready.touch()
        time.sleep(hold)  # the work: the other writers arrive meanwhile
except ValueError as error:
    print(error)
    sys.exit(1)
"""


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def hidden_beside(destination: Path) -> list[str]:
    return sorted(p.name for p in destination.parent.iterdir() if p.name.startswith(f".{destination.name}."))


def checkpoint(folder: Path, text: str = "old") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(text)
    (folder / "model.safetensors").write_bytes(os.urandom(64))
    return folder


def writer(tmp_path: Path, destination: Path, *, force: bool, name: str, hold: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(destination), "force" if force else "-",
                             str(tmp_path / "go"), str(tmp_path / f"{name}.ready"), str(hold), name, staging.__file__],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("case", ["is the source", "contains the source", "inside the source", "the cwd",
                                  "an ancestor of the cwd", "a file", "a symlink", "unrelated files"])
def test_refused_destinations_name_the_paths_and_touch_nothing(tmp_path, monkeypatch, case):
    source = checkpoint(tmp_path / "models" / "source")
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "link").symlink_to(checkpoint(tmp_path / "other"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    destination, expected = {
        "is the source": (source, "is the source folder"),
        "contains the source": (tmp_path / "models", "contains the source folder"),
        "inside the source": (source / "onnx", "is inside the source folder"),
        "the cwd": (Path("."), "is the working directory"),
        "an ancestor of the cwd": (tmp_path / "home", "is the working directory"),
        "a file": (tmp_path / "file.txt", "is a file, not a folder"),
        "a symlink": (tmp_path / "link", "is a symbolic link"),
        "unrelated files": (tmp_path / "mine", "is not an output folder"),
    }[case]
    before = tree(tmp_path)
    with pytest.raises(ValueError, match=expected) as refused:
        with staged_folder(destination, force=True, sources=[source]) as folder:
            (folder / "config.json").write_text("new")
    assert str(destination) in str(refused.value)
    assert tree(tmp_path) == before and sorted(os.listdir(tmp_path)) == ["file.txt", "home", "link", "mine",
                                                                          "models", "other"]


def test_force_replaces_only_outputs_and_the_empty(tmp_path):
    for name, content in (("checkpoint", "config.json"), ("export", "model.onnx"), ("empty", None)):
        (tmp_path / name).mkdir()
        if content:
            (tmp_path / name / content).write_text("old")
        check_destination(tmp_path / name, force=True)  # no error
        with pytest.raises(ValueError, match="exists; pass --force"):
            check_destination(tmp_path / name, force=False)
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "summary.json").write_text("{}")
    with pytest.raises(ValueError, match="is not an output folder"):
        check_destination(tmp_path / "report", force=True)
    check_destination(tmp_path / "report", force=True, markers=("summary.json",))  # the demo's own marker


def test_force_swaps_the_new_folder_in_and_never_deletes_the_old_one_first(tmp_path, monkeypatch):
    destination = checkpoint(tmp_path / "out")
    deleted = []
    real_rmtree = staging.shutil.rmtree
    monkeypatch.setattr(staging.shutil, "rmtree", lambda path, *a, **k: (deleted.append(Path(path)),
                                                                          real_rmtree(path, *a, **k)))
    with staged_folder(destination, force=True) as folder:
        (folder / "config.json").write_text("new")
    assert tree(destination) == {"config.json": b"new"}
    assert destination not in deleted and all(p.name.startswith(".out.hf-tformer-") for p in deleted)
    assert hidden_beside(destination) == []


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_a_failed_swap_leaves_the_old_folder_byte_for_byte(tmp_path, monkeypatch, swap):
    destination = checkpoint(tmp_path / "out")
    before = tree(destination)
    real_rename = os.rename

    def rename(source, target, *args, **kwargs):  # moving the new folder into place fails (e.g. EIO)
        if Path(target) == destination and Path(source).name.startswith(".out."):
            if "-old-" not in Path(source).name:  # putting the old one back must still work
                raise OSError(5, "Input/output error", str(target))
        return real_rename(source, target, *args, **kwargs)

    def exchange(source, target, flags):
        raise OSError(5, "Input/output error", str(target))

    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(staging, "_renameat2", exchange if swap == "exchange" else lambda *a: False, raising=False)
    with pytest.raises(OSError, match="Input/output error"):
        with staged_folder(destination, force=True) as folder:
            (folder / "config.json").write_text("new")
    assert tree(destination) == before
    assert hidden_beside(destination) == []


def test_two_racing_writers_exactly_one_wins(tmp_path):
    destination = tmp_path / "out"
    for force in (False, True):
        if force:  # a second round over the first round's output
            (tmp_path / "go").unlink()
        names = [f"w{i}{force}" for i in range(3)]
        writers = [writer(tmp_path, destination, force=force, name=name, hold=2.0) for name in names]
        while not all((tmp_path / f"{name}.started").exists() for name in names):  # all imported: then go
            assert all(w.poll() is None for w in writers), [w.communicate() for w in writers]
            time.sleep(0.01)
        (tmp_path / "go").touch()
        results = [(w.wait(timeout=120), w.communicate()) for w in writers]
        winners = [i for i, (code, _) in enumerate(results) if code == 0]
        assert len(winners) == 1, results
        for code, (out, err) in results:
            assert code == 0 or "another hf-tformer process is writing" in out, (out, err)
            assert code == 0 or str(destination) in out and "(pid " in out
        assert (destination / "config.json").read_text() == f"w{winners[0]}{force}"
        assert hidden_beside(destination) == []


def test_a_second_writer_after_the_first_finished_is_refused_without_force(tmp_path):
    destination = tmp_path / "out"
    (tmp_path / "go").touch()
    first = writer(tmp_path, destination, force=False, name="first")
    assert first.wait(timeout=120) == 0, first.communicate()
    second = writer(tmp_path, destination, force=False, name="second")
    assert second.wait(timeout=120) == 1
    assert "exists; pass --force" in second.communicate()[0]
    assert (destination / "config.json").read_text() == "first"


def test_a_killed_writers_leftovers_are_cleaned_by_the_next_run(tmp_path):
    destination = tmp_path / "out"
    (tmp_path / "go").touch()
    killed = writer(tmp_path, destination, force=False, name="killed", hold=600)
    while not (tmp_path / "killed.ready").exists():
        assert killed.poll() is None, killed.communicate()
        time.sleep(0.01)
    killed.kill()  # SIGKILL mid-write: no cleanup runs
    killed.wait()
    left = hidden_beside(destination)
    assert any("-staging-" in name for name in left) and not destination.exists()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:  # a live process's folder of the same shape is never touched
        live = tmp_path / f".out.hf-tformer-staging-{sleeper.pid}-abc123"
        live.mkdir()
        with staged_folder(destination, force=False) as folder:
            (folder / "config.json").write_text("next")
        assert hidden_beside(destination) == [live.name]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert tree(destination) == {"config.json": b"next"}


def test_a_folder_swapped_out_by_a_killed_run_is_put_back(tmp_path):
    destination = tmp_path / "out"
    aside = checkpoint(tmp_path / f".out.hf-tformer-old-{dead_pid()}-x1y2z3")  # killed between the two renames
    before = tree(aside)
    with pytest.raises(ValueError, match="exists; pass --force"):
        with staged_folder(destination, force=False) as folder:
            (folder / "config.json").write_text("new")
    assert tree(destination) == before and hidden_beside(destination) == []


def test_the_claim_is_held_from_the_start_of_the_work(tmp_path):
    destination = tmp_path / "a" / "b" / "out"
    with claim_destination(destination, force=False) as claim:
        assert (destination.parent / ".out.hf-tformer-lock").read_text() == f"{os.getpid()}\n"
        with pytest.raises(DestinationBusyError, match=rf"writing {destination} \(pid {os.getpid()}\)"):
            with claim_destination(destination, force=False):
                pass
        with claim.staged() as folder:
            (folder / "config.json").write_text("{}")
    assert os.listdir(destination.parent) == ["out"]  # the lock file is gone
    with pytest.raises(RuntimeError):
        with claim_destination(tmp_path / "c" / "d" / "out", force=False):
            raise RuntimeError("the work failed")
    assert not (tmp_path / "c").exists()  # parents created for a failed run are removed again


def test_a_full_disk_is_reported_at_the_destination(tmp_path):
    from safetensors import SafetensorError

    for error in (OSError(28, "No space left on device"),
                  SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")):
        with pytest.raises(OSError) as full:
            with staged_folder(tmp_path / "out", force=False):
                raise error
        assert full.value.errno == 28 and full.value.filename == str(tmp_path / "out")
        assert os.listdir(tmp_path) == []
