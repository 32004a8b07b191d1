"""The supported source families, by the `model_type` of their config.json."""

from .bart import BART, MARIAN
from .base import Source
from .bert import BERT, ROBERTA
from .clip import CLIP, CLIP_TEXT, CLIP_VISION
from .gpt2 import GPT2
from .gpt_neox import GPT_NEOX
from .llama import LLAMA
from .mistral_qwen import MISTRAL, QWEN2, QWEN3
from .mixtral_qwen2_moe import MIXTRAL, QWEN2_MOE
from .t5 import T5
from .vit import DEIT, VIT
from .whisper import WHISPER

SOURCES = {model_type: source for source in (BERT, ROBERTA, GPT2, BART, MARIAN, LLAMA, T5, VIT, DEIT,
                                                            MISTRAL, QWEN2, QWEN3, GPT_NEOX, WHISPER,
                                                            CLIP, CLIP_TEXT, CLIP_VISION, MIXTRAL, QWEN2_MOE)
           for model_type in source.model_types}

__all__ = ["SOURCES", "Source", "BERT", "ROBERTA", "GPT2", "BART", "MARIAN", "LLAMA", "T5", "VIT", "DEIT",
           "MISTRAL", "QWEN2", "QWEN3", "GPT_NEOX", "WHISPER", "CLIP", "CLIP_TEXT", "CLIP_VISION",
           "MIXTRAL", "QWEN2_MOE"]
