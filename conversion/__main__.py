"""python -m hf_tformer_conversion SOURCE DEST [--to-native MODEL_TYPE] [--dtype auto|float32|bfloat16|float16]
[--force] [--allow-pickle] [--no-verify] [--no-progress]   (the same as `hf-tformer convert ...`)

`add_arguments` / `run` are the one implementation, used here and by the `hf-tformer` command (hf_tformer_cli).
"""

import argparse
import sys
from typing import Optional

# Light imports only: the parser and its help are built before torch / transformers load (conversion/choices.py).
from .choices import DTYPE_CHOICES, SOURCE_MODEL_TYPES
from .quiet import quiet_import_warnings
from .tolerance import CONVERSION_TOLERANCE
from .user_errors import report_user_errors

DESCRIPTION = ("Convert a transformers checkpoint (local folder or Hub repo id) into an hf_tformer checkpoint, or back "
               f"with --to-native. Supported model types: {', '.join(SOURCE_MODEL_TYPES)}. The converted model must "
               f"reproduce the source's outputs (per output max |diff| <= {CONVERSION_TOLERANCE.formula()}; no NaN / "
               "inf; identical greedy tokens) or nothing is written.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="checkpoint folder or Hub repo id (HF_HUB_OFFLINE=1 reads the cache only)")
    parser.add_argument("destination", help="output folder (written atomically)")
    parser.add_argument("--force", action="store_true", help="replace an existing destination")
    parser.add_argument("--allow-pickle", action="store_true", help="accept pytorch_model.bin (loaded weights_only)")
    parser.add_argument("--no-verify", action="store_true", help="skip the parity gate (not recommended)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")
    parser.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                        help="dtype of the written weights; 'auto' (default) keeps the source's own. Parity is "
                        "always checked in float32")
    parser.add_argument("--to-native", metavar="MODEL_TYPE", choices=SOURCE_MODEL_TYPES,
                        help="the way back: SOURCE is an hf_tformer checkpoint, written to DEST as the native "
                        "transformers class of MODEL_TYPE (where the config maps; same parity gate)")


def run(args: argparse.Namespace) -> int:
    """Convert, or go back; a user error (a bad path or config.json, a refused destination, a full disk...) prints
    `error: ...` and returns 1."""
    quiet_import_warnings()
    return report_user_errors(lambda: _run_to_native(args) if args.to_native else _run_convert(args))


def _run_to_native(args: argparse.Namespace) -> int:
    from .reverse import to_native

    back = to_native(args.source, args.destination, args.to_native, force=args.force, verify=not args.no_verify,
                     dtype=args.dtype)
    print(f"wrote {back.architecture} ({back.dtype}) -> {back.destination}" + (
        "" if back.parity is None else f"; parity: max |diff| {back.parity.max_abs_diff:.2e} "
        f"({back.parity.gate_summary()})") + (
        "" if back.encode_parity is None else f"; sentence-transformers encode() min cosine "
        f"{back.encode_parity.min_cosine:.7f}"))
    return 0


def _run_convert(args: argparse.Namespace) -> int:
    from .converter import convert

    report = convert(args.source, args.destination, force=args.force, allow_pickle=args.allow_pickle,
                     verify=not args.no_verify, progress=not args.no_progress, dtype=args.dtype)
    parity = report.parity
    print(f"converted {report.architecture} -> {report.target_class}: {report.tensors} tensors ({report.dtype}) "
          f"-> {report.destination}")
    if parity is not None:
        print(f"parity: max |diff| {parity.max_abs_diff:.2e}" + (
            "" if parity.greedy_identical is None else f", greedy tokens identical: {parity.greedy_identical}"))
        print(f"parity gate: {parity.gate_summary()}")
    if report.generation_settings is not None:
        same = "" if parity is None or parity.own_settings_identical is None else (
            f"; generate() under them gives identical tokens: {parity.own_settings_identical}")
        print(f"generation settings carried: {report.generation_settings}{same}")
    if report.generation_fields_unread:
        print(f"generation_config fields carried unchanged (generate() does not read them): "
              f"{', '.join(report.generation_fields_unread)}")
    if report.encode_parity is not None:
        print(f"sentence-transformers encode() parity: min cosine {report.encode_parity.min_cosine:.7f}, max |diff| "
              f"{report.encode_parity.max_abs_diff:.2e} over {report.encode_parity.sentences} sentences")
    if report.notes:
        print(f"note: {report.notes}")
    if report.carried:
        print(f"carried over: {', '.join(report.carried)}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hf_tformer_conversion", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
