"""End-to-end demo on an embedded default (no download): for each variant, build a tiny model and a locally trained
tokenizer, save them (safetensors + remote code + tokenizer), reload through AutoModel*.from_pretrained(...,
trust_remote_code=True) in a fresh process where hf_tformer is not importable, check the outputs are bit-identical,
run a pipeline on the reloaded checkpoint, then export each checkpoint to ONNX (fused attention) and check ONNX
Runtime against PyTorch (logits and greedy tokens).

    python examples/demo.py [--out DIR [--force]]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

import hf_tformer as ht
from toy_tokenizer import train_tokenizer

TINY = dict(vocab_size=160, hidden_size=64, num_attention_heads=4, intermediate_size=128, max_position_embeddings=128)
# (name, model class, config, auto class, tokenizer kind, pipeline task, pipeline input)
VARIANTS = [
    ("encoder", ht.TformerEncoderForMaskedLM, ht.TformerEncoderConfig(num_hidden_layers=2, **TINY),
     "AutoModelForMaskedLM", "wordpiece", "fill-mask", "paris is the [MASK] of france"),
    ("decoder", ht.TformerDecoderForCausalLM,
     ht.TformerDecoderConfig(num_hidden_layers=2, num_key_value_heads=2, position_embedding_type="rotary",
                             hidden_act="swiglu", norm_type="rmsnorm", **TINY),
     "AutoModelForCausalLM", "bpe", "text-generation", "the quick brown fox"),
    ("encoder-decoder", ht.TformerEncoderDecoderForConditionalGeneration,
     ht.TformerEncoderDecoderConfig(encoder_layers=2, decoder_layers=2, **TINY),
     "AutoModelForSeq2SeqLM", "unigram", "text2text-generation", "the encoder reads the source"),
]

RELOAD = """
import sys, json, time, torch, transformers
class _NoHfTformer:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "hf_tformer":
            raise ImportError("not importable here")
sys.meta_path.insert(0, _NoHfTformer())
folder, auto_name, task, text = sys.argv[1:5]
start = time.perf_counter()
model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
load_seconds = time.perf_counter() - start
data = torch.load(folder + "/demo_inputs.pt")
with torch.no_grad():
    logits = model(**data["inputs"]).logits
result = {"class": type(model).__module__ + "." + type(model).__name__, "load_seconds": load_seconds,
          "identical": bool(torch.equal(logits, data["logits"]))}
if "generate" in data:
    result["generated"] = model.generate(**data["generate"]).tolist()
pipe = transformers.pipeline(task, model=folder, trust_remote_code=True)
kwargs = {"top_k": 1} if task == "fill-mask" else {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False}
start = time.perf_counter()
output = pipe(text, **kwargs)
result["pipeline_seconds"] = time.perf_counter() - start
result["pipeline"] = output[0]
print(json.dumps(result))
"""


def run_variant(name, model_class, config, auto_name, tokenizer_kind, task, text, root: Path, progress) -> dict:
    progress.set_description(f"{name}: train {tokenizer_kind} tokenizer, build {model_class.__name__}")
    tokenizer = train_tokenizer(tokenizer_kind, vocab_size=config.vocab_size)
    config.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    model = model_class(config).eval()
    ids = torch.randint(3, config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if config.is_encoder_decoder:
        inputs["decoder_input_ids"] = ids[:, :6]
    data = {"inputs": inputs}
    with torch.no_grad():
        data["logits"] = model(**inputs).logits
    if name != "encoder":
        data["generate"] = {"input_ids": ids, "attention_mask": inputs["attention_mask"], "max_new_tokens": 8,
                            "do_sample": False, "pad_token_id": config.pad_token_id}
        expected_tokens = model.generate(**data["generate"]).tolist()
    folder = root / name
    progress.set_description(f"{name}: save safetensors + remote code + tokenizer")
    start = time.perf_counter()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save(data, folder / "demo_inputs.pt")
    save_seconds = time.perf_counter() - start
    progress.set_description(f"{name}: reload with {auto_name} in a fresh process without hf_tformer, run {task}")
    result = subprocess.run([sys.executable, "-c", RELOAD, str(folder), auto_name, task, text],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"reload failed:\n{result.stderr[-3000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report.update(variant=name, parameters=model.num_parameters(), save_seconds=save_seconds,
                  files=sorted(p.name for p in folder.iterdir()))
    if name != "encoder":
        report["generate_identical"] = report.pop("generated") == expected_tokens
    return report


EXPORT_TASKS = {"fill-mask": "fill-mask", "text-generation": "text-generation-with-past",
                "text2text-generation": "text2text-generation-with-past"}


def export_to_onnx(root: Path) -> list[dict]:
    """ONNX Runtime step: export each checkpoint (fused attention) and validate it against PyTorch."""
    import warnings

    from hf_tformer_export.export import export_onnx

    results = []
    with tqdm(VARIANTS, unit="export") as progress:
        for name, *_, task, _text in progress:
            progress.set_description(f"{name}: export to ONNX for {EXPORT_TASKS[task]}, validate on ONNX Runtime")
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                report = export_onnx(str(root / name), str(root / name / "onnx"), EXPORT_TASKS[task])
            check = report.validation[0]
            results.append({"variant": name, "task": report.task, "seconds": time.perf_counter() - start,
                            "max_abs_diff": check.max_abs_diff, "greedy_identical": check.greedy_identical,
                            "fused": sum(c.get("Attention", 0) + c.get("MultiHeadAttention", 0)
                                         for c in report.node_counts.values())})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the checkpoints here (default: a temporary folder)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    args = parser.parse_args()
    if args.out and args.out.exists() and not args.force:
        raise SystemExit(f"{args.out} exists; pass --force to replace it.")
    torch.set_num_threads(2)
    staging = Path(tempfile.mkdtemp(prefix="hf_tformer_demo_"))
    reports = []
    with tqdm(VARIANTS, unit="variant") as progress:
        for variant in progress:
            reports.append(run_variant(*variant, staging, progress))
    print("\nReport (weights are random: the texts are well-formed, not meaningful)")
    print(f"{'variant':<16} {'params':>8} {'save s':>7} {'load s':>7} {'logits identical':>17} {'generate identical':>19}"
          f" {'pipeline s':>10}")
    for r in reports:
        print(f"{r['variant']:<16} {r['parameters']:>8,} {r['save_seconds']:>7.2f} {r['load_seconds']:>7.2f} "
              f"{str(r['identical']):>17} {str(r.get('generate_identical', '-')):>19} {r['pipeline_seconds']:>10.2f}")
    for r, variant in zip(reports, VARIANTS):
        print(f"  {variant[5]:<21} {variant[6]!r} -> {json.dumps(r['pipeline'])}")
    print(f"\nloaded as: {', '.join(r['class'].split('.')[-1] for r in reports)} (from transformers_modules)")
    print(f"files in each checkpoint: {', '.join(reports[1]['files'])}")
    exports = export_to_onnx(staging)
    print(f"\n{'ONNX Runtime':<16} {'task':<31} {'export+check s':>14} {'max |diff|':>11} {'greedy identical':>17}"
          f" {'fused attention nodes':>21}")
    for e in exports:
        print(f"{e['variant']:<16} {e['task']:<31} {e['seconds']:>14.2f} {e['max_abs_diff']:>11.1e} "
              f"{str(e['greedy_identical'] if e['greedy_identical'] is not None else '-'):>17} {e['fused']:>21}")
    if args.out:
        if args.out.exists():
            shutil.rmtree(args.out)
        shutil.move(staging, args.out)  # a rename when on the same filesystem
        print(f"checkpoints kept in {args.out}")
    else:
        shutil.rmtree(staging)
    ok = all(r["identical"] and r.get("generate_identical", True) for r in reports) and all(
        e["max_abs_diff"] <= 1e-4 and e["greedy_identical"] is not False and e["fused"] > 0 for e in exports)
    print("\nALL CHECKS PASSED" if ok else "\nSOME CHECKS FAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
