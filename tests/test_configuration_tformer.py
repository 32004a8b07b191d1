import functools
import json

import pytest
from transformers import CONFIG_MAPPING, AutoConfig

import hf_tformer as ht
from conftest import CONFIG_CLASSES, VARIANTS, tiny_config


@pytest.mark.parametrize("variant", VARIANTS)
def test_json_round_trip_is_exact(variant, tmp_path):
    config = tiny_config(variant, num_key_value_heads=2, hidden_act="swiglu", position_embedding_type="rotary")
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded) is type(config)
    assert loaded.to_diff_dict() == config.to_diff_dict()
    saved, rebuilt = json.loads(config.to_json_string()), json.loads(loaded.to_json_string())
    rebuilt.pop("_name_or_path", None), saved.pop("_name_or_path", None)
    assert rebuilt == saved


def test_model_types_are_unique_and_do_not_clash_with_transformers():
    names = [cls.model_type for cls in CONFIG_CLASSES.values()]
    assert len(set(names)) == 3
    builtin = set(CONFIG_MAPPING._mapping)  # transformers' own types, without runtime registrations
    assert not builtin & set(names)


def test_variant_defaults_follow_their_papers():
    encoder, decoder, seq2seq = ht.TformerEncoderConfig(), ht.TformerDecoderConfig(), ht.TformerEncoderDecoderConfig()
    assert (encoder.norm_placement, encoder.type_vocab_size, encoder.embedding_layernorm) == ("post", 2, True)
    assert (decoder.norm_placement, decoder.hidden_act) == ("pre", "gelu_new")
    assert (seq2seq.position_embedding_type, seq2seq.norm_placement, seq2seq.hidden_act) == ("sinusoidal", "post", "relu")
    assert seq2seq.scale_embeddings and seq2seq.is_encoder_decoder
    assert seq2seq.decoder_start_token_id == seq2seq.bos_token_id


def test_encoder_decoder_depths_are_separate_and_num_hidden_layers_reads_the_decoder():
    config = tiny_config("encoder_decoder", encoder_layers=3, decoder_layers=5)
    assert (config.encoder_layers, config.decoder_layers, config.num_hidden_layers) == (3, 5, 5)
    assert "num_hidden_layers" not in json.loads(config.to_json_string())


def test_standard_attribute_names_exist():
    config = tiny_config("decoder", num_key_value_heads=2)
    for name in ("hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers", "intermediate_size",
                 "max_position_embeddings", "vocab_size", "is_encoder_decoder", "pad_token_id", "bos_token_id",
                 "eos_token_id", "head_dim", "tie_word_embeddings", "use_cache"):
        assert hasattr(config, name), name
    assert config.head_dim == 8 and config.num_key_value_heads == 2


def test_tp_and_pp_plans_are_declared():
    for cls in CONFIG_CLASSES.values():
        assert cls.base_model_tp_plan and cls.base_model_pp_plan


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(hidden_size=30), "hidden_size"),
        (dict(num_key_value_heads=3), "num_key_value_heads"),
        (dict(hidden_act="tanh"), "hidden_act"),
        (dict(position_embedding_type="alibi"), "position_embedding_type"),
        (dict(norm_placement="sandwich"), "norm_placement"),
        (dict(norm_type="batchnorm"), "norm_type"),
        (dict(hidden_size=12, num_attention_heads=4, position_embedding_type="rotary"), "rotary"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(num_hidden_layers=0), "num_hidden_layers"),
        (dict(hidden_dropout=1.5), "hidden_dropout"),
        (dict(type_vocab_size=-1), "type_vocab_size"),
        (dict(pad_token_id=500), "pad_token_id"),
        (dict(layer_norm_eps=0), "layer_norm_eps"),
        (dict(relative_attention_num_buckets=2), "relative_attention_num_buckets"),
        (dict(relative_attention_max_distance=0), "relative_attention_max_distance"),
        (dict(attention_scale=0.0), "attention_scale"),
        (dict(lm_head_input_scale=None), "lm_head_input_scale"),
    ],
)
def test_invalid_values_raise_value_error_naming_field_and_value(overrides, field):
    with pytest.raises(ValueError, match=field) as error:
        tiny_config("decoder", **overrides)
    value = next(iter(overrides.values())) if len(overrides) == 1 else None
    if value is not None:
        assert repr(value) in str(error.value) or str(value) in str(error.value)


def test_config_of_another_model_type_is_refused(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_attention_heads=4, intermediate_size=64, num_hidden_layers=1).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="bert"):
        ht.TformerEncoderConfig.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="bert"):
        ht.TformerEncoderModel.from_pretrained(tmp_path)


# Every config class of the project, tiny (the CLIP dual config has only transformers' own boolean fields).
ALL_CONFIGS = {
    **{variant: functools.partial(tiny_config, variant) for variant in CONFIG_CLASSES},
    "vit": lambda **kw: ht.TformerViTConfig(**{**TINY, "image_size": 16, "patch_size": 8, **kw}),
    "clip_text": lambda **kw: ht.TformerCLIPTextConfig(**{**TINY, "vocab_size": 97, "bos_token_id": 95,
                                                          "eos_token_id": 96, "pad_token_id": 96, **kw}),
    "clip_vision": lambda **kw: ht.TformerCLIPVisionConfig(**{**TINY, "image_size": 16, "patch_size": 8, **kw}),
    "whisper": lambda **kw: ht.TformerWhisperConfig(**{**TINY, "vocab_size": 97, "pad_token_id": 0, "bos_token_id": 1,
                                                       "eos_token_id": 1, "decoder_start_token_id": 2, **kw}),
    "clip": lambda **kw: ht.TformerCLIPConfig(**kw),
}
TINY = dict(hidden_size=32, num_attention_heads=4, intermediate_size=64)
# (field, string, what to write instead); transformers' own fields first, then ours
BOOL_STRINGS = [("tie_word_embeddings", "no", "false"), ("use_cache", "yes", "true"), ("return_dict", "0", "false"),
                ("output_hidden_states", "true", "true"), ("scale_embeddings", "False", "false"),
                ("attention_bias", "1", "true"), ("embedding_layernorm", "maybe", "true or false")]


# The CLIP dual config holds its towers and the projection; the towers carry the model fields (and no cache).
DUAL_CONFIG_FIELDS = ("tie_word_embeddings", "return_dict", "output_hidden_states")


@pytest.mark.parametrize("kind, field, value, fix", [(kind, *case) for kind in ALL_CONFIGS for case in BOOL_STRINGS
                                                     if kind != "clip" or case[0] in DUAL_CONFIG_FIELDS])
def test_booleans_given_as_strings_are_refused_naming_the_field_and_the_fix(kind, field, value, fix):
    with pytest.raises(ValueError, match=rf"{field}='{value}' must be True or False \(a bool, not str\); write {fix} "
                                         r"in config.json \(unquoted\)"):
        ALL_CONFIGS[kind](**{field: value})


@pytest.mark.parametrize("kind", ALL_CONFIGS)
def test_strings_for_booleans_in_config_json_and_in_loading_overrides_are_refused(kind, tmp_path):
    """config.json is read through the constructor; from_pretrained's keyword overrides are set after it."""
    ALL_CONFIGS[kind]().save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="return_dict='no' must be True or False"):
        AutoConfig.from_pretrained(tmp_path, return_dict="no")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "tie_word_embeddings": "false"}))
    with pytest.raises(ValueError, match="tie_word_embeddings='false' must be True or False"):
        AutoConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("kind", ALL_CONFIGS)
@pytest.mark.parametrize("value", [-0.02, float("nan"), "0.02"])
def test_initializer_range_must_be_a_finite_number_at_least_zero(kind, value):
    with pytest.raises(ValueError, match=rf"initializer_range={value!r} must be a finite number >= 0"):
        ALL_CONFIGS[kind](initializer_range=value)


@pytest.mark.parametrize("kind", [kind for kind in ALL_CONFIGS if kind != "clip"])
@pytest.mark.parametrize("field, value", [("attention_scale", float("nan")), ("attention_scale", float("inf")),
                                          ("lm_head_input_scale", float("nan")), ("rotary_base", float("inf"))])
def test_nan_and_inf_scales_are_refused(kind, field, value):
    """NaN compares False with everything, so `value <= 0` alone let it through."""
    with pytest.raises(ValueError, match=rf"{field}={value!r} must be a finite"):
        ALL_CONFIGS[kind](**{field: value})


@pytest.mark.parametrize("kind", ["encoder_decoder", "whisper"])
@pytest.mark.parametrize("value", [97, -1, "2"])
def test_decoder_start_token_id_outside_the_vocabulary_is_refused(kind, value):
    with pytest.raises(ValueError, match=rf"decoder_start_token_id={value!r} is outside the vocabulary \[0, 97\)"):
        ALL_CONFIGS[kind](decoder_start_token_id=value)
