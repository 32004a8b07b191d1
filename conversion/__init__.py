"""hf_tformer conversion: existing transformers checkpoints (BERT, RoBERTa, GPT-2, Llama, BART, Marian, T5) into
hf_tformer checkpoints and back (`to_native`), gated on numerical parity. Installed as `hf_tformer_conversion`; CLI: `python -m hf_tformer_conversion --help`."""

from .convert import ConversionReport, convert
from .reverse import ReverseReport, to_native
from .sources import SOURCES

__all__ = ["ConversionReport", "ReverseReport", "SOURCES", "convert", "to_native"]
