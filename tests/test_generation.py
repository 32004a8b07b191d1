"""generate() for the decoder and the encoder-decoder: decoding strategies, caches, streaming, compile, bad input."""

import pytest
import torch
from transformers import TextStreamer

import hf_tformer as ht
from conftest import random_ids, tiny_config
from hf_tformer_demo.toy_tokenizer import train_tokenizer


def causal_lm(**overrides):
    torch.manual_seed(0)
    return ht.TformerDecoderForCausalLM(tiny_config("decoder", **overrides)).eval()


def seq2seq(**overrides):
    torch.manual_seed(0)
    return ht.TformerEncoderDecoderForConditionalGeneration(tiny_config("encoder_decoder", **overrides)).eval()


MODELS = {"decoder": causal_lm, "encoder_decoder": seq2seq}


@pytest.mark.parametrize("variant", MODELS)
def test_sampling_is_seeded_and_respects_top_k(variant):
    model = MODELS[variant](num_key_value_heads=2)
    ids = random_ids(2, 5)
    kwargs = dict(attention_mask=torch.ones_like(ids), do_sample=True, top_k=5, top_p=0.9, temperature=0.7,
                  max_new_tokens=6, pad_token_id=0)
    torch.manual_seed(1)
    first = model.generate(ids, **kwargs)
    torch.manual_seed(1)
    assert torch.equal(first, model.generate(ids, **kwargs))


@pytest.mark.parametrize("variant", MODELS)
def test_beam_search_with_cache_equals_without(variant):
    model = MODELS[variant](position_embedding_type="rotary")
    ids = random_ids(2, 5)
    kwargs = dict(attention_mask=torch.ones_like(ids), num_beams=3, num_return_sequences=2, max_new_tokens=6,
                  do_sample=False, pad_token_id=0, early_stopping=True)
    cached = model.generate(ids, **kwargs)
    assert cached.shape[0] == 4  # cache reordering across beams is exercised here
    assert torch.equal(cached, model.generate(ids, use_cache=False, **kwargs))


@pytest.mark.parametrize("variant", MODELS)
def test_repetition_penalty_and_eos_stop(variant):
    model = MODELS[variant]()
    ids = random_ids(1, 5)
    start = 5 if variant == "decoder" else 1  # the encoder-decoder's output starts at decoder_start_token_id
    common = dict(max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None)
    plain = model.generate(ids, **common)[0, start:].tolist()
    penalised = model.generate(ids, repetition_penalty=5.0, **common)[0, start:].tolist()
    assert len(set(penalised)) >= len(set(plain)) and len(set(penalised)) > 1
    stop_at = plain[2]
    stopped = model.generate(ids, **{**common, "eos_token_id": stop_at})[0, start:].tolist()
    assert stopped == plain[: plain.index(stop_at) + 1]


def test_text_streamer_prints_the_generated_text(capsys):
    tokenizer = train_tokenizer("bpe")
    torch.manual_seed(0)
    config = tiny_config("decoder", vocab_size=len(tokenizer))
    model = ht.TformerDecoderForCausalLM(config).eval()
    inputs = tokenizer("the quick brown fox", return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=5, do_sample=False, streamer=TextStreamer(tokenizer))
    printed = capsys.readouterr().out
    assert printed.strip() == tokenizer.decode(out[0]).strip()


# inductor's CPU inference recipe that README and bench/generation.py recommend for decoding on CPU.
CPU_RECIPE = {"freezing": True, "max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN", "cpp_wrapper": True}


# A sparse mixture-of-experts decoder: under compilation moe.py takes its static every-expert path.
MOE = dict(hidden_act="swiglu", mlp_bias=False, num_experts=4, num_experts_per_tok=2)


@pytest.mark.parametrize("inductor_options, model_overrides", [
    pytest.param({}, {}, id="defaults"),
    # ~100 s cold on 2 cores, all of it torch's compiler: once per CI run, in the 4.57 suite.
    pytest.param(CPU_RECIPE, {}, id="cpu-recipe", marks=pytest.mark.once),
    pytest.param({}, MOE, id="moe", marks=pytest.mark.once),  # ~20 s of compilation
])
def test_static_cache_under_torch_compile_matches_dynamic_cache(inductor_options, model_overrides):
    torch._dynamo.reset()
    model = causal_lm(position_embedding_type="rotary", num_key_value_heads=2, **model_overrides)
    ids = random_ids(1, 6)
    kwargs = dict(attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False, pad_token_id=0)
    dynamic = model.generate(ids, **kwargs)
    model.forward = torch.compile(model.forward, dynamic=False)
    with torch._inductor.config.patch(inductor_options):  # read when the first call compiles
        compiled = model.generate(ids, cache_implementation="static", **kwargs)
    assert torch.equal(compiled, dynamic)


def test_asking_for_more_tokens_than_learned_positions_allow_is_a_value_error():
    model = causal_lm(position_embedding_type="learned", max_position_embeddings=10)
    ids = random_ids(1, 6)
    with pytest.raises(ValueError, match="max_position_embeddings=10"):
        model.generate(ids, max_new_tokens=20, do_sample=False, pad_token_id=0)


def test_invalid_beam_combinations_are_value_errors():
    model = causal_lm()
    ids = random_ids(1, 4)
    with pytest.raises(ValueError):
        model.generate(ids, num_beams=2, num_return_sequences=3, max_new_tokens=3)
    with pytest.raises(ValueError):
        model.generate(ids, num_beams=0, max_new_tokens=3)


@pytest.mark.parametrize("variant", MODELS)
def test_generate_continues_from_the_cache_it_returned(variant):
    """generate(return_dict_in_generate=True) hands back its cache; a second generate() over the sequences so far
    and that cache continues exactly as one longer generation (same scores). The mask covers the whole sequence,
    which transformers 5.x reads to tell cached tokens from new ones (native BART needs it too)."""
    model = MODELS[variant](eos_token_id=None)
    ids = random_ids(2, 5)
    common = dict(do_sample=False, return_dict_in_generate=True, output_scores=True, pad_token_id=0)
    full = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, **common)
    first = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, **common)
    if variant == "encoder_decoder":
        more = dict(input_ids=ids, attention_mask=torch.ones_like(ids), decoder_input_ids=first.sequences,
                    decoder_attention_mask=torch.ones_like(first.sequences))
    else:
        more = dict(input_ids=first.sequences, attention_mask=torch.ones_like(first.sequences))
    second = model.generate(**more, past_key_values=first.past_key_values, max_new_tokens=3, **common)
    assert torch.equal(second.sequences, full.sequences)
    torch.testing.assert_close(torch.stack(second.scores), torch.stack(full.scores[3:]), atol=1e-5, rtol=1e-5)
