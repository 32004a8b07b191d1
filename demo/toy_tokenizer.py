"""Train small WordPiece / BPE / Unigram tokenizers locally with the `tokenizers` library (nothing is downloaded)
and wrap them as transformers fast tokenizers that save next to a checkpoint."""

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
    if kind == "wordpiece":
        tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_ORDER,
                                           show_progress=False)
        tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tokenizer.decoder = decoders.WordPiece()
    elif kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_ORDER, show_progress=False)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
    elif kind == "unigram":
        tokenizer = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_ORDER, unk_token="[UNK]",
                                         show_progress=False)
        tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
        tokenizer.decoder = decoders.Metaspace()
    else:
        raise ValueError(f"kind={kind!r} is not one of 'wordpiece', 'bpe', 'unigram'.")
    if split_digits:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [tokenizer.pre_tokenizer, pre_tokenizers.Digits(individual_digits=True)])
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.train_from_iterator(list(corpus), trainer=trainer)
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
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL)
    if kind != "wordpiece":  # decoders take no segment ids
        wrapped.model_input_names = ["input_ids", "attention_mask"]
    return wrapped
