"""Our ONNX Runtime class for the text encoder-decoder's exports (export/ort_seq2seq.py), on any transformers version:
export_onnx validates, generate() (greedy, beam search, seeded sampling) gives PyTorch's tokens with and without the
with-past graph, for MHA and GQA, the cache between steps is a transformers EncoderDecoderCache, the INT8 / FP16
variants load, and what the graphs cannot do is refused with what to do instead. The speech class is tested in
test_export_whisper.py."""

import pytest
import torch
import transformers
from transformers.cache_utils import EncoderDecoderCache

import hf_tformer as ht
from hf_tformer_demo.toy_tokenizer import train_tokenizer
from hf_tformer_export.export import export_onnx
from hf_tformer_export.runtime import load_ort_model
from vision_helpers import perturbed

TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5
WITH_PAST, WITHOUT_PAST = "text2text-generation-with-past", "text2text-generation"
# name -> (key/value heads of 4 query heads, task, INT8 + FP16 variants too, other config fields)
CASES = {"mha": (4, WITH_PAST, False, {}), "gqa": (2, WITH_PAST, True, {}), "mha-no-past": (4, WITHOUT_PAST, False, {}),
         # learned decoder positions in a short table: the traced past + new tokens must fit it
         "learned-12": (4, WITH_PAST, False, dict(position_embedding_type="learned", max_position_embeddings=12))}
GENERATING = ("mha", "gqa", "mha-no-past")
SETTINGS = {
    "greedy": dict(do_sample=False),
    "beam search": dict(num_beams=3, num_return_sequences=2, do_sample=False),
    "sampling": dict(do_sample=True, top_k=20, temperature=0.9),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """name -> (PyTorch model, tokenizer, export folder, export report), each case exported once, on first use."""
    done = {}

    def get(name: str):
        if name not in done:
            kv_heads, task, variants, overrides = CASES[name]
            root = tmp_path_factory.mktemp(name.replace(" ", "_"))
            tokenizer = train_tokenizer("unigram")
            config = ht.TformerEncoderDecoderConfig(
                vocab_size=len(tokenizer), hidden_size=32, num_attention_heads=4, num_key_value_heads=kv_heads,
                intermediate_size=64, encoder_layers=2, decoder_layers=2, hidden_dropout=0.0, attention_dropout=0.0,
                pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.bos_token_id,
                tie_word_embeddings=False, **{"max_position_embeddings": 64, **overrides})
            # untied and perturbed: a tied random head repeats one token, which would hide a cache bug
            torch.manual_seed(0)
            model = perturbed(ht.TformerEncoderDecoderForConditionalGeneration(config), seed=1)
            model.save_pretrained(root / "ckpt")
            tokenizer.save_pretrained(root / "ckpt")
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("HF_HOME", str(root / "hf_home"))  # this checkpoint's remote code only
                report = export_onnx(str(root / "ckpt"), str(root / "onnx"), task, quantize=variants, fp16=variants)
            done[name] = model, tokenizer, root / "onnx", report
        return done[name]

    return get


def source_batch(tokenizer) -> dict[str, torch.Tensor]:
    """Three right-padded sources of different lengths, as the tokenizer pads them."""
    return tokenizer(["the quick brown fox", "paris is the capital of france and berlin of germany", "a model"],
                     return_tensors="pt", padding=True)


@pytest.mark.parametrize("name", list(CASES))
def test_export_validates_against_pytorch(exports, name):
    _, _, out, report = exports(name)
    check = report.validation[0]
    assert check.max_abs_diff <= 1e-4 and check.greedy_identical is True
    with_past = CASES[name][1] == WITH_PAST
    graphs = {"encoder_model.onnx", "decoder_model.onnx"} | ({"decoder_with_past_model.onnx"} if with_past else set())
    assert {f for f in report.files if not f.endswith(("_quantized.onnx", "_fp16.onnx"))} == graphs
    ort = load_ort_model(out, CASES[name][1])
    assert type(ort).__name__ == "TformerORTModelForSeq2SeqLM" and ort.use_cache == with_past


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", GENERATING)
def test_generate_gives_pytorchs_tokens(exports, name, setting):
    model, tokenizer, out, _ = exports(name)
    ort = load_ort_model(out, CASES[name][1])
    inputs = source_batch(tokenizer)
    assert (inputs["attention_mask"] == 0).any()  # padded rows: the encoder mask reaches both decoder graphs
    outputs = []
    for generator in (model, ort):
        torch.manual_seed(0)
        with torch.no_grad():
            outputs.append(generator.generate(**inputs, max_new_tokens=10, min_new_tokens=10, **SETTINGS[setting]))
    assert outputs[0].shape == (3 * SETTINGS[setting].get("num_return_sequences", 1), 11)
    assert len(set(outputs[0][0, 1:].tolist())) > 2  # not one token repeated: the cache is really exercised
    assert torch.equal(outputs[0], outputs[1]), setting


def test_the_cache_holds_self_and_cross_keys_between_steps(exports):
    """Step by step through forward(): the first step's cache holds the encoder's keys / values (cross, marked
    updated) and the first token's (self, GQA: 2 heads); each step appends one position to the self part only; the
    logits equal PyTorch's over the whole decoder sequence."""
    model, tokenizer, out, _ = exports("gqa")
    ort = load_ort_model(out, WITH_PAST)
    inputs = source_batch(tokenizer)
    source_length = inputs["input_ids"].shape[1]
    decoder_ids = torch.tensor([[model.config.decoder_start_token_id, 7, 9, 11]] * 3)
    encoded = ort.get_encoder()(**inputs)
    cache, steps = None, []
    for step in range(4):
        output = ort(attention_mask=inputs["attention_mask"], decoder_input_ids=decoder_ids[:, step:step + 1],
                     encoder_outputs=encoded, past_key_values=cache, use_cache=True)
        cache = output.past_key_values
        assert isinstance(cache, EncoderDecoderCache) and cache.get_seq_length() == step + 1
        assert cache.self_attention_cache.layers[1].keys.shape == (3, 2, step + 1, 8)
        assert cache.cross_attention_cache.layers[1].values.shape == (3, 2, source_length, 8)
        assert all(cache.is_updated[layer] for layer in range(2))
        steps.append(output.logits)
    with torch.no_grad():
        expected = model(**inputs, decoder_input_ids=decoder_ids).logits
    torch.testing.assert_close(torch.cat(steps, dim=1), expected, atol=1e-4, rtol=1e-4)


def test_int8_and_fp16_variants_load_and_generate(exports):
    model, tokenizer, out, report = exports("gqa")
    assert report.quantization.agreement >= 0.9  # reported, not gated
    inputs = source_batch(tokenizer)
    with torch.no_grad():
        expected = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    for variant in ("quantized", "fp16"):
        ort = load_ort_model(out, WITH_PAST, variant=variant)
        paths = [ort.encoder.path] + [session.path for session in ort.sessions.values()]
        assert all(path.name.endswith(f"_{variant}.onnx") for path in paths), paths
        tokens = ort.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        assert tokens.shape == expected.shape
        assert (tokens == expected).float().mean() >= 0.5  # close to the fp32 tokens, not required equal


def test_an_export_without_past_refuses_a_cache_and_says_what_to_do(exports):
    _, tokenizer, out, _ = exports("mha-no-past")
    ort = load_ort_model(out, WITHOUT_PAST)
    assert ort.generation_config.use_cache is False  # generate() feeds the whole decoder sequence every step
    with pytest.raises(ValueError, match="no decoder_with_past_model.onnx.*use_cache=False"):
        ort.generate(**source_batch(tokenizer), max_new_tokens=3, use_cache=True)


def test_a_padded_decoder_prompt_is_refused_with_what_to_do(exports):
    """The graphs attend every decoder token (optimum's layout has no decoder mask): masked decoder tokens would be
    silently attended, so they are refused."""
    _, tokenizer, out, _ = exports("mha")
    ort = load_ort_model(out, WITH_PAST)
    inputs = source_batch(tokenizer)
    decoder_ids = torch.tensor([[0, 1, 7], [1, 7, 9], [1, 9, 7]])
    decoder_mask = torch.tensor([[0, 1, 1], [1, 1, 1], [1, 1, 1]])
    with pytest.raises(ValueError, match="decoder_attention_mask masks decoder tokens.*unpadded decoder_input_ids"):
        ort.generate(**inputs, decoder_input_ids=decoder_ids, decoder_attention_mask=decoder_mask, max_new_tokens=3)
    unmasked = ort.generate(**inputs, decoder_input_ids=decoder_ids, decoder_attention_mask=torch.ones_like(
        decoder_mask), max_new_tokens=3, min_new_tokens=3)
    assert unmasked.shape == (3, 6)  # a mask of ones is what the graphs do anyway


@pytest.mark.skipif(TRANSFORMERS_5, reason="transformers 5 removed the text2text-generation pipeline")
def test_text2text_pipeline_over_the_export_gives_pytorchs_text(exports):
    model, tokenizer, out, _ = exports("mha")
    texts = ["the quick brown fox", "a model"]
    results = []
    for generator in (model, load_ort_model(out, WITH_PAST)):
        pipe = transformers.pipeline("text2text-generation", model=generator, tokenizer=tokenizer)
        results.append(pipe(texts, max_new_tokens=6, do_sample=False, batch_size=2))
    assert results[0] == results[1] and results[0][0]["generated_text"]
