"""hf-tformer: the one command line. `hf-tformer --help` lists the commands; `hf-tformer COMMAND --help` each one's.

    hf-tformer convert SOURCE DEST [--to-native MODEL_TYPE] [...]     (= python -m hf_tformer_conversion)
    hf-tformer export onnx CHECKPOINT OUT --task TASK [...]           (= python -m hf_tformer_export onnx)
    hf-tformer optimum-cli ARGS...                                    optimum's CLI, our model types registered
    hf-tformer bench conversion|encoder-forward|generation|long-context|onnx-runtime|vision-forward|moe|whisper|
                     gpu-attention|ort-backends [...]
    hf-tformer demo [OPTIONS]

Every parser is argparse; a command's module (torch, transformers, optimum) is imported only when that command
runs or shows its help, so `hf-tformer --help` stays fast. Exit status: 0 done, 1 an error the user can fix
("error: ..." naming the path and the fix: hf_tformer_conversion/user_errors.py), 2 bad usage (argparse's message).
"""

import argparse
import importlib
import sys
from importlib import metadata
from typing import Callable, Optional

BENCHES = {  # sub-command -> module of hf_tformer_bench (bench/), each with main(argv, prog)
    "conversion": ("conversion", "conversion of a BERT-base-shaped checkpoint: time, peak memory, load time"),
    "encoder-forward": ("encoder_forward", "encoder forward vs BertModel (fp32, bf16)"),
    "generation": ("generation", "greedy generate() tokens/s vs GPT2LMHeadModel and BartForConditionalGeneration"),
    "long-context": ("long_context", "peak memory / time of a forward at 1k-16k tokens, full vs sliding window, "
                     "and the sliding-window decoder vs MistralForCausalLM"),
    "onnx-runtime": ("onnx_runtime", "our ONNX Runtime exports vs PyTorch and optimum's native BERT export"),
    "ort-backends": ("ort_backends", "our ORT classes on transformers 5.x vs optimum's ORTModel on 4.57 vs PyTorch"),
    "moe": ("moe", "sparse mixture of experts vs MixtralForCausalLM (converted weights): forward and greedy tok/s"),
    "vision-forward": ("vision_forward", "image encoder forward vs ViTModel: PyTorch (fp32, bf16) and ONNX Runtime "
                       "(fused vs optimum's native ViT export)"),
    "gpu-attention": ("gpu_attention", "attention on a GPU vs BertModel / LlamaModel (converted weights): forward "
                      "time, SDPA kernel, peak memory, %% of matmul peak, implementations' agreement"),
    "whisper": ("whisper", "speech: whisper-tiny-shaped model vs WhisperForConditionalGeneration (converted weights): "
                "encoder forward and greedy tok/s, fp32 (bf16 where native)"),
}


class LazyParser(argparse.ArgumentParser):
    """A sub-parser whose arguments are added when it is first used, so listing the commands imports none of them.

    populate(parser) adds the arguments and sets `run`; such a parser refuses arguments it does not know, with its
    own usage line. Passthrough parsers (no populate) hand every argument to their command."""

    def __init__(self, *args, populate: Optional[Callable[[argparse.ArgumentParser], None]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._populate, self._strict = populate, populate is not None

    def parse_known_args(self, args=None, namespace=None):
        if self._populate is not None:
            populate, self._populate = self._populate, None
            populate(self)
        namespace, extras = super().parse_known_args(args, namespace)
        if extras and self._strict:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def _convert(parser: argparse.ArgumentParser) -> None:
    from hf_tformer_conversion.__main__ import DESCRIPTION, add_arguments, run

    parser.description = DESCRIPTION
    add_arguments(parser)
    parser.set_defaults(run=lambda args, rest: run(args))


def _export_onnx(parser: argparse.ArgumentParser) -> None:
    from hf_tformer_export.__main__ import DESCRIPTION, add_arguments, run

    parser.description = DESCRIPTION
    add_arguments(parser)
    parser.set_defaults(run=lambda args, rest: run(args))


def _optimum_cli(args: argparse.Namespace, rest: list[str]) -> int:
    from hf_tformer_export.__main__ import run_optimum_cli

    return run_optimum_cli(rest)


def _bench(module_name: str, prog: str) -> Callable[[argparse.Namespace, list[str]], int]:
    def run(args: argparse.Namespace, rest: list[str]) -> int:
        module = importlib.import_module(f"hf_tformer_bench.{module_name}")
        module.main(rest, prog=prog)
        return 0

    return run


def _demo(args: argparse.Namespace, rest: list[str]) -> int:
    from hf_tformer_demo.__main__ import main as demo_main

    return demo_main(rest)


def _version() -> str:
    try:
        return metadata.version("hf-tformer")
    except metadata.PackageNotFoundError:  # a source tree that is not pip-installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-tformer", description="hf_tformer: convert checkpoints, export them "
                                     "to ONNX, benchmark, run the demo. `hf-tformer COMMAND --help` for each.")
    parser.add_argument("--version", action="version", version=f"hf-tformer {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=LazyParser)
    commands.add_parser("convert", help="convert a transformers checkpoint to hf_tformer, or back (--to-native)",
                        populate=_convert)

    export = commands.add_parser("export", help="export an hf_tformer checkpoint (onnx)",
                                 description="Export an hf_tformer checkpoint.")
    formats = export.add_subparsers(dest="format", metavar="FORMAT", required=True, parser_class=LazyParser)
    formats.add_parser("onnx", help="ONNX through optimum, validated with ONNX Runtime (transformers 4.57 env)",
                       populate=_export_onnx)

    optimum = commands.add_parser("optimum-cli", add_help=False, help="optimum's own CLI with our model types "
                                  "registered (all arguments are optimum's)")
    optimum.set_defaults(run=_optimum_cli, passthrough=True)

    bench = commands.add_parser("bench", help="side-by-side benchmarks against the native transformers models",
                                description="Benchmarks (results in BENCHMARKS.md); options are each script's own.")
    scripts = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True, parser_class=LazyParser)
    for name, (module_name, summary) in BENCHES.items():
        script = scripts.add_parser(name, help=summary, add_help=False)
        script.set_defaults(run=_bench(module_name, f"hf-tformer bench {name}"), passthrough=True)

    demo = commands.add_parser("demo", add_help=False, help="the end-to-end demo (README command 1); all "
                               "arguments are the demo's (python -m hf_tformer_demo)")
    demo.set_defaults(run=_demo, passthrough=True)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from hf_tformer_conversion.quiet import quiet_import_warnings
    from hf_tformer_conversion.user_errors import report_user_errors  # after parsing: --help imports no torch

    quiet_import_warnings()  # every command: no torchao / pytree import noise
    return report_user_errors(lambda: args.run(args, rest))


if __name__ == "__main__":
    sys.exit(main())
