"""Every code block of README.md, run or checked as written (issue 20).

Each ```python block runs verbatim in a fresh interpreter (this one, sys.executable, so both environments) in a
temporary folder; blocks that build on earlier ones run after them as one script, in README order. A block that
cannot run as written is marked in README by `<!-- readme-test: REASON -->` right before it, and BLOCKS below says
what is done instead: a visible text substitution, a setup script run first, or, for a bash block, a check that
every script it names exists and every option it shows is one the command's --help lists. A README block missing
from BLOCKS, or an entry of BLOCKS no longer in README, fails the first test: nothing is skipped silently.
"""

import ast
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from itertools import takewhile
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme-test: (.+) -->")
FENCE = re.compile(r"^```(\w*)\s*$")
HF_TFORMER = Path(sys.executable).with_name("hf-tformer")  # the console script of this environment


@dataclass(frozen=True)
class ReadmeBlock:
    language: str  # the fence's info string: "python", "bash", "" (plain text)
    text: str
    line: int  # of the opening fence, 1-based
    marker: str | None  # the reason in a `<!-- readme-test: ... -->` line right before the fence

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0]


@dataclass(frozen=True)
class Handling:
    """How the test treats one README block. script: the name of the python script it runs in (blocks of one
    script run in README order); substitute: old -> new text replacements made before running (each old text must
    occur in the block); check: "commands" for bash blocks, "text" for blocks that are not code."""

    script: str | None = None
    substitute: dict[str, str] = field(default_factory=dict)
    check: str | None = None

    @property
    def needs_marker(self) -> bool:
        return self.check == "commands" or bool(self.substitute) or self.script in SETUP


QUICK_START, ONNX_RUNTIME = "quick start", "onnx runtime"
# Every README block in order: (language, the start of its first line) -> handling.
BLOCKS: list[tuple[str, str, Handling]] = [
    ("bash", "bash scripts/demo.sh", Handling(check="commands")),
    ("python", "import torch", Handling(script=QUICK_START)),
    ("python", "from transformers import AutoTokenizer, pipeline", Handling(script=QUICK_START)),
    # Compiling with this recipe takes minutes (tests/test_generation.py runs it, marked `once`): run eagerly.
    ("python", "import torch._inductor.config",
     Handling(script=QUICK_START, substitute={"torch.compile(model.forward, dynamic=False)": "model.forward"})),
    ("bash", "hf-tformer convert SOURCE", Handling(check="commands")),
    ("bash", "hf-tformer export onnx CHECKPOINT", Handling(check="commands")),
    ("python", "from hf_tformer_export import load_ort_model", Handling(script=ONNX_RUNTIME)),
    ("python", "from hf_tformer_export import TformerGenaiModel", Handling(script=ONNX_RUNTIME)),
    ("", "hf_tformer/", Handling(check="text")),  # the source tree under "How it is built"
]

# Run before a script's blocks: what the README assumes exists.
SETUP = {
    ONNX_RUNTIME: """
import torch, hf_tformer
from hf_tformer_demo.toy_tokenizer import train_tokenizer
from hf_tformer_export.export import export_onnx
torch.manual_seed(0)
toy = train_tokenizer("bpe")
toy.padding_side = "left"  # as a decoder's tokenizer pads for generation
tiny = hf_tformer.TformerDecoderConfig(vocab_size=len(toy), hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=64, pad_token_id=toy.pad_token_id)
hf_tformer.TformerDecoderForCausalLM(tiny).save_pretrained("tiny-decoder")
toy.save_pretrained("tiny-decoder")
export_onnx("tiny-decoder", "onnx_out", "text-generation-with-past")
""",
}
# Run after a script's blocks: what they claim in their comments.
CHECKS = {
    QUICK_START: """
assert tuple(tokens.shape) == (1, 23), tokens.shape
assert output.shape[1] == inputs["input_ids"].shape[1] + 20, output.shape
assert set(inputs) == {"input_ids", "attention_mask"}, list(inputs)
assert int(output.max()) < len(tokenizer), "generated ids the tokenizer cannot decode"
""",
    ONNX_RUNTIME: """
assert type(model).__name__ == "TformerORTModelForCausalLM", type(model)
assert beams.shape[0] == 2 and beams.shape[1] <= inputs["input_ids"].shape[1] + 10, beams.shape
reference = hf_tformer.TformerDecoderForCausalLM.from_pretrained("tiny-decoder").eval()
expected = reference.generate(**inputs, max_new_tokens=10, num_beams=3)
assert torch.equal(beams, expected), (beams, expected)
assert torch.equal(tokens, model.generate(**prompt, max_new_tokens=10)), tokens
assert sampled.shape[0] == 2 and torch.equal(sampled[:, :prompt["input_ids"].shape[1]], prompt["input_ids"])
""",
}
MARKS: dict[str, list] = {}  # per script, pytest marks (none now: the ONNX block needs no optimum)

# What each script a bash block runs accepts: the command whose --help lists its options (None: it takes none).
SCRIPT_HELP = {"scripts/demo.sh": [sys.executable, "-m", "hf_tformer_demo", "--help"], "scripts/test.sh": None}


def readme_blocks() -> list[ReadmeBlock]:
    """The fenced blocks of README.md, in order, each with the readme-test marker on the nearest line above."""
    lines = README.read_text().splitlines()
    blocks, opened, previous = [], None, None
    for number, line in enumerate(lines, 1):
        fence = FENCE.match(line)
        if opened is None and fence:
            marker = MARKER.fullmatch(previous.strip()) if previous else None
            opened = (fence.group(1), number, marker.group(1) if marker else None, [])
        elif opened is not None and line.strip() == "```":
            language, start, reason, body = opened
            blocks.append(ReadmeBlock(language, "\n".join(body) + "\n", start, reason))
            opened = None
        elif opened is not None:
            opened[3].append(line)
        if line.strip():
            previous = line
    assert opened is None, f"README.md: the block opened at line {opened[1]} is never closed"
    return blocks


def handled_blocks() -> list[tuple[ReadmeBlock, Handling]]:
    """README's blocks paired with their BLOCKS entries; fails unless they pair one to one, in order."""
    blocks = readme_blocks()
    matched = len(blocks) == len(BLOCKS) and all(
        block.language == language and block.first_line.startswith(start)
        for block, (language, start, _) in zip(blocks, BLOCKS))
    found = [(block.line, block.language, block.first_line[:40]) for block in blocks]
    assert matched, f"README.md's code blocks changed: update BLOCKS in tests/test_readme.py. README: {found}"
    return [(block, handling) for block, (_, _, handling) in zip(blocks, BLOCKS)]


def test_every_readme_block_is_in_the_table_and_marked_as_it_is_handled():
    for block, handling in handled_blocks():
        assert block.language != "python" or handling.script, f"line {block.line}: a python block must run"
        assert (block.marker is not None) == handling.needs_marker, (
            f"README.md line {block.line}: a block that is not run as written needs `<!-- readme-test: why -->` "
            f"right before it, and one that is must not have it (marker: {block.marker!r})")


def script_text(name: str) -> str:
    """SETUP, then the script's blocks in README order with their substitutions, then CHECKS."""
    parts = [SETUP.get(name, "")]
    for block, handling in handled_blocks():
        if handling.script != name:
            continue
        text = block.text
        for old, new in handling.substitute.items():
            assert old in text, f"README.md line {block.line}: {old!r} is gone: update its substitution in BLOCKS"
            text = text.replace(old, new)
        parts.append(f"# README.md line {block.line}\n{text}")
    parts.append(CHECKS.get(name, ""))
    return "\n".join(parts)


def run_script(code: str, cwd: Path) -> str:
    """Run `code` in a fresh interpreter in `cwd` (its own HF cache); return stdout, fail with its output."""
    env = {**os.environ, "HF_HOME": str(cwd / "hf_home"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"README script failed:\n{code}\n--- stdout\n{result.stdout}\n--- stderr\n" \
                                   f"{result.stderr[-6000:]}"
    return result.stdout


SCRIPTS = sorted({handling.script for _, _, handling in BLOCKS if handling.script})


@pytest.mark.default_env  # README's environment is .venv5
@pytest.mark.parametrize("name", [pytest.param(name, marks=MARKS.get(name, [])) for name in SCRIPTS])
def test_python_blocks_run_as_written(tmp_path, name):
    stdout = run_script(script_text(name), tmp_path)
    if name == QUICK_START:  # the pipeline prints the 20 new tokens' text: decodable, not the prompt again
        printed = next(line for line in stdout.splitlines() if line.startswith("[{'generated_text'"))
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tmp_path / "my-decoder")
        new_text = ast.literal_eval(printed)[0]["generated_text"]
        assert len(tokenizer(new_text, add_special_tokens=False).input_ids) >= 10, printed


def test_the_compile_recipe_is_the_one_the_generation_tests_compile():
    from test_generation import CPU_RECIPE

    block = next(block for block, _ in handled_blocks() if "recipe = dict(" in block.text)
    call = next(node.value for node in ast.walk(ast.parse(block.text))
                if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "recipe")
    recipe = {keyword.arg: ast.literal_eval(keyword.value) for keyword in call.keywords}
    assert recipe == CPU_RECIPE, f"README.md line {block.line}: {recipe} is not tests/test_generation.py's {CPU_RECIPE}"


def commands(block: ReadmeBlock) -> list[tuple[list[str], str]]:
    """(words, text) per command of a bash block. An indented line continues the command above it (a synopsis
    wrapped without a backslash; the comment lines that follow a command name its options too)."""
    found: list[tuple[list[str], str]] = []
    for line in block.text.replace("\\\n", " ").splitlines():
        code = line.partition("#")[0]
        if found and line[:1].isspace():
            found[-1] = (found[-1][0] + shlex.split(code), f"{found[-1][1]} {line}")
        elif code.strip():
            found.append((shlex.split(code), line))
    return found


def help_text(argv: list[str]) -> str:
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{' '.join(argv)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def check_options(text: str, help_output: str, command: str) -> None:
    """Every --option in `text`, with its a|b|c choices where shown, is in `help_output`."""
    for option, choices in re.findall(r"(--[a-z][a-z0-9-]*)(?:[ =]([a-z0-9-]+(?:\|[a-z0-9-]+)+))?", text):
        assert re.search(rf"{option}\b", help_output), f"{command} --help does not list {option}"
        if choices:
            assert "{" + choices.replace("|", ",") + "}" in help_output, f"{command} {option}: not {choices}"


BASH_BLOCKS = [block for block in readme_blocks() if block.language == "bash"]


@pytest.mark.parametrize("block", BASH_BLOCKS, ids=[" ".join(block.first_line.split()[:2]) for block in BASH_BLOCKS])
def test_bash_blocks_name_existing_scripts_and_options(block):
    for words, text in commands(block):
        if words[:1] == ["bash"]:
            script = words[1]
            assert (ROOT / script).is_file(), f"README.md line {block.line}: {script} does not exist"
            assert script in SCRIPT_HELP, f"README.md line {block.line}: add {script} to SCRIPT_HELP"
            if SCRIPT_HELP[script] is None:
                assert "--" not in text, f"{script} takes no options: {text}"
            else:
                check_options(text, help_text(SCRIPT_HELP[script]), script)
        elif words[:1] == ["hf-tformer"]:
            assert HF_TFORMER.is_file(), f"no hf-tformer console script next to {sys.executable}"
            subcommand = list(takewhile(lambda word: re.fullmatch(r"[a-z][a-z-]*", word), words[1:]))
            check_options(text, help_text([str(HF_TFORMER), *subcommand, "--help"]),
                          " ".join(["hf-tformer", *subcommand]))
        else:
            raise AssertionError(f"README.md line {block.line}: no check for {words[0]!r}; add one")
