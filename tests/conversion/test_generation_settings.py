"""A checkpoint's own generation settings survive conversion and the way back, and the parity gate decodes with them.

Sources are transformers' own classes with random weights; each is reloaded the way users load it and compared
under plain `generate()` (no arguments: the checkpoint's own settings decide).
"""

import json

import pytest
import torch
from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM, BartConfig, BartForConditionalGeneration,
                          GenerationConfig, GPT2Config, GPT2LMHeadModel, MarianConfig, MarianMTModel, T5Config,
                          T5ForConditionalGeneration)

from hf_tformer_conversion import convert, to_native
from hf_tformer_conversion.verify import check_parity

SMALL = dict(vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64)
# What real summarization / translation checkpoints set (BART-CNN-like, kept short for a tiny model).
SETTINGS = dict(num_beams=4, no_repeat_ngram_size=3, length_penalty=2.0, min_length=6, max_length=14,
                early_stopping=True, forced_bos_token_id=0, forced_eos_token_id=2, bad_words_ids=[[7], [8, 9]])


def _sources() -> dict:
    torch.manual_seed(0)
    return {
        # transformers' defaults: BART and Marian force EOS at max_length (forced_eos_token_id), T5 does not
        "bart": BartForConditionalGeneration(BartConfig(**SMALL)),
        "marian": MarianMTModel(MarianConfig(**SMALL, pad_token_id=119, decoder_start_token_id=119, eos_token_id=0)),
        "t5": T5ForConditionalGeneration(T5Config(vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2,
                                                  num_heads=4, decoder_start_token_id=0)),
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=120, n_positions=64, n_embd=32, n_layer=2, n_head=4)),
    }


def _save(model, folder, settings=None, where="generation_config.json") -> str:
    """Save like transformers does, then put `settings` where a checkpoint of that age keeps them."""
    model.save_pretrained(folder)
    if settings:
        if where == "config.json":  # older checkpoints: generation fields in config.json, no generation_config.json
            (folder / "generation_config.json").unlink()
            config = json.loads((folder / "config.json").read_text())
            (folder / "config.json").write_text(json.dumps({**config, **settings}))
        else:
            generation = json.loads((folder / "generation_config.json").read_text())
            generation.pop("_from_model_config", None)
            (folder / "generation_config.json").write_text(json.dumps({**generation, **settings}))
    return str(folder)


def _plain_generate(auto_class, folder, remote: bool) -> torch.Tensor:
    model = auto_class.from_pretrained(folder, trust_remote_code=remote).eval()
    ids = torch.randint(3, 120, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if model.config.is_encoder_decoder:
        mask[1, 6:] = 0  # a padded batch
    else:
        ids, mask = ids[:1], mask[:1]
    torch.manual_seed(0)
    return model.generate(input_ids=ids, attention_mask=mask)


@pytest.mark.parametrize("name", ["bart", "marian", "t5", "gpt2"])
def test_default_settings_decode_like_the_source(tmp_path, hf_home, name):
    source = _sources()[name].eval()
    folder = _save(source, tmp_path / "source")
    report = convert(folder, str(tmp_path / "ours"), progress=False)
    assert report.parity.own_settings_identical is True
    auto = AutoModelForSeq2SeqLM if source.config.is_encoder_decoder else AutoModelForCausalLM
    expected = _plain_generate(auto, folder, remote=False)
    torch.testing.assert_close(_plain_generate(auto, str(tmp_path / "ours"), remote=True), expected, rtol=0, atol=0)
    written = json.loads((tmp_path / "ours" / "generation_config.json").read_text())
    assert not written.get("_from_model_config")  # explicit settings, never regenerated from our config
    assert written.get("forced_eos_token_id") == source.generation_config.forced_eos_token_id


@pytest.mark.parametrize("where", ["generation_config.json", "config.json"])
def test_every_setting_survives_conversion_and_the_way_back(tmp_path, hf_home, where):
    source = _sources()["bart"].eval()
    folder = _save(source, tmp_path / "source", SETTINGS, where)
    report = convert(folder, str(tmp_path / "ours"), progress=False)
    assert report.parity.own_settings_identical is True
    assert "num_beams=4" in report.parity.generation_settings and "no_repeat_ngram_size=3" in report.generation_settings
    ours = GenerationConfig.from_pretrained(tmp_path / "ours")
    back_report = to_native(str(tmp_path / "ours"), str(tmp_path / "back"), "bart")
    assert back_report.parity.own_settings_identical is True
    back = GenerationConfig.from_pretrained(tmp_path / "back")
    for name, value in SETTINGS.items():
        assert getattr(ours, name) == value, name
        assert getattr(back, name) == value, name
    expected = _plain_generate(AutoModelForSeq2SeqLM, folder, remote=False)
    assert expected.shape[1] <= SETTINGS["max_length"]
    torch.testing.assert_close(_plain_generate(AutoModelForSeq2SeqLM, str(tmp_path / "ours"), remote=True), expected,
                               rtol=0, atol=0)
    torch.testing.assert_close(_plain_generate(AutoModelForSeq2SeqLM, str(tmp_path / "back"), remote=False), expected,
                               rtol=0, atol=0)


def test_sampling_settings_and_task_params_are_carried(tmp_path, hf_home):
    source = _sources()["gpt2"].eval()
    source.config.task_specific_params = {"text-generation": {"do_sample": True, "max_length": 30}}
    folder = _save(source, tmp_path / "source", dict(do_sample=True, top_k=5, temperature=0.7, max_length=16))
    report = convert(folder, str(tmp_path / "ours"), progress=False)
    assert report.parity.own_settings_identical is True  # the same seed draws the same tokens on both sides
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["task_specific_params"] == {"text-generation": {"do_sample": True, "max_length": 30}}
    expected = _plain_generate(AutoModelForCausalLM, folder, remote=False)
    torch.testing.assert_close(_plain_generate(AutoModelForCausalLM, str(tmp_path / "ours"), remote=True), expected,
                               rtol=0, atol=0)


def test_the_gate_fails_when_a_setting_is_lost(tmp_path):
    source = _sources()["bart"].eval()
    folder = _save(source, tmp_path / "source", SETTINGS)
    convert(folder, str(tmp_path / "ours"), progress=False)
    reference = BartForConditionalGeneration.from_pretrained(folder).eval()
    ours = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ours", trust_remote_code=True).eval()
    assert check_parity(reference, ours).own_settings_identical is True
    ours.generation_config.forced_bos_token_id = None  # what the converter used to lose
    with pytest.raises(ValueError, match=r"settings differ \(source vs converted\): forced_bos_token_id: 0 vs None; nothing"):
        check_parity(reference, ours)


def test_unknown_fields_are_carried_unchanged_and_named(tmp_path, hf_home):
    folder = _save(_sources()["bart"], tmp_path / "source", {"my_house_setting": {"alpha": 1}})
    report = convert(folder, str(tmp_path / "ours"), progress=False)
    assert report.generation_fields_unread == ["my_house_setting"]
    assert json.loads((tmp_path / "ours" / "generation_config.json").read_text())["my_house_setting"] == {"alpha": 1}


@pytest.mark.parametrize("setting", [{"forced_eos_token_id": 500}, {"bad_words_ids": [[3], [4, 130]]}])
def test_a_token_id_outside_the_vocabulary_is_refused_by_name(tmp_path, setting):
    folder = _save(_sources()["bart"], tmp_path / "source", setting)
    name = next(iter(setting))
    with pytest.raises(ValueError, match=rf"generation setting {name}=.* outside the model's vocabulary \[0, 120\)"):
        convert(folder, str(tmp_path / "ours"), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]  # nothing half-written
