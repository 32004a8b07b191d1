"""Bad input gets a clear ValueError, never an index crash or a half-built model."""

import functools

import pytest
import torch

import hf_tformer as ht
from conftest import VOCAB, build, random_ids, tiny_config


def test_ids_outside_the_vocabulary():
    model = build("encoder")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(input_ids=torch.tensor([[1, 2, 97]]))
    with pytest.raises(ValueError, match="-1"):
        model(input_ids=torch.tensor([[1, -1]]))


def test_sequences_longer_than_learned_positions():
    model = build("decoder", position_embedding_type="learned", max_position_embeddings=8)
    with pytest.raises(ValueError, match="max_position_embeddings=8"):
        model(input_ids=random_ids(1, 9))
    rotary = build("decoder", position_embedding_type="rotary", max_position_embeddings=8)
    assert rotary(input_ids=random_ids(1, 9)).last_hidden_state.shape[1] == 9  # no table, no hard limit


def test_mismatched_attention_mask_shape():
    model = build("encoder")
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 5\)"):
        model(input_ids=random_ids(2, 6), attention_mask=torch.ones(2, 5, dtype=torch.long))
    seq2seq = build("encoder_decoder")
    with pytest.raises(ValueError, match="attention_mask"):
        seq2seq(input_ids=random_ids(2, 6), attention_mask=torch.ones(1, 6, dtype=torch.long),
                decoder_input_ids=random_ids(2, 3))


def test_exactly_one_of_ids_or_embeddings():
    model = build("decoder")
    with pytest.raises(ValueError, match="exactly one"):
        model()
    ids = random_ids(1, 3)
    with pytest.raises(ValueError, match="exactly one"):
        model(input_ids=ids, inputs_embeds=model.embed_tokens(ids))


def test_token_types_on_a_model_without_them():
    model = build("decoder").eval()
    ids = random_ids(1, 3)
    with pytest.raises(ValueError, match="type_vocab_size=0"):
        model(input_ids=ids, token_type_ids=torch.tensor([[0, 1, 1]]))
    # All-zero types (a generic tokenizer's, passed on by sentence-transformers) add nothing and are accepted.
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids, token_type_ids=torch.zeros_like(ids)).last_hidden_state,
                                   model(input_ids=ids).last_hidden_state, rtol=0, atol=0)


def test_seq2seq_without_decoder_inputs():
    model = build("encoder_decoder")
    with pytest.raises(ValueError, match="decoder_input_ids"):
        model(input_ids=random_ids(1, 3))


def test_model_of_the_wrong_variant_from_a_checkpoint(tmp_path):
    ht.TformerDecoderModel(tiny_config("decoder")).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="hf_tformer_decoder"):
        ht.TformerEncoderModel.from_pretrained(tmp_path)


# --- every variant and head: inputs of the wrong type, shape or range, and keyword arguments nothing takes ---------

WHISPER = dict(vocab_size=VOCAB, num_mel_bins=8, max_source_positions=10, max_target_positions=6, encoder_layers=1,
               decoder_layers=1, hidden_size=16, num_attention_heads=2, intermediate_size=32, pad_token_id=0,
               bos_token_id=1, eos_token_id=1, decoder_start_token_id=2)
CLIP_TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=1, num_attention_heads=4,
                 max_position_embeddings=8, projection_dim=24, bos_token_id=95, eos_token_id=96, pad_token_id=96)
CLIP_VISION = dict(image_size=16, patch_size=8, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                   num_attention_heads=4, projection_dim=24)
CONFIGS = {  # family -> (config factory, what its forward takes)
    "encoder": (lambda: tiny_config("encoder", num_labels=3), "text"),
    "decoder": (lambda: tiny_config("decoder", num_labels=3), "text"),
    "encoder_decoder": (lambda: tiny_config("encoder_decoder"), "seq2seq"),
    "vit": (lambda: ht.TformerViTConfig(**CLIP_VISION, num_labels=3), "image"),
    "clip": (lambda: ht.TformerCLIPConfig(text_config=CLIP_TEXT, vision_config=CLIP_VISION, projection_dim=24), "pair"),
    "clip_text": (lambda: ht.TformerCLIPTextConfig(**CLIP_TEXT), "text"),
    "clip_vision": (lambda: ht.TformerCLIPVisionConfig(**CLIP_VISION), "image"),
    "whisper": (lambda: ht.TformerWhisperConfig(**WHISPER), "speech"),
}
MODELS = {  # class name -> family
    **{cls: "encoder" for cls in ("TformerEncoderModel", "TformerEncoderForMaskedLM",
                                  "TformerEncoderForQuestionAnswering", "TformerEncoderForSequenceClassification",
                                  "TformerEncoderForTokenClassification")},
    **{cls: "decoder" for cls in ("TformerDecoderModel", "TformerDecoderForCausalLM",
                                  "TformerDecoderForSequenceClassification")},
    "TformerEncoderDecoderModel": "encoder_decoder", "TformerEncoderDecoderForConditionalGeneration": "encoder_decoder",
    "TformerViTModel": "vit", "TformerViTForImageClassification": "vit", "TformerCLIPModel": "clip",
    "TformerCLIPTextModel": "clip_text", "TformerCLIPTextModelWithProjection": "clip_text",
    "TformerCLIPVisionModel": "clip_vision", "TformerCLIPVisionModelWithProjection": "clip_vision",
    "TformerWhisperModel": "whisper", "TformerWhisperForConditionalGeneration": "whisper",
}
TOKEN_MODELS = [name for name, family in MODELS.items() if CONFIGS[family][1] != "image"]


@functools.cache
def model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return getattr(ht, name)(CONFIGS[MODELS[name]][0]()).eval()


def inputs(name: str, batch: int = 2, length: int = 5) -> dict:
    """A valid forward's arguments for the model class `name`."""
    kind = CONFIGS[MODELS[name]][1]
    ids = random_ids(batch, length)
    pixel_values = torch.randn(batch, 3, 16, 16)
    return {
        "text": dict(input_ids=ids),
        "seq2seq": dict(input_ids=ids, decoder_input_ids=ids[:, :3]),
        "image": dict(pixel_values=pixel_values),
        "pair": dict(input_ids=ids, pixel_values=pixel_values),
        "speech": dict(input_features=torch.randn(batch, 8, 20), decoder_input_ids=ids[:, :3]),
    }[kind]


def test_every_model_takes_its_valid_inputs():  # the baseline the tests below break one thing of
    with torch.no_grad():
        for name in MODELS:
            model(name)(**inputs(name))


@pytest.mark.parametrize("name", TOKEN_MODELS)
def test_float_token_ids_are_a_type_error(name):
    arguments = inputs(name)
    for key in ("input_ids", "decoder_input_ids"):
        if key in arguments:
            with pytest.raises(TypeError, match=rf"{key} has dtype torch.float32; token ids are integers"):
                model(name)(**{**arguments, key: arguments[key].float()})


# images have no length to empty: a 0-pixel image is a size error (test_vision.py)
@pytest.mark.parametrize("name, empty", [(name, "batch") for name in MODELS] + [(name, "length") for name in MODELS
                                        if CONFIGS[MODELS[name]][1] != "image"])
def test_an_empty_batch_or_sequence_is_refused(name, empty):
    """transformers' own models crash in a reshape on both; there is nothing to compute, so it is an error."""
    arguments = inputs(name)
    if empty == "batch":
        arguments = {key: value[:0] for key, value in arguments.items()}
    else:
        key = "input_features" if "input_features" in arguments else next(k for k in arguments if k.endswith("ids"))
        arguments[key] = arguments[key][..., :0]
    with pytest.raises(ValueError, match="which is empty"):
        model(name)(**arguments)


@pytest.mark.parametrize("name, key", [("TformerEncoderModel", "inputs_embeds"), ("TformerDecoderForCausalLM",
                                       "inputs_embeds"), ("TformerEncoderDecoderModel", "decoder_inputs_embeds")])
def test_inputs_embeds_of_the_wrong_width(name, key):
    arguments = inputs(name)
    arguments.pop(key.replace("inputs_embeds", "input_ids"))
    with pytest.raises(ValueError, match=rf"{key} has shape \(2, 5, 16\) but the model needs .*hidden_size=32"):
        model(name)(**arguments, **{key: torch.randn(2, 5, 16)})


LABELS = {  # head -> (labels of the wrong shape, labels with a class out of range)
    "TformerEncoderForMaskedLM": (torch.zeros(2, 4, dtype=torch.long), torch.full((2, 5), VOCAB)),
    "TformerEncoderForTokenClassification": (torch.zeros(2, 4, dtype=torch.long), torch.full((2, 5), 3)),
    "TformerEncoderForSequenceClassification": (torch.zeros(3, dtype=torch.long), torch.tensor([0, 3])),
    "TformerDecoderForCausalLM": (torch.zeros(2, 4, dtype=torch.long), torch.full((2, 5), VOCAB)),
    "TformerDecoderForSequenceClassification": (torch.zeros(3, dtype=torch.long), torch.tensor([-1, 0])),
    "TformerEncoderDecoderForConditionalGeneration": (torch.zeros(2, 4, dtype=torch.long), torch.full((2, 3), VOCAB)),
    "TformerViTForImageClassification": (torch.zeros(3, dtype=torch.long), torch.tensor([0, 7])),
    "TformerWhisperForConditionalGeneration": (torch.zeros(2, 4, dtype=torch.long), torch.full((2, 3), VOCAB)),
}


@pytest.mark.parametrize("name", LABELS)
def test_labels_of_the_wrong_shape_or_out_of_range(name):
    wrong_shape, out_of_range = LABELS[name]
    with pytest.raises(ValueError, match=rf"labels has shape {tuple(wrong_shape.shape)}".replace("(", r"\(")
                       .replace(")", r"\)")):
        model(name)(**inputs(name), labels=wrong_shape)
    bad = int(out_of_range[out_of_range != 0][0])
    with pytest.raises(ValueError, match=rf"labels contains {bad}, outside \[0, "):
        model(name)(**inputs(name), labels=out_of_range)
    arguments = {k: v for k, v in inputs(name).items() if k != "decoder_input_ids"}
    if len(arguments) < len(inputs(name)):  # seq2seq: labels shifted into the decoder inputs are named as labels
        with pytest.raises(ValueError, match=rf"labels contains {bad}, outside \[0, "):
            model(name)(**arguments, labels=out_of_range)


def test_span_positions_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"end_positions has shape \(3,\) but the batch has 2 rows"):
        model("TformerEncoderForQuestionAnswering")(**inputs("TformerEncoderForQuestionAnswering"),
                                                     start_positions=torch.tensor([0, 1]), end_positions=torch.ones(3))


def test_clip_loss_needs_as_many_texts_as_images():
    with pytest.raises(ValueError, match=r"return_loss=True needs matching \(text, image\) pairs, but 2 texts and 3"):
        model("TformerCLIPModel")(input_ids=random_ids(2, 5), pixel_values=torch.randn(3, 3, 16, 16), return_loss=True)


@pytest.mark.parametrize("variant", ["encoder", "decoder"])
def test_token_types_beyond_the_segment_table(variant):
    with pytest.raises(ValueError, match=r"token_type_ids contains 2, outside \[0, 2\); .*type_vocab_size=2"):
        build(variant, type_vocab_size=2)(input_ids=random_ids(2, 5), token_type_ids=torch.full((2, 5), 2))


@pytest.mark.parametrize("name, key", [
    ("TformerEncoderModel", "position_ids"), ("TformerDecoderForCausalLM", "position_ids"),
    ("TformerCLIPTextModel", "position_ids"), ("TformerWhisperForConditionalGeneration", "decoder_position_ids"),
])
def test_explicit_positions_beyond_a_learned_table(name, key):
    """Shorter than the table, but given positions index past it (an IndexError in transformers' models)."""
    limit = model(name).config.max_position_embeddings
    arguments = inputs(name, length=3)
    positions = torch.arange(limit - 2, limit + 1).expand(2, 3)
    with pytest.raises(ValueError, match=rf"position_ids contains {limit}: {limit + 1} positions are needed but "
                                         rf"max_position_embeddings={limit}"):
        model(name)(**arguments, **{key: positions})


@pytest.mark.parametrize("name", ["TformerEncoderDecoderForConditionalGeneration",
                                  "TformerWhisperForConditionalGeneration"])
def test_decoder_start_token_id_outside_the_vocabulary_at_generate(name):
    arguments = {k: v for k, v in inputs(name).items() if k != "decoder_input_ids"}
    with pytest.raises(ValueError, match=rf"decoder_start_token_id={VOCAB + 3} is outside the vocabulary"):
        model(name).generate(**arguments, decoder_start_token_id=VOCAB + 3, max_new_tokens=2)


@pytest.mark.parametrize("name", MODELS)
def test_head_masks_are_refused_not_ignored(name):
    seq2seq = "decoder_input_ids" in inputs(name)
    names = ["head_mask"] + (["decoder_head_mask", "cross_attn_head_mask"] if seq2seq else [])
    for mask in names:
        with pytest.raises(ValueError, match=f"{mask} is not supported by hf_tformer models"):
            model(name)(**inputs(name), **{mask: torch.ones(2, 4)})


@pytest.mark.parametrize("name", MODELS)
def test_unknown_keyword_arguments_are_refused_not_ignored(name):
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['interpolate_pos_encodings'\]"):
        model(name)(**inputs(name), interpolate_pos_encodings=True)


@pytest.mark.parametrize("name", ["TformerEncoderModel", "TformerDecoderModel", "TformerViTModel"])
def test_loss_arguments_reaching_a_model_without_a_loss_are_refused(name):
    """labels on a base model (a head was meant); num_items_in_batch: our losses are means per batch, and
    accepts_loss_kwargs=False makes Trainer divide by the accumulation steps instead of passing it."""
    assert model(name).accepts_loss_kwargs is False
    with pytest.raises(ValueError, match="labels is not supported .*a base model computes no loss"):
        model(name)(**inputs(name), labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="num_items_in_batch is not supported .*accepts_loss_kwargs = False"):
        model(name)(**inputs(name), num_items_in_batch=torch.tensor(10))


def test_encoder_hidden_states_without_cross_attention_are_refused():
    with pytest.raises(ValueError, match="encoder_hidden_states was given but this model has no cross attention"):
        model("TformerEncoderModel")(**inputs("TformerEncoderModel"), encoder_hidden_states=torch.randn(2, 4, 32))


def test_value_checks_read_one_token_steps_only_on_the_cpu():
    """Reading a tensor off the CPU is a device sync: generate()'s one-token steps (its own ids and positions) skip
    it there; on the CPU reading is free and every forward is checked."""
    from hf_tformer.input_checks import reads_values

    assert reads_values(torch.zeros(1, 1, dtype=torch.long)) and reads_values(torch.zeros(2, 5, device="meta"))
    assert not reads_values(torch.zeros(2, 1, device="meta"))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        build("decoder")(input_ids=torch.tensor([[VOCAB]]))
