"""Greedy generate(): hf_tformer vs the native transformers models, same shapes, random weights, one run.

    python bench/generation.py [--threads 2] [--repeats 5] [--no-compile]

decoder vs GPT2LMHeadModel (4 x 768, 12 heads): batch 1, 16-token prompt, 64 new tokens, DynamicCache; then
hf_tformer with a static cache and torch.compile (timed once warm), with inductor's defaults and with its CPU
inference recipe (weight freezing, C++ GEMM templates picked by autotuning, C++ wrapper). encoder-decoder vs
BartForConditionalGeneration (d_model 256, 3+3 layers, 4 heads, ffn 1024): 64-token source, 64 new tokens.
EOS is switched off in every generation config so each run decodes exactly 64 tokens with no per-step EOS work.
Each comparison alternates its contenders run by run (order rotating) and takes medians. Also prints the
memory-bandwidth bound of a decoding step: at batch 1 every weight is read once per token.
"""

import argparse
import statistics
import time
from typing import Callable, Optional

import torch
import torch._inductor.config
from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel

import hf_tformer as ht

NEW_TOKENS = 64
# inductor's CPU inference recipe: weights become constants packed for the GEMM kernels, autotuning picks between
# its C++ GEMM template and aten per shape, and a C++ wrapper replaces the Python one around the kernels.
CPU_RECIPE = {"freezing": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN", "cpp_wrapper": True}


def generation_runner(model, inputs: dict, **kwargs) -> Callable[[], torch.Tensor]:
    model.generation_config.eos_token_id = None  # decode all 64 tokens, as both sides do
    kwargs = dict(max_new_tokens=NEW_TOKENS, do_sample=False, **kwargs)

    def run() -> torch.Tensor:
        out = model.generate(**inputs, **kwargs)
        produced = out.shape[1] - (1 if model.config.is_encoder_decoder else inputs["input_ids"].shape[1])
        assert produced == NEW_TOKENS, produced
        return out

    return run


def interleaved_samples(runners: dict, repeats: int) -> tuple[dict[str, list[float]], dict]:
    """Seconds of every timed run per runner (runs alternating, order rotating, after one warm-up run each) and
    each runner's warm-up result: the one timing loop of the benches."""
    results = {name: run() for name, run in runners.items()}  # warm-up (and compilation)
    seconds = {name: [] for name in runners}
    names = list(runners)
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[:repeat % len(names)]:
            start = time.perf_counter()
            runners[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds, results


def interleaved_ms(runners: dict, repeats: int) -> tuple[dict[str, list[float]], dict]:
    """interleaved_samples in milliseconds: each runner's per-run times and its warm-up result."""
    seconds, results = interleaved_samples(runners, repeats)
    return {name: [value * 1000 for value in values] for name, values in seconds.items()}, results


def interleaved_seconds(runners: dict, repeats: int) -> tuple[dict, dict]:
    """Median seconds per runner (interleaved_samples) and each runner's warm-up result."""
    seconds, results = interleaved_samples(runners, repeats)
    return {name: statistics.median(times) for name, times in seconds.items()}, results


def interleaved_rates(runners: dict, repeats: int) -> tuple[dict, dict]:
    """tokens/s per runner (median over repeats, runs alternating, order rotating) and each runner's tokens."""
    seconds, tokens = interleaved_seconds(runners, repeats)
    return {name: NEW_TOKENS / median for name, median in seconds.items()}, tokens


def compiled_runner(model, inputs: dict) -> Callable[[], torch.Tensor]:
    """Static cache + torch.compile of the forward; the eager forward is restored after each run so that the
    dynamic-cache runner alternating with it stays eager."""
    eager_forward = model.forward
    compiled_forward = torch.compile(eager_forward, dynamic=False)
    run_static = generation_runner(model, inputs, cache_implementation="static")

    def run() -> torch.Tensor:
        model.forward = compiled_forward
        try:
            return run_static()
        finally:
            model.forward = eager_forward

    return run


def weight_stream_seconds(model, repeats: int = 7) -> float:
    """Time to read every parameter once (a sum per tensor, tied weights counted once): the floor of one step."""
    parameters = list(model.parameters())
    seconds = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for parameter in parameters:
                parameter.sum()
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def decoders():
    torch.manual_seed(0)
    native = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=768, n_head=12, attn_implementation="sdpa")).eval()
    ours = ht.TformerDecoderForCausalLM(ht.TformerDecoderConfig(
        vocab_size=50257, hidden_size=768, num_attention_heads=12, intermediate_size=3072, num_hidden_layers=4,
        max_position_embeddings=1024, hidden_act="gelu_new", pad_token_id=0, bos_token_id=50256, eos_token_id=50256,
    )).eval()
    return native, ours


def seq2seqs():
    torch.manual_seed(0)
    shape = dict(d_model=256, encoder_layers=3, decoder_layers=3, encoder_attention_heads=4,
                 decoder_attention_heads=4, encoder_ffn_dim=1024, decoder_ffn_dim=1024)
    native = BartForConditionalGeneration(BartConfig(attn_implementation="sdpa", **shape)).eval()
    ours = ht.TformerEncoderDecoderForConditionalGeneration(ht.TformerEncoderDecoderConfig(
        vocab_size=50265, hidden_size=256, num_attention_heads=4, intermediate_size=1024, encoder_layers=3,
        decoder_layers=3, max_position_embeddings=1024, position_embedding_type="learned", hidden_act="gelu",
        embedding_layernorm=True, scale_embeddings=False, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        decoder_start_token_id=2,
    )).eval()
    return native, ours


def main(argv: Optional[list[str]] = None, prog: Optional[str] = None) -> None:
    """argv: the options (default sys.argv[1:]); prog: the command name in usage lines (`hf-tformer bench ...`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, greedy, batch 1, {NEW_TOKENS} new tokens, fp32")

    native, ours = decoders()
    prompt = torch.randint(3, 50000, (1, 16), generator=generator)
    inputs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}
    dynamic = generation_runner(ours, inputs)
    rates, _ = interleaved_rates({"GPT-2": generation_runner(native, inputs, pad_token_id=0), "ours": dynamic},
                                 args.repeats)
    print(f"{'GPT2LMHeadModel, DynamicCache':<48} {rates['GPT-2']:6.1f} tok/s")
    print(f"{'hf_tformer decoder, DynamicCache':<48} {rates['ours']:6.1f} tok/s   "
          f"ratio ours / GPT-2 {rates['ours'] / rates['GPT-2']:.2f}")
    best = rates["ours"]
    if not args.no_compile:
        for label, options in (("inductor defaults", {}), ("inductor CPU recipe", CPU_RECIPE)):
            torch._dynamo.reset()
            with torch._inductor.config.patch(options):  # read when the first run compiles
                rates, tokens = interleaved_rates({"static": compiled_runner(ours, inputs), "dynamic": dynamic},
                                                  args.repeats)
            same = torch.equal(tokens["static"], tokens["dynamic"])
            print(f"{'hf_tformer decoder, static + compile, ' + label:<48} {rates['static']:6.1f} tok/s   "
                  f"vs dynamic {rates['dynamic']:.1f}: {rates['static'] / rates['dynamic']:.2f}x, "
                  f"tokens {'identical' if same else 'DIFFERENT'}")
            best = max(best, rates["static"])
    stream = weight_stream_seconds(ours)
    weight_mb = sum(p.numel() * p.element_size() for p in ours.parameters()) / 1e6
    print(f"decoder weights read per step: {weight_mb:.0f} MB in {stream * 1e3:.1f} ms "
          f"({weight_mb / 1e3 / stream:.1f} GB/s) -> at most {1 / stream:.0f} tok/s; the fastest run above reaches "
          f"{best * stream:.2f} of that bound")

    native_s2s, ours_s2s = seq2seqs()
    source = torch.randint(3, 50000, (1, 64), generator=generator)
    inputs = {"input_ids": source, "attention_mask": torch.ones_like(source)}
    rates, _ = interleaved_rates({"BART": generation_runner(native_s2s, inputs),
                                  "ours": generation_runner(ours_s2s, inputs)}, args.repeats)
    print(f"{'BartForConditionalGeneration':<48} {rates['BART']:6.1f} tok/s")
    print(f"{'hf_tformer encoder-decoder':<48} {rates['ours']:6.1f} tok/s   "
          f"ratio ours / BART {rates['ours'] / rates['BART']:.2f}")


if __name__ == "__main__":
    main()
