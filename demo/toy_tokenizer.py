"""Train small WordPiece / BPE / Unigram tokenizers locally with the `tokenizers` library (nothing is downloaded)
and wrap them as transformers fast tokenizers that save next to a checkpoint; transformers' own CLIP and Whisper
tokenizers over vocabularies built here (the dual-encoder and speech steps, and the tests)."""

import json
import math
from collections import Counter
from typing import Iterable, Literal

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

# An embedded corpus: enough distinct words for a ~100-200 token vocabulary.
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a transformer maps a sequence of tokens to a sequence of vectors",
    "attention lets every position look at every other position",
    "the encoder reads the source and the decoder writes the target",
    "paris is the capital of france and berlin is the capital of germany",
    "models learn from data and predict the next word in a sentence",
    "we translate english to german and summarize long news articles",
    "hugging face pipelines run models on text with a single call",
]
SPECIAL = {"pad_token": "[PAD]", "bos_token": "[BOS]", "eos_token": "[EOS]", "unk_token": "[UNK]",
           "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
# Ids 0..6 in this order: pad=0, bos=1, eos=2 match the hf_tformer config defaults.
SPECIAL_ORDER = ["[PAD]", "[BOS]", "[EOS]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

Kind = Literal["wordpiece", "bpe", "unigram"]


def train_tokenizer(kind: Kind, vocab_size: int = 160, corpus: Iterable[str] = CORPUS,
                    split_digits: bool = False) -> PreTrainedTokenizerFast:
    """Templates: WordPiece gets BERT's [CLS] a [SEP] b [SEP] (encoders); BPE prepends [BOS] and adds nothing at the
    end, so a prompt can be continued (decoders); Unigram appends [EOS] to each source (encoder-decoders).

    split_digits=True makes every digit its own token (numbers are then copied digit by digit, e.g. dates)."""
    normalizer = normalizers.Lowercase()
    pre_tokenizer = pre_tokenizers.BertPreTokenizer() if kind == "wordpiece" else pre_tokenizers.Metaspace()
    if split_digits:
        pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizer, pre_tokenizers.Digits(individual_digits=True)])
    if kind == "wordpiece":
        tokenizer = Tokenizer(_whole_word_wordpiece(_word_counts(corpus, normalizer, pre_tokenizer), vocab_size))
        tokenizer.decoder = decoders.WordPiece()
    elif kind == "bpe":  # the BPE trainer breaks ties by pair order: the same merges in every process
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        tokenizer.decoder = decoders.Metaspace()
    elif kind == "unigram":
        tokenizer = Tokenizer(_whole_word_unigram(_word_counts(corpus, normalizer, pre_tokenizer), vocab_size))
        tokenizer.decoder = decoders.Metaspace()
    else:
        raise ValueError(f"kind={kind!r} is not one of 'wordpiece', 'bpe', 'unigram'.")
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    if kind == "bpe":
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_ORDER, show_progress=False)
        tokenizer.train_from_iterator(list(corpus), trainer=trainer)
    else:  # already in the vocabulary, with ids 0..6: marked special so that text never splits them
        tokenizer.add_special_tokens(SPECIAL_ORDER)
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_ORDER}
    if kind == "wordpiece":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
        )
    elif kind == "bpe":
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[BOS] $A", pair="[BOS] $A $B:1", special_tokens=[("[BOS]", ids["[BOS]"])],
        )
    else:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="$A [EOS]", pair="$A [EOS] $B:1 [EOS]:1", special_tokens=[("[EOS]", ids["[EOS]"])],
        )
    # Only the encoder's template has segments. Passed to the constructor (not set afterwards) so that
    # tokenizer_config.json records it: a reloaded tokenizer then gives no token_type_ids either, which generate()
    # refuses for our decoder as for Llama (4.57 and 5.x).
    segments = ["token_type_ids"] if kind == "wordpiece" else []
    names = ["input_ids", *segments, "attention_mask"]
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_input_names=names, **SPECIAL)


def _word_counts(corpus: Iterable[str], normalizer, pre_tokenizer) -> Counter:
    """How often each pre-tokenized word occurs in the corpus (as the tokenizer will see it)."""
    counts: Counter = Counter()
    for text in corpus:
        counts.update(word for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    return counts


def _vocabulary(counts: Counter, vocab_size: int, continuation: str = "") -> tuple[list[str], list[str]]:
    """(characters, whole words) in a fixed order: the characters (and `continuation` + each, WordPiece's "##x"),
    then the most frequent words, ties by spelling, while they fit. `tokenizers`' WordPiece and Unigram trainers
    order ties by hash and so differ between processes; this does not, so tokenizer.json is the same every run."""
    characters = sorted({character for word in counts for character in word})
    if continuation:
        characters += [continuation + character for character in characters]
    room = max(vocab_size - len(SPECIAL_ORDER) - len(characters), 0)
    words = sorted((word for word in counts if len(word) > 1), key=lambda word: (-counts[word], word))[:room]
    return characters, words


def _whole_word_wordpiece(counts: Counter, vocab_size: int) -> models.WordPiece:
    """WordPiece over whole words and single characters: a word outside the vocabulary is spelled out."""
    characters, words = _vocabulary(counts, vocab_size, continuation="##")
    vocab = {token: index for index, token in enumerate([*SPECIAL_ORDER, *characters, *words])}
    return models.WordPiece(vocab, unk_token="[UNK]")


def _whole_word_unigram(counts: Counter, vocab_size: int) -> models.Unigram:
    """Unigram over whole words, scored by their log frequency, and single characters, scored far below any word:
    Viterbi keeps a known word whole and spells an unknown one out."""
    characters, words = _vocabulary(counts, vocab_size)
    total = sum(counts.values())
    floor = math.log(1 / total) - 10.0
    pieces = [(token, 0.0) for token in SPECIAL_ORDER] + [(c, floor) for c in characters] + [
        (word, math.log(counts[word] / total)) for word in words]
    return models.Unigram(pieces, unk_id=SPECIAL_ORDER.index("[UNK]"), byte_fallback=False)

def _byte_characters() -> list[str]:
    """The 256 printable characters byte-level BPE writes bytes as (GPT-2 / CLIP's table), in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = [256 + n for n in range(256 - len(printable))]
    rest = [b for b in range(256) if b not in printable]
    return [chr(c) for c in printable + shifted[: len(rest)]]


def merges_spelling(words: Iterable[str]) -> list[str]:
    """Byte-level BPE merges that make each (lower-case ASCII) word one token: "d o", "do g</w>" for "dog"."""
    merges: list[str] = []
    for word in dict.fromkeys(words):
        prefix = word[0]
        for index, character in enumerate(word[1:], 2):
            merge = f"{prefix} {character}{'</w>' if index == len(word) else ''}"
            if merge not in merges:
                merges.append(merge)
            prefix += character
    return merges


def clip_tokenizer(folder: "Path | str", merges: list[str]) -> "CLIPTokenizerFast":
    """transformers' own CLIPTokenizerFast over a vocabulary written to `folder`: every byte (bare and word-final
    "</w>"), then the merged tokens, then <|startoftext|> and <|endoftext|> (the last id; CLIP pads with it)."""
    from pathlib import Path

    from transformers import CLIPTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    characters = _byte_characters()
    vocab = [*characters, *(c + "</w>" for c in characters), *(m.replace(" ", "") for m in merges),
             "<|startoftext|>", "<|endoftext|>"]
    if len(set(vocab)) != len(vocab):
        raise ValueError("merges produce a token twice; give each merge once (merges_spelling does).")
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizerFast.from_pretrained(folder)


def whisper_special_tokens(languages: Iterable[str]) -> list[str]:
    """Whisper's specials after <|endoftext|>, in its order: the timestamps start right after <|notimestamps|>."""
    return ["<|startoftranscript|>", *(f"<|{code}|>" for code in languages), "<|translate|>", "<|transcribe|>",
            "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def whisper_tokenizer(folder: "Path | str", corpus: Iterable[str], languages: Iterable[str], timestamp_seconds: int,
                      vocab_size: int = 320, **kwargs) -> "WhisperTokenizer":
    """transformers' own WhisperTokenizer over a byte-level BPE trained here on `corpus` (vocab.json / merges.txt
    written to `folder`), with Whisper's specials (special tokens) and the timestamp tokens <|0.00|> ..
    <|timestamp_seconds.00|> (ordinary added tokens, as in Whisper's). kwargs go to WhisperTokenizer (language=,
    task=: the prefix its encodings start with)."""
    from pathlib import Path

    from transformers import WhisperTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(list(corpus), trainers.BpeTrainer(
        vocab_size=vocab_size, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    bpe.model.save(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "normalizer.json").write_text(json.dumps({"colour": "color"}))  # English spelling map, as Whisper's
    prefix = {name: kwargs.pop(name) for name in ("language", "task", "predict_timestamps") if name in kwargs}
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                 normalizer_file=str(folder / "normalizer.json"), pad_token="<|endoftext|>", **kwargs)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>", *whisper_special_tokens(languages)]})
    steps = int(timestamp_seconds / 0.02)
    tokenizer.add_tokens([f"<|{step * 0.02:.2f}|>" for step in range(steps + 1)])
    if prefix:  # only now: transformers 5 builds the prefix template at once, and the specials must exist by then
        tokenizer.set_prefix_tokens(**prefix)
    return tokenizer


def whisper_generation_config(tokenizer, languages: Iterable[str], **fields) -> "GenerationConfig":
    """What a multilingual Whisper checkpoint's generation_config.json holds (start, end and timestamp ids,
    lang_to_id, task_to_id), for this tokenizer's ids; `fields` add to or override it."""
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    eot = ids("<|endoftext|>")
    return GenerationConfig(**{
        "decoder_start_token_id": ids("<|startoftranscript|>"), "bos_token_id": eot, "eos_token_id": eot,
        "pad_token_id": eot, "no_timestamps_token_id": ids("<|notimestamps|>"),
        "prev_sot_token_id": ids("<|startofprev|>"),
        "lang_to_id": {f"<|{code}|>": ids(f"<|{code}|>") for code in languages},
        "task_to_id": {"transcribe": ids("<|transcribe|>"), "translate": ids("<|translate|>")},
        "is_multilingual": True, **fields})
