"""hf_tformer conversion: existing transformers checkpoints (BERT, GPT-2, BART) into hf_tformer checkpoints,
gated on numerical parity. Installed as `hf_tformer_conversion`; CLI: `python -m hf_tformer_conversion --help`."""

from .convert import ConversionReport, convert
from .sources import SOURCES

__all__ = ["ConversionReport", "SOURCES", "convert"]
