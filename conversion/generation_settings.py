"""A checkpoint's own generation settings, carried through conversion (both directions) unchanged.

Real BART / Marian / T5 / GPT-2 checkpoints keep their decoding settings (forced BOS/EOS, beams, n-gram blocking,
length penalty, min/max length, bad words, early stopping) either in `generation_config.json` or, older ones, in
`config.json`. transformers derives a generation config from whichever the folder has when it loads the model; a
converted checkpoint must decode the same way, so we read the settings the same way and write them as an explicit
`generation_config.json` (never the `_from_model_config` file transformers would regenerate from our config,
which carries none of them).
"""

import copy
from pathlib import Path
from typing import Iterator, Optional

from transformers import GenerationConfig

# Settings whose token ids index the logits (an int, a list of ints, or a list of lists): one outside the vocabulary
# fails inside generate(). bos/eos/pad ids are not among them: transformers' own configs pair GPT-2's 50256 with any
# vocabulary (that id is then never generated), and the model config carries the same ids anyway.
TOKEN_ID_FIELDS = ("forced_bos_token_id", "forced_eos_token_id", "bad_words_ids", "force_words_ids",
                   "suppress_tokens", "begin_suppress_tokens")
# Shown in the model card and the CLI report when they differ from transformers' defaults.
SUMMARY_FIELDS = ("num_beams", "do_sample", "forced_bos_token_id", "forced_eos_token_id", "no_repeat_ngram_size",
                  "length_penalty", "min_length", "max_length", "max_new_tokens", "early_stopping", "bad_words_ids",
                  "repetition_penalty", "temperature", "top_k", "top_p")
_BOOKKEEPING = ("transformers_version", "_from_model_config", "_commit_hash", "_original_object_hash")


def _known_fields() -> set[str]:
    return {name for name in GenerationConfig().to_dict() if not name.startswith("_")} - {"transformers_version"}


def read_generation_config(folder: Path, config_dict: dict) -> GenerationConfig:
    """The generation config transformers would give a model loaded from `folder`: its generation_config.json if
    present, else the generation fields of its config.json (how older checkpoints store them)."""
    if (folder / "generation_config.json").exists():
        generation_config = GenerationConfig.from_pretrained(folder)
    else:
        # transformers 5's config classes drop these fields, so read them from the raw dict (as its loader does).
        known = _known_fields()
        legacy = {name: value for name, value in config_dict.items() if name in known and value is not None}
        generation_config = GenerationConfig(**legacy)
    generation_config._from_model_config = False  # an explicit file: generate() must not rebuild it from our config
    return generation_config


def _token_ids(value) -> Iterator[int]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _token_ids(item)


def check_generation_config(
    generation_config: GenerationConfig, vocab_size: int, model_fields: tuple[str, ...] = ()
) -> list[str]:
    """Raise ValueError for a token-id setting outside the converted model's vocabulary (it would index past the
    logits); return the names of fields transformers' generate() does not read, which are carried unchanged.
    model_fields: those the model's own generate() reads on top of the generic ones (Whisper's `alignment_heads`,
    `lang_to_id`, ...: the source family's `generation_fields`)."""
    for name in TOKEN_ID_FIELDS:
        value = getattr(generation_config, name, None)
        bad = [token for token in _token_ids(value) if not 0 <= token < vocab_size]
        if bad:
            raise ValueError(f"generation setting {name}={value!r} names token id {bad[0]}, outside the model's "
                             f"vocabulary [0, {vocab_size}); fix generation_config.json (or config.json) of the "
                             "source, nothing was written.")
    known = _known_fields()
    read = known | set(model_fields) | set(_BOOKKEEPING)
    return sorted(name for name in generation_config.to_dict() if name not in read)


def check_alignment_heads(generation_config: GenerationConfig, config) -> None:
    """Raise ValueError when `alignment_heads` (Whisper's word-level timestamps: [decoder layer, cross-attention
    head] pairs) names a layer or head the converted model does not have: generate() would fail later with an
    IndexError deep in the timestamp code, for the source model too."""
    heads = getattr(generation_config, "alignment_heads", None)
    if heads is None:
        return
    layers = getattr(config, "decoder_layers", None) or config.num_hidden_layers
    bad = [pair for pair in heads if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                                          and 0 <= pair[0] < layers and 0 <= pair[1] < config.num_attention_heads)]
    if bad:
        raise ValueError(f"generation_config.alignment_heads has {bad}, outside the decoder's {layers} layers x "
                         f"{config.num_attention_heads} heads; each entry is [layer, head] with 0 <= layer < {layers} "
                         f"and 0 <= head < {config.num_attention_heads}: fix generation_config.json of the source "
                         "(or drop the field: it only serves word-level timestamps); nothing was written.")


def settings_summary(generation_config: GenerationConfig) -> str:
    """`num_beams=4, no_repeat_ngram_size=3, ...`: the settings that differ from transformers' defaults."""
    default = GenerationConfig()
    shown = [f"{name}={getattr(generation_config, name)!r}" for name in SUMMARY_FIELDS
             if getattr(generation_config, name, None) != getattr(default, name, None)]
    return ", ".join(shown) or "transformers' defaults"


def differing_settings(expected: GenerationConfig, actual: GenerationConfig) -> list[str]:
    """`forced_bos_token_id: 0 vs None` for every generation field (known or not) whose values differ."""
    wanted, got = expected.to_dict(), actual.to_dict()
    names = sorted((set(wanted) | set(got)) - set(_BOOKKEEPING))
    return [f"{name}: {wanted.get(name)!r} vs {got.get(name)!r}" for name in names if wanted.get(name) != got.get(name)]


def carry_generation_config(model, generation_config: Optional[GenerationConfig]) -> None:
    """Give `model` (one that can generate) a copy of the source's settings; save_pretrained then writes them."""
    if generation_config is not None and model.can_generate():
        model.generation_config = copy.deepcopy(generation_config)
