"""hf-tformer export onnx MODEL OUT --task TASK [...]  (also: python -m hf_tformer_export onnx MODEL OUT --task ...)

`hf-tformer optimum-cli ARGS...` registers our model types and then runs optimum's own CLI with ARGS, e.g.
`hf-tformer optimum-cli export onnx --model ckpt --task fill-mask --trust-remote-code out/`: optimum-cli alone
cannot export a model type it does not know.

`add_arguments` / `run` are the one implementation of `export onnx`, used here and by the `hf-tformer` command
(hf_tformer_cli). Neither needs optimum; the export checks for onnx and onnxruntime first.
"""

import argparse
import sys
from typing import Optional

from hf_tformer_conversion.tolerance import EXPORT_TOLERANCE, summary

from .tasks import ATTENTION_MODES, DEFAULT_OPSET, TASKS

DESCRIPTION = ("Export an hf_tformer checkpoint to ONNX (torch.onnx; optimum's file layout, so optimum's ORTModel* load "
               "it too) and validate it with ONNX Runtime (per output "
               f"max |diff| <= {EXPORT_TOLERANCE.formula()}; no NaN / inf; identical greedy tokens; or nothing is "
               "written). Needs onnx and onnxruntime (pip install 'hf-tformer[ort]'), any transformers version. Tasks: "
               + "; ".join(f"{model_type}: {', '.join(tasks)}" for model_type, tasks in TASKS.items()) + ".")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a saved hf_tformer checkpoint folder")
    parser.add_argument("output", help="output folder (written atomically)")
    parser.add_argument("--task", required=True, help="the task to export for (see above)")
    parser.add_argument("--attention", choices=ATTENTION_MODES, default="fused",
                        help="fused (default): encoder self attention as one com.microsoft.Attention node (q/k/v "
                        "projection included), every other attention as one com.microsoft.MultiHeadAttention node; "
                        "plain: the decomposed MatMul/Softmax graph")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--quantize", action="store_true",
                        help="also write an INT8 copy of every graph, *_quantized.onnx (CPU), with an accuracy report")
    parser.add_argument("--fp16", action="store_true",
                        help="also write an fp16 copy of every graph, *_fp16.onnx (for CUDA)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-validate", action="store_true", help="skip the ONNX Runtime check (not recommended)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def require_optimum_onnx() -> None:
    """A ClientVersionError (a ValueError) that says where optimum's own tools run, instead of an ImportError."""
    from hf_tformer_conversion.clients import ClientVersionError, require_client

    try:
        require_client("optimum-onnx")
    except ClientVersionError as error:
        raise ClientVersionError(f"optimum's ORTModel classes and optimum-cli need optimum-onnx, which requires "
                                 f"transformers < 4.58: run them in a transformers 4.57 environment (pip install "
                                 f"'hf-tformer[onnx]'). `hf-tformer export onnx` and hf_tformer_export.load_ort_model "
                                 f"need neither. {error}") from None


def require_onnx_runtime(packages: tuple[str, ...] = ("onnx", "onnxruntime")) -> None:
    """A ValueError naming the missing package and the install command, instead of a ModuleNotFoundError.
    packages: what the caller needs (exporting: both; running an export: onnxruntime alone)."""
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"ONNX export and ONNX Runtime inference need {' and '.join(missing)}, which this "
                         "environment lacks: pip install 'hf-tformer[ort]' (onnx, onnxruntime-gpu; its CPU "
                         "provider works without a GPU).")


def run(args: argparse.Namespace) -> int:
    """Export; a user error (a bad path, config.json or opset, a full disk...) prints `error: ...` and returns 1."""
    from hf_tformer_conversion.quiet import quiet_import_warnings
    from hf_tformer_conversion.user_errors import report_user_errors

    quiet_import_warnings()
    return report_user_errors(lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    require_onnx_runtime()
    from .export import export_onnx

    report = export_onnx(args.model, args.output, args.task, attention=args.attention, opset=args.opset,
                         quantize=args.quantize, fp16=args.fp16, force=args.force, validate=not args.no_validate,
                         progress=not args.no_progress)
    print(f"exported {args.model} for {report.task} ({report.attention} attention) -> {report.destination}")
    for name in report.files:
        counts = report.node_counts[name]
        fused = {op: counts[op] for op in ("Attention", "MultiHeadAttention", "QAttention") if counts.get(op)}
        print(f"  {name}: {sum(counts.values())} nodes, fused attention {fused or 'none'}")
    for check in report.validation:
        print(f"  validated {check.file_name}: max |diff| {check.max_abs_diff:.2e}"
              + ("" if check.greedy_identical is None else f", greedy tokens identical: {check.greedy_identical}"))
        print(f"  validation gate: {summary(check.checks, check.rule)}")
    if report.quantization is not None:
        q = report.quantization
        print(f"  INT8 vs fp32: max |diff| {q.max_abs_diff:.2e}, argmax agreement {q.agreement:.1%}")
    return 0


def run_optimum_cli(argv: list[str]) -> int:
    """optimum's own CLI with `argv`, our model types registered first."""
    try:
        require_optimum_onnx()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from optimum.commands.optimum_cli import main as optimum_main

    from .onnx_configs import register

    register()
    sys.argv = ["optimum-cli", *argv]
    optimum_main()
    return 0


def export_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION)
    add_arguments(parser)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:  # `... export onnx ...`, as `hf-tformer export onnx` reads
        argv = argv[1:]
    if argv[:1] == ["onnx"]:
        return run(export_parser("python -m hf_tformer_export onnx").parse_args(argv[1:]))
    if argv[:1] == ["optimum-cli"]:
        return run_optimum_cli(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
