"""Sliding-window families (Mistral, Qwen2, Qwen3) and GPT-NeoX against transformers' own classes with a prompt
several times longer than the window: logits, greedy tokens through the bounded cache, and refusals by name."""

from functools import lru_cache

import pytest
import torch

from hf_tformer_conversion import convert, to_native
from test_convert import save, sources

sources = lru_cache(maxsize=1)(sources)  # built once for this module (conversion never modifies a source)

LONG = 32  # the tiny configs slide a window of 8


@pytest.mark.parametrize("name", ["mistral", "qwen2", "qwen3", "gpt-neox", "gpt-neox-sequential"])
def test_prompt_longer_than_the_window_matches_the_native_model(tmp_path, name):
    import transformers

    source = sources()[name].eval()
    convert(save(source, tmp_path / "source"), str(tmp_path / "out"), progress=False)
    ours = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out", trust_remote_code=True).eval()
    neox = name.startswith("gpt-neox")
    assert ours.config.sliding_window == (None if neox else 8)
    ids = torch.randint(3, 120, (2, LONG), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, LONG - 5:] = 0
    with torch.no_grad():
        expected, actual = source(ids, attention_mask=mask).logits, ours(ids, attention_mask=mask).logits
    torch.testing.assert_close(actual[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=1e-5)
    common = dict(max_new_tokens=12, do_sample=False, pad_token_id=0)
    out = ours.generate(ids[:1], return_dict_in_generate=True, **common)
    assert torch.equal(out.sequences, source.generate(ids[:1], **common))
    if not neox:  # the sliding layers' cache held window - 1 keys, never the whole sequence
        sliding = [layer for layer in out.past_key_values.layers if getattr(layer, "is_sliding", False)]
        assert sliding and all(layer.keys.shape[-2] == 7 for layer in sliding)


def test_per_layer_choice_does_not_map_onto_mistral(tmp_path):
    convert(save(sources()["qwen2"].eval(), tmp_path / "source"), str(tmp_path / "ours"), progress=False)
    with pytest.raises(ValueError, match="Mistral slides the window over every layer or none"):
        to_native(str(tmp_path / "ours"), str(tmp_path / "mistral"), "mistral")
    with pytest.raises(ValueError, match="qk_norm"):
        to_native(str(tmp_path / "ours"), str(tmp_path / "qwen3"), "qwen3")
    assert not (tmp_path / "mistral").exists() and not (tmp_path / "qwen3").exists()
