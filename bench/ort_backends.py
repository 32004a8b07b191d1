"""ONNX Runtime model classes side by side: ours on transformers 5.x vs optimum's ORTModel* on 4.57 (over our export,
and over optimum's own export end to end) vs PyTorch on both, one table from one run; for the decoder also
onnxruntime-genai's C++ generation loop over the same export (export/ort_genai.py) against our Python loop.

    hf-tformer bench ort-backends [--repeats 20] [--threads 2] [--v5-python P] [--v457-python P] [--current-only]

Shapes: a BERT-small-shaped encoder (hidden 256, 4 layers, 4 heads, ffn 1024, sequence 128) forward at batch 1 and
8; a decoder of the same width (vocab 8192) greedy-generating 64 new tokens from a 16-token prompt, batch 1. Our
export (export_onnx, fused attention) is written once; every ORT column over it loads the same files.

The two transformers versions live in two venvs (.venv5 and .venv next to the repo root by default), so the driver
starts one worker process per venv (this module with --worker) and asks them over pipes to time one call at a time:
each time is taken inside the worker around one call, and the calls of all columns of both workers take turns
(in a new seeded order every repeat), so a change in machine load hits every column alike. Both wall-clock and
process CPU time are reported: on a shared machine the CPU time is the steadier of the two. A missing venv or a
worker that fails leaves its columns out, with the reason printed.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]  # bench/ -> the repo root, where scripts/setup.sh puts the venvs
# The columns each worker measures (its side: the transformers major version of its venv).
COLUMNS = {"5": ("ours ORT 5.x", "onnxruntime-genai 5.x", "PyTorch 5.x"),
           "4": ("optimum ORT 4.57, our export", "optimum end to end 4.57", "ours ORT 4.57", "PyTorch 4.57")}
TABLE_ORDER = ("ours ORT 5.x", "optimum ORT 4.57, our export", "optimum end to end 4.57", "ours ORT 4.57",
               "onnxruntime-genai 5.x", "PyTorch 5.x", "PyTorch 4.57")
OURS, OPTIMUM, OPTIMUM_E2E = "ours ORT 5.x", "optimum ORT 4.57, our export", "optimum end to end 4.57"
GENAI = "onnxruntime-genai 5.x"  # generate() only: no encoder cases
# (ours, theirs, heading): speed ratios; the last compares the classes alone, both on transformers 4.57
RATIOS = ((OURS, OPTIMUM, "ours / optimum (our export)"), (OURS, OPTIMUM_E2E, "ours / optimum end to end"),
          ("ours ORT 4.57", OPTIMUM, "ours 4.57 / optimum (our export)"), (GENAI, OURS, "genai / ours 5.x"))
CLOCKS = {"wall": "wall clock", "cpu": "process CPU time, all threads (steadier on a loaded machine; counts "
          "spin-waiting threads too, e.g. PyTorch's OpenMP pool)"}
CASES = {"encoder b1 ms": ("encoder", 1), "encoder b8 ms": ("encoder", 8), "decoder tok/s": ("decoder", 1)}


@dataclass(frozen=True)
class Sizes:
    hidden: int
    layers: int
    heads: int
    ffn: int
    encoder_vocab: int
    decoder_vocab: int
    sequence: int  # encoder tokens per row
    prompt: int  # decoder prompt tokens
    new_tokens: int


FULL = Sizes(256, 4, 4, 1024, 30522, 8192, 128, 16, 64)
TINY = Sizes(32, 2, 2, 64, 128, 128, 16, 4, 8)  # the test's: seconds, not minutes


# ---------------------------------------------------------------- worker (runs inside one venv) ----------------


def build(work: Path, sizes: Sizes, validate: bool) -> None:
    """Save the two random-weight checkpoints and export them with our exporter (fused attention)."""
    import torch

    import hf_tformer as ht
    from hf_tformer_export.export import export_onnx

    shape = dict(hidden_size=sizes.hidden, num_hidden_layers=sizes.layers, num_attention_heads=sizes.heads,
                 intermediate_size=sizes.ffn)
    torch.manual_seed(0)
    ht.TformerEncoderModel(ht.TformerEncoderConfig(
        vocab_size=sizes.encoder_vocab, type_vocab_size=2, norm_placement="post", embedding_layernorm=True,
        layer_norm_eps=1e-12, **shape)).save_pretrained(work / "encoder")
    ht.TformerDecoderForCausalLM(ht.TformerDecoderConfig(
        vocab_size=sizes.decoder_vocab, max_position_embeddings=512, hidden_act="gelu_new", pad_token_id=0,
        bos_token_id=1, eos_token_id=2, **shape)).save_pretrained(work / "decoder")
    export_onnx(str(work / "encoder"), str(work / "encoder_onnx"), "feature-extraction", validate=validate)
    export_onnx(str(work / "decoder"), str(work / "decoder_onnx"), "text-generation-with-past", validate=validate)


def optimum_export(work: Path, validate: bool) -> None:
    """optimum's own export path over the same checkpoints (our model types registered, remote code trusted)."""
    from optimum.exporters.onnx import main_export

    from hf_tformer_export.onnx_configs import register

    register()
    for name, task in (("encoder", "feature-extraction"), ("decoder", "text-generation-with-past")):
        main_export(str(work / name), work / f"{name}_optimum", task=task, trust_remote_code=True,
                    do_validation=validate)


def load_column(column: str, work: Path, threads: int, validate: bool) -> tuple[Any, Any]:
    """(encoder model or None, decoder model) of one column."""
    from hf_tformer_bench.onnx_runtime import session_options
    from hf_tformer_export.runtime import load_ort_model

    if column == GENAI:
        from hf_tformer_export.ort_genai import TformerGenaiModel

        return None, TformerGenaiModel.from_pretrained(  # spinning off as every ORT session here
            work / "decoder_onnx", intra_op_num_threads=threads,
            session_config_entries={"session.intra_op.allow_spinning": "0"})
    if column.startswith("PyTorch"):
        import hf_tformer as ht

        return (ht.TformerEncoderModel.from_pretrained(work / "encoder", attn_implementation="sdpa").eval(),
                ht.TformerDecoderForCausalLM.from_pretrained(work / "decoder", attn_implementation="sdpa").eval())
    folders, backend = ("encoder_onnx", "decoder_onnx"), "hf_tformer"
    if column == OPTIMUM_E2E:
        optimum_export(work, validate)
        folders, backend = ("encoder_optimum", "decoder_optimum"), "optimum"
    elif column.startswith("optimum"):
        backend = "optimum"
    options = session_options(threads)
    return (load_ort_model(work / folders[0], "feature-extraction", backend=backend, session_options=options),
            load_ort_model(work / folders[1], "text-generation-with-past", backend=backend, session_options=options))


def make_runners(models: tuple[Any, Any], sizes: Sizes) -> dict[str, Callable[[], Optional[list]]]:
    """case -> a call to time; the decoder's returns the generated token ids (compared across columns)."""
    import numpy as np
    import torch

    encoder, decoder = models
    generator = np.random.default_rng(0)  # the same inputs in every worker

    def encoder_inputs(batch: int) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(generator.integers(3, sizes.encoder_vocab, (batch, sizes.sequence)))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}

    def forward(inputs: dict) -> Callable[[], None]:
        def run() -> None:
            with torch.inference_mode():
                encoder(**inputs)
        return run

    ids = torch.from_numpy(generator.integers(3, sizes.decoder_vocab, (1, sizes.prompt)))
    prompt = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def generate() -> list:
        with torch.inference_mode():  # min = max new tokens: every column generates exactly as many
            tokens = decoder.generate(**prompt, max_new_tokens=sizes.new_tokens, min_new_tokens=sizes.new_tokens,
                                      do_sample=False)
        return tokens[0].tolist()

    runners = {case: forward(encoder_inputs(batch)) for case, (kind, batch) in CASES.items()
               if kind == "encoder" and encoder is not None}
    runners["decoder tok/s"] = generate
    return runners


def worker(side: str, work: Path, threads: int, sizes: Sizes, build_first: bool, validate: bool) -> None:
    """Set up this venv's columns, say which are ready, then time one call per request until stdin closes."""
    protocol = os.fdopen(os.dup(1), "w", buffering=1)  # replies only; library prints go to stderr (the log)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    warnings.filterwarnings("ignore")

    def reply(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")

    import onnxruntime
    import torch
    import transformers

    torch.set_num_threads(threads)
    versions = f"transformers {transformers.__version__}, torch {torch.__version__}, onnxruntime " \
               f"{onnxruntime.__version__}"
    if transformers.__version__.split(".")[0] != side:
        reply({"error": f"{sys.executable} has transformers {transformers.__version__}, not {side}.x"})
        return
    if build_first:
        build(work, sizes, validate)
    runners, skipped = {}, {}
    for column in COLUMNS[side]:
        try:
            runners[column] = make_runners(load_column(column, work, threads, validate), sizes)
        except Exception as error:  # noqa: BLE001 (one column's failure is reported, the others still run)
            skipped[column] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    reply({"columns": list(runners), "cases": {column: list(cases) for column, cases in runners.items()},
           "skipped": skipped, "versions": versions})
    for line in sys.stdin:
        request = json.loads(line)
        start, cpu_start = time.perf_counter(), time.process_time()
        tokens = runners[request["column"]][request["case"]]()
        reply({"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu_start, "tokens": tokens})


# ---------------------------------------------------------------- driver ---------------------------------------


class WorkerError(RuntimeError):
    pass


@dataclass
class Worker:
    """One worker process (one venv) and the columns it measures."""

    side: str
    python: str
    process: Any = None
    columns: list[str] = field(default_factory=list)
    cases: dict[str, list[str]] = field(default_factory=dict)  # column -> the cases it runs
    versions: str = ""
    log: Optional[Path] = None

    def start(self, work: Path, args: argparse.Namespace, build_first: bool) -> dict:
        self.log = work / f"worker-{self.side}.log"
        command = [self.python, "-m", "hf_tformer_bench.ort_backends", "--worker", self.side, "--work", str(work),
                   "--threads", str(args.threads)] + ["--tiny"] * args.tiny + ["--build"] * build_first
        # OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads sleep after a call, as ORT's do with spinning off,
        # instead of spinning on the cores the next column (any worker's) needs
        environment = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
                           OMP_WAIT_POLICY="PASSIVE",
                           HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                            text=True, env=environment, cwd=work)
        ready = self.receive()
        self.columns, self.cases, self.versions = ready["columns"], ready["cases"], ready["versions"]
        return ready["skipped"]

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        message = json.loads(line) if line else {"error": f"the worker exited ({self.python}):\n{self.log_tail()}"}
        if "error" in message:
            raise WorkerError(message["error"])
        return message

    def time(self, column: str, case: str) -> dict:
        try:
            self.process.stdin.write(json.dumps({"column": column, "case": case}) + "\n")
            self.process.stdin.flush()
        except OSError as error:  # the worker died on an earlier call
            raise WorkerError(f"the worker is gone ({error}):\n{self.log_tail()}") from error
        return self.receive()

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:]) if self.log and self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()  # the worker's request loop ends
            self.process.wait(timeout=60)


def start_workers(work: Path, args: argparse.Namespace) -> tuple[list[Worker], dict[str, str]]:
    """The workers that started, and a reason for every column left out. The first worker to start builds the
    checkpoints and our export; the others load them."""
    pythons = {"5": args.v5_python or REPO / ".venv5" / "bin" / "python",
               "4": args.v457_python or REPO / ".venv" / "bin" / "python"}
    if args.current_only:
        import transformers

        current = transformers.__version__.split(".")[0]
        pythons = {side: sys.executable if side == current else None for side in pythons}
    workers, skipped = [], {}
    for side, python in pythons.items():
        reason = None
        if python is None:
            reason = "--current-only"
        elif not Path(python).is_file():
            reason = f"no interpreter at {python} (pass --{'v5' if side == '5' else 'v457'}-python)"
        else:
            worker_ = Worker(side, os.path.abspath(python))  # not resolved: a venv's python is a symlink
            try:
                skipped.update(worker_.start(work, args, build_first=not workers))
                workers.append(worker_)
            except (WorkerError, json.JSONDecodeError) as error:
                worker_.stop()
                reason = f"the worker failed: {error}"
        if reason is not None:
            skipped.update({column: reason for column in COLUMNS[side]})
    return workers, skipped


def measure(workers: list[Worker], case: str, repeats: int, skipped: dict[str, str]) -> tuple[dict, dict]:
    """{clock: {column: [seconds]}} of interleaved calls after one warm-up call each, and {column: tokens}."""
    slots = [(worker_, column) for worker_ in workers for column in worker_.columns
             if column not in skipped and case in worker_.cases[column]]
    seconds, tokens = {clock: {column: [] for _, column in slots} for clock in CLOCKS}, {}
    for repeat in range(repeats + 1):
        # A new order every repeat: a fixed cycle would have each column always follow the same one (after a PyTorch
        # call its OpenMP threads spin on a while, slowing whichever call comes next).
        for worker_, column in random.Random(repeat).sample(slots, len(slots)):
            if column in skipped:
                continue
            try:
                reply = worker_.time(column, case)
            except WorkerError as error:
                skipped[column] = f"failed during {case}: {error}"
                continue
            if repeat == 0:  # the warm-up call: its tokens are kept, its time is not
                tokens[column] = reply["tokens"]
            else:
                for clock in CLOCKS:
                    seconds[clock][column].append(reply[clock])
    return {clock: {column: values for column, values in by_column.items() if values and column not in skipped}
            for clock, by_column in seconds.items()}, tokens


def speed(case: str, seconds: list[float], new_tokens: int) -> float:
    """ms for the encoder rows (lower is better), tokens/s for the decoder row (higher is better)."""
    median = statistics.median(seconds)
    return new_tokens / median if case.endswith("tok/s") else median * 1000


def print_table(results: dict[str, dict[str, float]], columns: list[str]) -> None:
    """results: case -> {column: value}. Ratios are ours' speed over optimum's: 1.00 or more = ours no slower."""
    ratios = [(ours, other, heading) for ours, other, heading in RATIOS if ours in columns and other in columns]
    print("| measure | " + " | ".join(columns + [heading for _, _, heading in ratios]) + " |")
    print("|---|" + "---|" * (len(columns) + len(ratios)))
    for case, values in results.items():
        cells = [f"{values[column]:.2f}" if column in values else "-" for column in columns]
        for ours, other, _ in ratios:
            if ours in values and other in values:
                ratio = values[ours] / values[other] if case.endswith("tok/s") else values[other] / values[ours]
                cells.append(f"{ratio:.2f}")
            else:
                cells.append("-")
        print(f"| {case} | " + " | ".join(cells) + " |")


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20, help="encoder calls per column (decoder: half, at "
                        "least 5), after one warm-up call")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads of every runtime")
    parser.add_argument("--v5-python", help="the transformers 5.x interpreter (default: .venv5/bin/python)")
    parser.add_argument("--v457-python", help="the transformers 4.57 + optimum interpreter (default: "
                        ".venv/bin/python)")
    parser.add_argument("--current-only", action="store_true", help="only this interpreter's columns")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes, no export validation (a smoke test)")
    parser.add_argument("--worker", choices=sorted(COLUMNS), help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.threads < 1:
        parser.error(f"--repeats {args.repeats} / --threads {args.threads}: both must be 1 or more")
    sizes = TINY if args.tiny else FULL
    if args.worker:
        return worker(args.worker, args.work, args.threads, sizes, args.build, validate=not args.tiny)
    with tempfile.TemporaryDirectory() as tmp:
        workers, skipped = start_workers(Path(tmp), args)
        try:
            results, tokens = {clock: {} for clock in CLOCKS}, {}
            for case in CASES:
                repeats = args.repeats if case.startswith("encoder") else decoder_repeats(args.repeats)
                seconds, case_tokens = measure(workers, case, repeats, skipped)
                for clock, by_column in seconds.items():
                    results[clock][case] = {column: speed(case, values, sizes.new_tokens)
                                            for column, values in by_column.items()}
                tokens.update(case_tokens if case.startswith("decoder") else {})
        finally:
            for worker_ in workers:
                worker_.stop()
    report(results, tokens, skipped, workers, args, sizes)


def decoder_repeats(repeats: int) -> int:
    return max(5, repeats // 2)  # generate() varies more than a forward: more repeats than a quarter


def report(results: dict[str, dict], tokens: dict, skipped: dict[str, str], workers: list[Worker],
           args: argparse.Namespace, sizes: Sizes) -> None:
    """The shapes and versions, one table per clock, the columns left out and why, the token check."""
    print(f"encoder: hidden {sizes.hidden}, {sizes.layers} layers, {sizes.heads} heads, ffn {sizes.ffn}, sequence "
          f"{sizes.sequence}, median of {args.repeats}; decoder: vocab {sizes.decoder_vocab}, greedy "
          f"{sizes.new_tokens} new tokens from {sizes.prompt}, batch 1, median of {decoder_repeats(args.repeats)}; "
          f"{args.threads} threads everywhere, ORT spinning off (onnxruntime-genai's session too), "
          "OMP_WAIT_POLICY=PASSIVE")
    for worker_ in workers:
        print(f"  {worker_.python}: {worker_.versions}")
    columns = [column for column in TABLE_ORDER if column not in skipped]
    if not columns:
        print("no column ran:")
    for clock, description in CLOCKS.items() if columns else ():
        print(f"\n{description}; ratios: ours' speed / theirs (1.00 or more: ours no slower)")
        print_table(results[clock], columns)
    for column, reason in skipped.items():
        print(f"skipped {column}: {reason}")
    if tokens:
        reference_column, reference = next(iter(tokens.items()))
        differ = [column for column, ids in tokens.items() if ids != reference]
        print("decoder tokens identical across columns: " + ("yes" if not differ else
              f"NO: {differ} differ from {reference_column}"))


if __name__ == "__main__":
    main()
