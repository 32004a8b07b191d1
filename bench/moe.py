"""Sparse mixture of experts: hf_tformer vs transformers' MixtralForCausalLM with the same (converted) weights.

    python bench/moe.py [--threads 2] [--repeats 5]     (or: hf-tformer bench moe)

A Mixtral-shaped tiny model (hidden 512, 4 layers, 8 heads over 2 key/value heads, 8 experts of 1024 hidden
units, top-2 routing, 32k vocabulary, random weights) is saved natively, converted with the parity gate, and both
run side by side, contenders alternating run by run: a forward over 4 x 128 tokens, and greedy generate() of
64 new tokens after a 16-token prompt (DynamicCache, batch 1). Prints the median times, the ratios and whether the
greedy tokens are identical.
"""

import argparse
import tempfile
from pathlib import Path
from typing import Optional

import torch
from transformers import MixtralConfig, MixtralForCausalLM

import hf_tformer as ht
from hf_tformer_conversion import convert

from hf_tformer_bench.generation import NEW_TOKENS, generation_runner, interleaved_rates, interleaved_seconds

SHAPE = dict(vocab_size=32000, hidden_size=512, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
             num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2, max_position_embeddings=1024)
BATCH, SEQ = 4, 128


def models(folder: Path) -> tuple[MixtralForCausalLM, ht.TformerDecoderForCausalLM]:
    torch.manual_seed(0)
    native = MixtralForCausalLM(MixtralConfig(**SHAPE, pad_token_id=0, attn_implementation="sdpa")).eval()
    native.save_pretrained(folder / "mixtral")
    convert(str(folder / "mixtral"), str(folder / "ours"), progress=False)  # the parity gate included
    ours = ht.TformerDecoderForCausalLM.from_pretrained(folder / "ours", dtype=torch.float32).eval()
    return native, ours


def forward_runner(model, inputs: dict):
    def run() -> torch.Tensor:
        with torch.no_grad():
            return model(**inputs, use_cache=False).logits

    return run


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, fp32, Mixtral-shaped: {SHAPE}")
    with tempfile.TemporaryDirectory() as folder:
        native, ours = models(Path(folder))
    generator = torch.Generator().manual_seed(0)

    ids = torch.randint(3, SHAPE["vocab_size"], (BATCH, SEQ), generator=generator)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    seconds, logits = interleaved_seconds({"Mixtral": forward_runner(native, inputs),
                                           "ours": forward_runner(ours, inputs)}, args.repeats)
    difference = float((logits["Mixtral"] - logits["ours"]).abs().max())
    print(f"{'forward ' + str(BATCH) + ' x ' + str(SEQ) + ', MixtralForCausalLM':<48} {seconds['Mixtral'] * 1e3:8.1f} ms")
    print(f"{'forward ' + str(BATCH) + ' x ' + str(SEQ) + ', hf_tformer':<48} {seconds['ours'] * 1e3:8.1f} ms   "
          f"speed ratio ours / Mixtral {seconds['Mixtral'] / seconds['ours']:.2f}   max |Δ logits| {difference:.1e}")

    prompt = torch.randint(3, SHAPE["vocab_size"], (1, 16), generator=generator)
    inputs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}
    rates, tokens = interleaved_rates({"Mixtral": generation_runner(native, inputs, pad_token_id=0),
                                       "ours": generation_runner(ours, inputs)}, args.repeats)
    same = torch.equal(tokens["Mixtral"], tokens["ours"])
    print(f"{'greedy, ' + str(NEW_TOKENS) + ' new tokens, MixtralForCausalLM':<48} {rates['Mixtral']:8.1f} tok/s")
    print(f"{'greedy, ' + str(NEW_TOKENS) + ' new tokens, hf_tformer':<48} {rates['ours']:8.1f} tok/s   "
          f"ratio ours / Mixtral {rates['ours'] / rates['Mixtral']:.2f}   tokens {'identical' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
