"""The shared core computes exactly what transformers' reference classes compute, given the same weights:
BERT (post-norm encoder) and GPT-2 (pre-norm decoder), random weights, padding included.

The weight mapping here is deliberately minimal and local to the test; the converters of `conversion/` (issue 4)
will own the real, checked key maps.
"""

import torch
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

import hf_tformer as ht

TOL = dict(atol=1e-5, rtol=1e-5)


def _bert_to_ours(source: dict) -> dict:
    out = {}
    for key, value in source.items():
        key = key.replace("bert.embeddings.word_embeddings", "model.embed_tokens")
        key = key.replace("bert.embeddings.position_embeddings", "model.encoder.embeddings.position_embeddings")
        key = key.replace("bert.embeddings.token_type_embeddings", "model.encoder.embeddings.token_type_embeddings")
        key = key.replace("bert.embeddings.LayerNorm", "model.encoder.embeddings.layernorm")
        key = key.replace("bert.encoder.layer.", "model.encoder.layers.")
        for old, new in [("attention.self.query", "self_attn.q_proj"), ("attention.self.key", "self_attn.k_proj"),
                         ("attention.self.value", "self_attn.v_proj"), ("attention.output.dense", "self_attn.o_proj"),
                         ("attention.output.LayerNorm", "self_attn_norm"), ("intermediate.dense", "mlp.up_proj"),
                         ("output.dense", "mlp.down_proj"), ("output.LayerNorm", "mlp_norm"),
                         ("cls.predictions.transform.dense", "lm_head.dense"),
                         ("cls.predictions.transform.LayerNorm", "lm_head.layernorm"),
                         ("cls.predictions.decoder", "lm_head.decoder"), ("cls.predictions.bias", "lm_head.decoder.bias")]:
            key = key.replace(old, new)
        out[key] = value
    return out


def test_encoder_equals_bert_for_masked_lm():
    torch.manual_seed(0)
    shape = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                 max_position_embeddings=64)
    bert = BertForMaskedLM(BertConfig(attn_implementation="eager", hidden_dropout_prob=0.0,
                                      attention_probs_dropout_prob=0.0, **shape)).eval()
    ours = ht.TformerEncoderForMaskedLM(ht.TformerEncoderConfig(hidden_act="gelu", hidden_dropout=0.0,
                                                               attention_dropout=0.0, **shape)).eval()
    missing, unexpected = ours.load_state_dict(_bert_to_ours(bert.state_dict()), strict=False)
    assert not missing and not [k for k in unexpected if "position_ids" not in k], (missing, unexpected)
    ids = torch.randint(1, 120, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    types = torch.zeros_like(ids)
    types[:, 5:] = 1
    with torch.no_grad():
        expected = bert(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        actual = ours(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
    torch.testing.assert_close(actual[mask.bool()], expected[mask.bool()], **TOL)


def _gpt2_to_ours(source: dict, hidden: int) -> dict:
    out = {"model.embed_tokens.weight": source["transformer.wte.weight"],
           "model.decoder.embeddings.position_embeddings.weight": source["transformer.wpe.weight"],
           "model.decoder.final_norm.weight": source["transformer.ln_f.weight"],
           "model.decoder.final_norm.bias": source["transformer.ln_f.bias"]}
    layers = {key.split(".")[2] for key in source if key.startswith("transformer.h.")}
    for index in layers:
        src, dst = f"transformer.h.{index}.", f"model.decoder.layers.{index}."
        # Conv1D stores (in, out): transpose into nn.Linear's (out, in); c_attn holds q, k, v side by side.
        for part, (weight, bias) in zip(("q_proj", "k_proj", "v_proj"), zip(
                source[src + "attn.c_attn.weight"].t().split(hidden), source[src + "attn.c_attn.bias"].split(hidden))):
            out[f"{dst}self_attn.{part}.weight"], out[f"{dst}self_attn.{part}.bias"] = weight, bias
        for ours_name, theirs in [("self_attn.o_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"),
                                  ("mlp.down_proj", "mlp.c_proj")]:
            out[f"{dst}{ours_name}.weight"] = source[f"{src}{theirs}.weight"].t()
            out[f"{dst}{ours_name}.bias"] = source[f"{src}{theirs}.bias"]
        for ours_name, theirs in [("self_attn_norm", "ln_1"), ("mlp_norm", "ln_2")]:
            out[f"{dst}{ours_name}.weight"] = source[f"{src}{theirs}.weight"]
            out[f"{dst}{ours_name}.bias"] = source[f"{src}{theirs}.bias"]
    out["lm_head.weight"] = source["lm_head.weight"]
    return out


def test_decoder_equals_gpt2_logits_and_greedy_tokens():
    torch.manual_seed(0)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=120, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                      resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                                      attn_implementation="eager")).eval()
    ours = ht.TformerDecoderForCausalLM(ht.TformerDecoderConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=64, hidden_act="gelu_new", hidden_dropout=0.0, attention_dropout=0.0,
        pad_token_id=0, bos_token_id=119, eos_token_id=119)).eval()
    ours.load_state_dict(_gpt2_to_ours(gpt2.state_dict(), 32), strict=True)
    ids = torch.randint(1, 119, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        torch.testing.assert_close(ours(ids, attention_mask=mask).logits[mask.bool()],
                                   gpt2(ids, attention_mask=mask).logits[mask.bool()], **TOL)
    prompt = ids[:1]
    kwargs = dict(max_new_tokens=10, do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, **kwargs), gpt2.generate(prompt, **kwargs))


def _bart_to_ours(source: dict) -> dict:
    out = {"model.shared.weight": source["model.shared.weight"], "lm_head.weight": source["lm_head.weight"],
           "lm_head.bias": source["final_logits_bias"][0]}
    for stack in ("encoder", "decoder"):
        src, dst = f"model.{stack}.", f"model.{stack}."
        # BART's learned positions start at row 2 (an offset kept from fairseq).
        out[f"{dst}embeddings.position_embeddings.weight"] = source[f"{src}embed_positions.weight"][2:]
        for suffix in ("weight", "bias"):
            out[f"{dst}embeddings.layernorm.{suffix}"] = source[f"{src}layernorm_embedding.{suffix}"]
        layers = {key.split(".")[3] for key in source if key.startswith(f"{src}layers.")}
        for index in layers:
            s, d = f"{src}layers.{index}.", f"{dst}layers.{index}."
            names = [("self_attn.q_proj", "self_attn.q_proj"), ("self_attn.k_proj", "self_attn.k_proj"),
                     ("self_attn.v_proj", "self_attn.v_proj"), ("self_attn.o_proj", "self_attn.out_proj"),
                     ("self_attn_norm", "self_attn_layer_norm"), ("mlp.up_proj", "fc1"), ("mlp.down_proj", "fc2"),
                     ("mlp_norm", "final_layer_norm"), ("cross_attn.q_proj", "encoder_attn.q_proj"),
                     ("cross_attn.k_proj", "encoder_attn.k_proj"), ("cross_attn.v_proj", "encoder_attn.v_proj"),
                     ("cross_attn.o_proj", "encoder_attn.out_proj"), ("cross_attn_norm", "encoder_attn_layer_norm")]
            for ours_name, theirs in names:
                for suffix in ("weight", "bias"):
                    if f"{s}{theirs}.{suffix}" in source:
                        out[f"{d}{ours_name}.{suffix}"] = source[f"{s}{theirs}.{suffix}"]
    return out


def test_encoder_decoder_equals_bart_logits_and_greedy_tokens():
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(0)
    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, attn_implementation="eager")).eval()
    with torch.no_grad():
        bart.final_logits_bias.normal_()  # zero at init: give the bias mapping something to prove
    ours = ht.TformerEncoderDecoderForConditionalGeneration(ht.TformerEncoderDecoderConfig(
        vocab_size=120, hidden_size=32, encoder_layers=2, decoder_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, position_embedding_type="learned", hidden_act="gelu",
        embedding_layernorm=True, scale_embeddings=False, lm_head_bias=True, hidden_dropout=0.0,
        attention_dropout=0.0, pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)).eval()
    ours.load_state_dict(_bart_to_ours(bart.state_dict()), strict=True)
    source = torch.randint(3, 120, (2, 9))
    mask = torch.ones_like(source)
    mask[1, 6:] = 0
    target = torch.randint(3, 120, (2, 5))
    with torch.no_grad():
        torch.testing.assert_close(
            ours(source, attention_mask=mask, decoder_input_ids=target).logits,
            bart(source, attention_mask=mask, decoder_input_ids=target).logits, **TOL)
    kwargs = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, num_beams=1, forced_eos_token_id=None)
    assert torch.equal(ours.generate(source, **kwargs), bart.generate(source, **kwargs))
