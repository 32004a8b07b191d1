"""The one `hf-tformer` command: help at every level, exit codes, convert / export end to end, old entry points."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import GPT2Config, GPT2LMHeadModel

import hf_tformer as ht
from conftest import tiny_config
from hf_tformer_cli.__main__ import BENCHES, main

HELP = [["--help"], ["--version"], ["convert", "--help"], ["export", "--help"], ["export", "onnx", "--help"],
        ["bench", "--help"], *[["bench", name, "--help"] for name in BENCHES], ["demo", "--help"]]
BAD_USAGE = [[], ["bogus"], ["export"], ["export", "pdf"], ["bench"], ["bench", "nope"], ["convert"],
             ["convert", "a", "b", "--bogus"], ["export", "onnx", "a", "b"]]


def exit_code(argv: list[str]) -> int:
    """What `hf-tformer ARGV` exits with: main's return value, or argparse's SystemExit code."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


@pytest.mark.parametrize("argv", HELP, ids=" ".join)
def test_help_at_every_level_exits_0(argv, capsys):
    assert exit_code(argv) == 0
    out = capsys.readouterr().out
    if argv == ["--version"]:
        assert out.startswith("hf-tformer 0.")
    elif argv[0] == "demo":  # the demo's own parser answers (hf_tformer_demo names itself)
        assert out.startswith("usage: ") and "demo" in out.splitlines()[0], out[:200]
    else:  # the usage line names the command as typed
        assert out.startswith(f"usage: {' '.join(['hf-tformer', *argv[:-1]])}"), out[:200]


@pytest.mark.parametrize("argv", BAD_USAGE, ids=lambda argv: " ".join(argv) or "nothing")
def test_bad_usage_exits_2_with_argparses_message(argv, capsys):
    assert exit_code(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_console_script_is_the_one_command_and_help_imports_nothing_heavy():
    script = Path(sys.executable).parent / "hf-tformer"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("convert", "export", "optimum-cli", "bench", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize("argv", [["--help"], ["convert", "--help"], ["export", "onnx", "--help"]], ids=" ".join)
def test_help_imports_nothing_heavy(argv):
    """A command's --help answers at once: no torch, transformers or optimum import (convert --help took 15-20 s
    when its parser imported the converters)."""
    check = (f"import sys\nfrom hf_tformer_cli.__main__ import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n"
             "    pass\nprint(sorted({'torch', 'transformers', 'optimum'} & set(sys.modules)))")
    loaded = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip().splitlines()[-1] == "[]", loaded.stdout[-500:]


def test_commands_print_no_import_noise(tmp_path, hf_home):
    """torchao (installed beside transformers) logs CUDA kernels it cannot load, and torch's pytree warns about its
    enums, on every import of transformers: the command lines silence both (hf_tformer_conversion/quiet.py)."""
    source = tmp_path / "gpt2"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=32)).save_pretrained(source)
    script = Path(sys.executable).parent / "hf-tformer"
    result = subprocess.run([str(script), "convert", str(source), str(tmp_path / "out"), "--no-progress"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Failed to load" not in result.stderr and "_pytree" not in result.stderr, result.stderr[-3000:]


def test_convert_matches_the_old_entry_point_and_goes_back(tmp_path, hf_home, capsys):
    torch.manual_seed(0)
    source = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=120, n_positions=64, n_embd=32, n_layer=2, n_head=4)).save_pretrained(source)
    assert main(["convert", str(source), str(tmp_path / "new"), "--no-progress"]) == 0
    assert "converted GPT2LMHeadModel" in capsys.readouterr().out
    old = subprocess.run([sys.executable, "-m", "hf_tformer_conversion", str(source), str(tmp_path / "old"),
                          "--no-progress"], capture_output=True, text=True, timeout=120)
    assert old.returncode == 0, old.stderr[-2000:]
    new_weights, old_weights = (load_file(tmp_path / name / "model.safetensors") for name in ("new", "old"))
    assert new_weights.keys() == old_weights.keys()
    for key in new_weights:
        torch.testing.assert_close(new_weights[key], old_weights[key], rtol=0, atol=0)
    assert (json.loads((tmp_path / "new" / "config.json").read_text())
            == json.loads((tmp_path / "old" / "config.json").read_text()))
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(p.name for p in (tmp_path / "old").iterdir())

    assert main(["convert", "--to-native", "gpt2", str(tmp_path / "new"), str(tmp_path / "back")]) == 0
    assert json.loads((tmp_path / "back" / "config.json").read_text())["model_type"] == "gpt2"
    back = load_file(tmp_path / "back" / "model.safetensors")
    original = load_file(source / "model.safetensors")
    for key in back:
        torch.testing.assert_close(back[key], original[key], rtol=0, atol=0)

    capsys.readouterr()
    assert main(["convert", str(source), str(tmp_path / "new")]) == 1  # exists, no --force: our ValueError
    assert capsys.readouterr().err.startswith("error: ")


def save_encoder(tmp_path) -> Path:
    torch.manual_seed(0)
    folder = tmp_path / "ckpt"
    ht.TformerEncoderForMaskedLM(tiny_config("encoder")).eval().save_pretrained(folder)
    return folder


@pytest.fixture
def without_optimum(monkeypatch):
    """optimum cannot be imported and reads as not installed, whatever the environment holds (as on transformers 5)."""
    from hf_tformer_conversion import clients

    class NoOptimum:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "optimum":
                raise ImportError(f"{name} is deliberately not importable in this test")

    for name in [name for name in sys.modules if name.split(".")[0] == "optimum"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [NoOptimum(), *sys.meta_path])
    real = clients.installed_version
    monkeypatch.setattr(clients, "installed_version", lambda name: None if "optimum" in name else real(name))


def test_export_onnx_needs_no_optimum(tmp_path, hf_home, capsys, without_optimum):
    folder = save_encoder(tmp_path)
    assert main(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--task", "fill-mask", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "validated model.onnx" in out and (tmp_path / "onnx" / "model.onnx").is_file()
    assert not any(name.split(".")[0] == "optimum" for name in sys.modules)


def test_optimum_cli_without_optimum_onnx_says_where_it_runs(capsys, without_optimum):
    assert main(["optimum-cli", "export", "onnx", "--help"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: optimum's ORTModel classes and optimum-cli need optimum-onnx") and "4.57" in err
    assert "`hf-tformer export onnx` and hf_tformer_export.load_ort_model need neither" in err
    assert "Traceback" not in err


@pytest.mark.needs_optimum
def test_optimum_cli_runs_optimums_own_parser(capsys):
    assert exit_code(["optimum-cli", "export", "onnx", "--help"]) == 0  # optimum's own parser answered
    assert "--trust-remote-code" in capsys.readouterr().out


@pytest.mark.parametrize("missing", [("onnx",), ("onnxruntime",), ("onnx", "onnxruntime")], ids=" and ".join)
def test_export_onnx_without_onnx_or_onnxruntime_names_them(tmp_path, monkeypatch, capsys, missing):
    import importlib.util

    folder = save_encoder(tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name in missing else real(name, *args))
    capsys.readouterr()
    assert main(["export", "onnx", str(folder), str(tmp_path / "onnx"), "--task", "fill-mask"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: ONNX export and ONNX Runtime inference need {' and '.join(missing)}, which this "
                          "environment lacks: pip install 'hf-tformer[ort]'"), err
    assert "Traceback" not in err and not (tmp_path / "onnx").exists()
