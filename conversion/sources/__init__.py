"""The supported source families, by the `model_type` of their config.json."""

from .bart import BART, MARIAN
from .base import Source
from .bert import BERT, ROBERTA
from .gpt2 import GPT2
from .llama import LLAMA
from .t5 import T5
from .vit import DEIT, VIT

SOURCES = {model_type: source for source in (BERT, ROBERTA, GPT2, BART, MARIAN, LLAMA, T5, VIT, DEIT)
           for model_type in source.model_types}

__all__ = ["SOURCES", "Source", "BERT", "ROBERTA", "GPT2", "BART", "MARIAN", "LLAMA", "T5", "VIT", "DEIT"]
