"""hf-tformer export onnx MODEL OUT --task TASK [...]  (also: python -m hf_tformer_export onnx MODEL OUT --task ...)

`hf-tformer optimum-cli ARGS...` registers our model types and then runs optimum's own CLI with ARGS, e.g.
`hf-tformer optimum-cli export onnx --model ckpt --task fill-mask --trust-remote-code out/`: optimum-cli alone
cannot export a model type it does not know.
"""

import argparse
import sys
from typing import Optional

from .export import ATTENTION_MODES, export_onnx
from .onnx_configs import DEFAULT_OPSET, TASKS, register


def _export_parser() -> argparse.ArgumentParser:
    valid = "; ".join(f"{model_type}: {', '.join(tasks)}" for model_type, tasks in TASKS.items())
    parser = argparse.ArgumentParser(
        prog="hf-tformer export onnx",
        description=f"Export an hf_tformer checkpoint to ONNX through optimum and validate it with ONNX Runtime "
        f"(max |diff| <= 1e-4 and identical greedy tokens, or nothing is written). Tasks: {valid}.",
    )
    parser.add_argument("model", help="a saved hf_tformer checkpoint folder")
    parser.add_argument("output", help="output folder (written atomically)")
    parser.add_argument("--task", required=True, help="the task to export for (see above)")
    parser.add_argument("--attention", choices=ATTENTION_MODES, default="fused",
                        help="fused (default): encoder self attention as one com.microsoft.Attention node (q/k/v "
                        "projection included), every other attention as one com.microsoft.MultiHeadAttention node; "
                        "plain: the decomposed MatMul/Softmax graph")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--quantize", action="store_true", help="also write an INT8 copy of every graph, *_quantized.onnx (CPU), with an accuracy report")
    parser.add_argument("--fp16", action="store_true", help="also write an fp16 copy of every graph, *_fp16.onnx (for CUDA)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    parser.add_argument("--no-validate", action="store_true", help="skip the ONNX Runtime check (not recommended)")
    return parser


def export_main(argv: list[str]) -> int:
    args = _export_parser().parse_args(argv)
    try:
        report = export_onnx(args.model, args.output, args.task, attention=args.attention, opset=args.opset,
                             quantize=args.quantize, fp16=args.fp16, force=args.force, validate=not args.no_validate)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"exported {args.model} for {report.task} ({report.attention} attention) -> {report.destination}")
    for name in report.files:
        counts = report.node_counts[name]
        fused = {op: counts[op] for op in ("Attention", "MultiHeadAttention", "QAttention") if counts.get(op)}
        print(f"  {name}: {sum(counts.values())} nodes, fused attention {fused or 'none'}")
    for check in report.validation:
        print(f"  validated {check.file_name}: max |diff| {check.max_abs_diff:.2e}"
              + ("" if check.greedy_identical is None else f", greedy tokens identical: {check.greedy_identical}"))
    if report.quantization is not None:
        q = report.quantization
        print(f"  INT8 vs fp32: max |diff| {q.max_abs_diff:.2e}, argmax agreement {q.agreement:.1%}")
    return 0


def optimum_cli_main(argv: list[str]) -> int:
    register()
    from optimum.commands.optimum_cli import main as optimum_main

    sys.argv = ["optimum-cli", *argv]
    optimum_main()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:  # `hf-tformer export onnx ...`
        argv = argv[1:]
    if argv[:1] == ["onnx"]:
        return export_main(argv[1:])
    if argv[:1] == ["optimum-cli"]:
        return optimum_cli_main(argv[1:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
