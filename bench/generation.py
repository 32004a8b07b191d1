"""Greedy generate(): hf_tformer vs the native transformers models, same shapes, random weights, one run.

    python bench/generation.py [--threads 2] [--repeats 3] [--no-compile]

decoder vs GPT2LMHeadModel (4 x 768, 12 heads): batch 1, 16-token prompt, 64 new tokens, DynamicCache; then
hf_tformer with a static cache and torch.compile (timed once warm). encoder-decoder vs BartForConditionalGeneration
(d_model 256, 3+3 layers, 4 heads, ffn 1024): 64-token source, 64 new tokens. Prints tokens/s and the ratios.
"""

import argparse
import statistics
import time

import torch
from transformers import BartConfig, BartForConditionalGeneration, GPT2Config, GPT2LMHeadModel

import hf_tformer as ht

NEW_TOKENS = 64


def tokens_per_second(model, inputs: dict, repeats: int, **kwargs) -> float:
    kwargs = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, do_sample=False, **kwargs)
    model.generate(**inputs, **kwargs)  # warm-up (and compilation, for compiled models)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = model.generate(**inputs, **kwargs)
        seconds.append(time.perf_counter() - start)
    produced = out.shape[1] - (inputs["input_ids"].shape[1] if not model.config.is_encoder_decoder else 1)
    assert produced == NEW_TOKENS, produced
    return NEW_TOKENS / statistics.median(seconds)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, greedy, batch 1, {NEW_TOKENS} new tokens, fp32")

    native, ours = decoders()
    prompt = torch.randint(3, 50000, (1, 16), generator=generator)
    inputs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt)}
    rows = [("GPT2LMHeadModel, DynamicCache", tokens_per_second(native, inputs, args.repeats, pad_token_id=0))]
    rows.append(("hf_tformer decoder, DynamicCache", tokens_per_second(ours, inputs, args.repeats)))
    if not args.no_compile:
        ours.forward = torch.compile(ours.forward, dynamic=False)
        rows.append(("hf_tformer decoder, static + compile", tokens_per_second(
            ours, inputs, args.repeats, cache_implementation="static")))
    native_s2s, ours_s2s = seq2seqs()
    source = torch.randint(3, 50000, (1, 64), generator=generator)
    inputs = {"input_ids": source, "attention_mask": torch.ones_like(source)}
    rows.append(("BartForConditionalGeneration", tokens_per_second(native_s2s, inputs, args.repeats)))
    rows.append(("hf_tformer encoder-decoder", tokens_per_second(ours_s2s, inputs, args.repeats)))

    results = dict(rows)
    for name, rate in rows:
        print(f"{name:<40} {rate:8.1f} tok/s")
    print(f"decoder ratio (ours / GPT-2, dynamic cache): {results['hf_tformer decoder, DynamicCache'] / rows[0][1]:.2f}")
    if not args.no_compile:
        print(f"static + compile vs dynamic (ours): "
              f"{results['hf_tformer decoder, static + compile'] / results['hf_tformer decoder, DynamicCache']:.2f}")
    print(f"encoder-decoder ratio (ours / BART): "
          f"{results['hf_tformer encoder-decoder'] / results['BartForConditionalGeneration']:.2f}")


if __name__ == "__main__":
    main()
