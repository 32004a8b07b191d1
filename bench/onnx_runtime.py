"""Encoder inference: our PyTorch vs our ONNX Runtime exports (plain, fused, fused+ORT optimizer, INT8) vs optimum's
fused ORT export of the native BertModel, same shape, random weights, side by side in one run.

    python bench/onnx_runtime.py [--repeats 20] [--threads 2]

BERT-small shape: hidden 256, 4 layers, 4 heads, ffn 1024, sequence 128, batch 1 and 8. Medians of interleaved runs.
Also: node counts per graph, and decoder greedy generation tokens/s on ORT vs PyTorch.
"""

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

SHAPE = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
VOCAB, SEQ = 30522, 128
GENERATED = 64


def session_options(threads: int):
    """Spinning off: after a run ORT's idle pool threads spin for more work, and with several sessions (and PyTorch)
    taking turns on 2 cores those spinning threads steal the cores from whoever runs next. Measured with spinning
    on, every runtime in this script was up to 2x slower than alone (native O2 at batch 8: 108 ms vs 59 ms)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def session(path: Path, threads: int):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def feeds(sess, batch: int) -> dict:
    generator = np.random.default_rng(0)
    data = {"input_ids": generator.integers(3, VOCAB, (batch, SEQ), dtype=np.int64),
            "attention_mask": np.ones((batch, SEQ), dtype=np.int64),
            "token_type_ids": np.zeros((batch, SEQ), dtype=np.int64)}
    return {i.name: data[i.name] for i in sess.get_inputs()}


def ort_optimize(source: Path, target: Path) -> None:
    """ORT's transformer optimizer (BERT fusions: SkipLayerNormalization, BiasGelu, EmbedLayerNormalization, ...)."""
    from onnxruntime.transformers.optimizer import optimize_model

    optimize_model(str(source), model_type="bert", num_heads=SHAPE["num_attention_heads"],
                   hidden_size=SHAPE["hidden_size"]).save_model_to_file(str(target))


def build(work: Path) -> dict[str, Path]:
    from optimum.exporters.onnx import main_export
    from transformers import BertConfig, BertModel

    import hf_tformer as ht
    from hf_tformer_export.export import export_onnx, quantize_int8

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=VOCAB, **SHAPE), add_pooling_layer=False).save_pretrained(work / "bert")
    ht.TformerEncoderModel(ht.TformerEncoderConfig(
        vocab_size=VOCAB, type_vocab_size=2, norm_placement="post", embedding_layernorm=True, layer_norm_eps=1e-12,
        **SHAPE)).save_pretrained(work / "ours")
    main_export(str(work / "bert"), work / "bert_onnx", task="feature-extraction", optimize="O2")
    export_onnx(str(work / "ours"), str(work / "plain"), "feature-extraction", attention="plain")
    export_onnx(str(work / "ours"), str(work / "fused"), "feature-extraction", attention="fused", quantize=True)
    ort_optimize(work / "fused" / "model.onnx", work / "fused_opt.onnx")
    quantize_int8(work / "fused_opt.onnx", work / "fused_opt_int8.onnx")
    native = work / "bert_onnx" / "model_optimized.onnx"  # optimum writes the O2 graph in place or beside model.onnx
    return {"native BertModel, optimum fused (O2)": native if native.exists() else work / "bert_onnx" / "model.onnx",
            "ours plain": work / "plain" / "model.onnx", "ours fused": work / "fused" / "model.onnx",
            "ours fused + ORT optimizer": work / "fused_opt.onnx",
            "ours INT8 (fused)": work / "fused" / "model_quantized.onnx",
            "ours INT8 (fused + ORT optimizer)": work / "fused_opt_int8.onnx"}


def print_node_table(graphs: dict[str, Path], op_types: tuple[str, ...]) -> None:
    """A markdown table: each graph's node count and how many nodes of each of `op_types` it has."""
    from hf_tformer_export.export import count_nodes

    print("| graph | nodes | " + " | ".join(op_types) + " |")
    print("|---|---|" + "---|" * len(op_types))
    for name, path in graphs.items():
        counts = count_nodes(path)
        print(f"| {name} | {sum(counts.values())} | " + " | ".join(str(counts.get(op, 0)) for op in op_types) + " |")


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    from hf_tformer_export.__main__ import require_optimum_onnx

    require_optimum_onnx()  # a clear ValueError in an environment without optimum-onnx
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    import hf_tformer as ht

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        graphs = build(work)
        pytorch = ht.TformerEncoderModel.from_pretrained(work / "ours").eval()
        sessions = {name: session(path, args.threads) for name, path in graphs.items()}
        print_node_table(graphs, ("Attention", "MultiHeadAttention", "SkipLayerNormalization"))
        for batch in (1, 8):
            runners = {"ours PyTorch eager (sdpa)": _pytorch_runner(pytorch, batch)}
            for name, sess in sessions.items():
                data = feeds(sess, batch)
                runners[name] = lambda sess=sess, data=data: sess.run(None, data)
            times = {name: [] for name in runners}
            for fn in runners.values():
                fn()
            for repeat in range(args.repeats):
                names = list(runners)[repeat % len(runners):] + list(runners)[:repeat % len(runners)]
                for name in names:
                    start = time.perf_counter()
                    runners[name]()
                    times[name].append(time.perf_counter() - start)
            medians = {name: statistics.median(values) * 1000 for name, values in times.items()}
            native, eager = medians["native BertModel, optimum fused (O2)"], medians["ours PyTorch eager (sdpa)"]
            fp32 = min(medians["ours fused"], medians["ours fused + ORT optimizer"])
            print(f"\nbatch {batch} x {SEQ}, {args.threads} threads, median of {args.repeats}")
            print("| runtime | ms | vs native fused ORT | speed-up vs our PyTorch | speed-up vs our best fp32 ORT |")
            print("|---|---|---|---|---|")
            for name, ms in medians.items():
                print(f"| {name} | {ms:.2f} | {ms / native:.2f} | {eager / ms:.2f} | {fp32 / ms:.2f} |")
        decoder_generation(work, args.threads, max(3, args.repeats // 4))


def decoder_generation(work: Path, threads: int, repeats: int) -> None:
    """Greedy generate() on ORT (fused, with past) vs PyTorch: the issue-3 decoder shape, 16-token prompt."""
    import hf_tformer as ht
    from hf_tformer_export.export import export_onnx
    from hf_tformer_export.runtime import load_ort_model

    torch.manual_seed(0)
    pytorch = ht.TformerDecoderForCausalLM(ht.TformerDecoderConfig(
        vocab_size=50257, hidden_size=768, num_attention_heads=12, intermediate_size=3072, num_hidden_layers=4,
        max_position_embeddings=1024, hidden_act="gelu_new", pad_token_id=0, bos_token_id=50256, eos_token_id=50256,
    )).eval()
    pytorch.save_pretrained(work / "decoder")
    export_onnx(str(work / "decoder"), str(work / "decoder_onnx"), "text-generation-with-past")
    onnx_model = load_ort_model(work / "decoder_onnx", "text-generation-with-past",
                                session_options=session_options(threads))
    prompt = {"input_ids": torch.randint(3, 50257, (1, 16)), "attention_mask": torch.ones(1, 16, dtype=torch.long)}
    kwargs = dict(max_new_tokens=GENERATED, min_new_tokens=GENERATED, do_sample=False)
    outputs, seconds = {}, {"PyTorch (DynamicCache)": [], "ORT fused, with past": []}
    models = {"PyTorch (DynamicCache)": pytorch, "ORT fused, with past": onnx_model}
    for name, model in models.items():
        outputs[name] = model.generate(**prompt, **kwargs)  # warm-up
    for repeat in range(repeats):
        for name in (list(models) if repeat % 2 == 0 else list(models)[::-1]):
            start = time.perf_counter()
            with torch.inference_mode():
                models[name].generate(**prompt, **kwargs)
            seconds[name].append(time.perf_counter() - start)
    rates = {name: GENERATED / statistics.median(values) for name, values in seconds.items()}
    same = torch.equal(*outputs.values())
    print(f"\ndecoder greedy generation (4 x 768, 12 heads, vocab 50257), batch 1, 16-token prompt, {GENERATED} "
          f"new tokens, {threads} threads, median of {repeats}; tokens identical: {same}")
    print("| runtime | tokens/s | vs PyTorch |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.1f} | {rate / rates['PyTorch (DynamicCache)']:.2f} |")


def _pytorch_runner(model, batch: int):
    ids = torch.randint(3, VOCAB, (batch, SEQ))
    mask = torch.ones_like(ids)

    def run():
        with torch.inference_mode():
            model(input_ids=ids, attention_mask=mask)

    return run


if __name__ == "__main__":
    main()
