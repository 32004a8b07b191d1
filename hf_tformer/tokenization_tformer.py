"""What AutoTokenizer reaches for an hf_tformer checkpoint whose tokenizer_config.json does not name a tokenizer.

Checkpoints normally ship a fast tokenizer (tokenizer.json + tokenizer_config.json) that AutoTokenizer loads by
itself. Without one, transformers fails deep inside its lookup (a KeyError or AttributeError); this class turns that
into an error that says what is missing and how to fix it.
"""

from transformers import PreTrainedTokenizerFast


class TformerTokenizerFast(PreTrainedTokenizerFast):
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except (AttributeError, KeyError, OSError, TypeError, ValueError) as error:
            raise ValueError(
                f"{pretrained_model_name_or_path} holds no usable tokenizer (tokenizer.json / tokenizer_config.json): "
                "save one next to the weights with tokenizer.save_pretrained(folder), or pass tokenizer=... to "
                f"pipeline(). ({type(error).__name__}: {error})"
            ) from error
