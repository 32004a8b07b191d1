"""User errors through the real command lines: one line `error: ...` naming the path and the fix, exit status 1, no
traceback, and not one byte of the source, the working directory or unrelated files lost.

Most cases call `hf-tformer`'s main(argv) in this process (an escaping exception fails the test, as a traceback
would); a few run the installed entry points as subprocesses to see exactly what a user sees.
"""

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

import hf_tformer as ht
from conftest import tiny_config
from hf_tformer_cli.__main__ import main

BERT = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def user(tmp_path, hf_home, monkeypatch):
    """A user's folder: a BERT checkpoint, an hf_tformer checkpoint, notes, a folder of their own files; the working
    directory is user/work (with notes of its own)."""
    root = tmp_path / "user"
    torch.manual_seed(0)
    BertModel(BertConfig(**BERT)).save_pretrained(root / "bert")
    ht.TformerEncoderForMaskedLM(tiny_config("encoder")).eval().save_pretrained(root / "ours")
    (root / "notes.txt").write_text("my notes")
    (root / "mine").mkdir()
    (root / "mine" / "thesis.tex").write_text("years of work")
    (root / "work").mkdir()
    (root / "work" / "todo.txt").write_text("things")
    monkeypatch.chdir(root / "work")
    return root


def fails_cleanly(argv: list[str], capsys, *named: object) -> str:
    """Run `hf-tformer ARGV`; assert exit status 1 and one `error:` line naming `named`; return that line."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err, err[-3000:]
    for name in named:
        assert str(name) in errors[0], errors[0]
    return errors[0]


DESTINATIONS = {  # case -> (argv in the user's folder, what the message says)
    "convert SRC SRC --force": (["convert", "{u}/bert", "{u}/bert", "--force"], "is the source folder"),
    "convert SRC PARENT_OF_SRC --force": (["convert", "{u}/bert", "{u}", "--force"], "contains the source folder"),
    "convert SRC SRC/sub": (["convert", "{u}/bert", "{u}/bert/converted"], "is inside the source folder"),
    "convert SRC . --force": (["convert", "{u}/bert", ".", "--force"], "is the working directory"),
    "convert SRC ANCESTOR_OF_CWD --force": (["convert", "{u}/bert", "{u}/work/..", "--force"], "contains the source"),
    "convert SRC UNRELATED --force": (["convert", "{u}/bert", "{u}/mine", "--force"], "is not an output folder"),
    "convert SRC FILE --force": (["convert", "{u}/bert", "{u}/notes.txt", "--force"], "is a file, not a folder"),
    "--to-native into its own folder": (["convert", "--to-native", "bert", "{u}/ours", "{u}/ours", "--force"],
                                        "is the source folder"),
    "--to-native into the cwd": (["convert", "--to-native", "bert", "{u}/ours", ".", "--force"],
                                 "is the working directory"),
}
EXPORTS = {
    "export onnx CKPT CKPT --force": (["export", "onnx", "{u}/ours", "{u}/ours", "--force"], "is the source folder"),
    "export onnx CKPT CKPT/onnx": (["export", "onnx", "{u}/ours", "{u}/ours/onnx"], "is inside the source folder"),
    "export onnx CKPT . --force": (["export", "onnx", "{u}/ours", ".", "--force"], "is the working directory"),
}


def refused_destination(argv: list[str], expected: str, user: Path, capsys, extra: tuple[str, ...] = ()) -> None:
    argv = [a.format(u=user) for a in argv]
    destination = argv[-2] if argv[-1] == "--force" else argv[-1]
    before = tree(user)
    line = fails_cleanly([*argv, *extra], capsys, destination)
    assert expected in line
    assert tree(user) == before  # the source, the working directory and the user's own files, byte for byte
    assert sorted(p.name for p in user.iterdir()) == ["bert", "mine", "notes.txt", "ours", "work"]


@pytest.mark.parametrize("case", DESTINATIONS, ids=list(DESTINATIONS))
def test_convert_refuses_destinations_that_would_lose_files(case, user, capsys):
    refused_destination(*DESTINATIONS[case], user, capsys, extra=("--no-progress",))


@pytest.mark.parametrize("case", EXPORTS, ids=list(EXPORTS))
def test_export_refuses_destinations_that_would_lose_files(case, user, capsys):
    refused_destination(*EXPORTS[case], user, capsys, extra=("--task", "fill-mask", "--no-progress"))


@pytest.mark.parametrize("argv, named, expected", [
    (["convert", "{u}/nope", "{u}/out"], "{u}/nope", "does not exist"),
    (["convert", "{u}/notes.txt", "{u}/out"], "{u}/notes.txt", "is a file, not a folder"),
    (["convert", "--to-native", "bert", "{u}/nope", "{u}/out"], "{u}/nope", "does not exist"),
    (["convert", "--to-native", "bert", "{u}/notes.txt", "{u}/out"], "{u}/notes.txt", "is a file, not a folder"),
], ids=["convert missing", "convert file", "to-native missing", "to-native file"])
def test_a_missing_source_or_a_file_is_named(argv, named, expected, user, capsys):
    line = fails_cleanly([a.format(u=user) for a in argv], capsys, named.format(u=user))
    assert expected in line and not (user / "out").exists()


@pytest.mark.parametrize("config, expected", [
    ("{not json", "is not valid JSON"),
    ('["a list"]', "not an object"),
    ('{"architectures": ["BertModel"]}', "model_type=None is not supported"),
], ids=["invalid JSON", "not an object", "no model_type"])
def test_a_bad_config_json_is_named(config, expected, user, capsys):
    (user / "bert" / "config.json").write_text(config)
    line = fails_cleanly(["convert", user / "bert", user / "out"], capsys, user / "bert" / "config.json")
    assert expected in line and not (user / "out").exists()


def test_a_read_only_parent_is_named_before_any_work(user, capsys, monkeypatch):
    read_only = user / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permission bits: refuse as the kernel would for anyone else
        real_open, real_mkdir = os.open, os.mkdir

        def refuse(real):
            def call(path, *args, **kwargs):
                if Path(path).parent == read_only:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return real(path, *args, **kwargs)
            return call

        monkeypatch.setattr(os, "open", refuse(real_open))
        monkeypatch.setattr(os, "mkdir", refuse(real_mkdir))
    try:
        line = fails_cleanly(["convert", user / "bert", read_only / "out"], capsys, read_only)
    finally:
        read_only.chmod(0o755)
    assert line.startswith("error: permission denied") and "choose a folder you can write to" in line
    assert list(read_only.iterdir()) == []


def test_a_full_disk_names_the_destination_and_leaves_nothing(user, capsys, monkeypatch):
    import transformers.modeling_utils
    from safetensors import SafetensorError

    def full(*args, **kwargs):  # what safetensors raises when the disk fills (measured on a 64 KiB tmpfs)
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", full)
    line = fails_cleanly(["convert", user / "bert", user / "out", "--no-progress"], capsys, user / "out")
    assert "no space left" in line and "Free some space" in line
    assert sorted(p.name for p in user.iterdir()) == ["bert", "mine", "notes.txt", "ours", "work"]


def test_pickled_weights_are_refused_with_the_flag_to_pass(user, capsys):
    torch.manual_seed(0)
    model = BertModel(BertConfig(**BERT))
    model.save_pretrained(user / "pickled")
    (user / "pickled" / "model.safetensors").unlink()  # transformers 5 saves no pickles: write one as 4.x did
    torch.save(model.state_dict(), user / "pickled" / "pytorch_model.bin")
    line = fails_cleanly(["convert", user / "pickled", user / "out"], capsys, user / "pickled")
    assert "--allow-pickle" in line and not (user / "out").exists()


@pytest.mark.parametrize("opset", [11, 13, 99])
def test_an_opset_the_exporter_cannot_write_is_refused_before_any_work(opset, user, capsys):
    line = fails_cleanly(["export", "onnx", user / "ours", user / "onnx", "--task", "fill-mask", "--opset", opset],
                         capsys, f"--opset {opset}")
    assert "leave --opset out" in line and not (user / "onnx").exists()


def test_export_names_a_missing_checkpoint_and_a_bad_config(user, capsys):
    fails_cleanly(["export", "onnx", user / "nope", user / "onnx", "--task", "fill-mask"], capsys,
                  f"{user / 'nope'} does not exist")
    (user / "ours" / "config.json").write_text("{not json")
    fails_cleanly(["export", "onnx", user / "ours", user / "onnx", "--task", "fill-mask"], capsys,
                  f"{user / 'ours' / 'config.json'} is not valid JSON")


def run_entry_point(argv: list[object], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_the_conversion_entry_point_prints_one_line_and_no_traceback(user):
    before = tree(user)
    result = run_entry_point([sys.executable, "-m", "hf_tformer_conversion", user / "bert", user / "bert", "--force"],
                             user / "work")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {user / 'bert'} is the source folder"), errors
    assert tree(user) == before


def test_the_export_entry_point_prints_one_line_and_no_traceback(user):
    before = tree(user)
    result = run_entry_point([sys.executable, "-m", "hf_tformer_export", "onnx", user / "ours", user / "ours",
                              "--force", "--task", "fill-mask"], user / "work")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"error: {user / 'ours'} is the source folder" in result.stderr
    assert tree(user) == before
