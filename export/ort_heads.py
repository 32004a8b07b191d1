"""ONNX Runtime classes for the single-graph tasks: text encoders' heads, the decoder's classifier, images, CLIP.

Each returns the ModelOutput its PyTorch counterpart returns, filled with the graph's outputs by name, so
transformers' pipelines (feature-extraction, fill-mask, text-classification, token-classification,
question-answering, image-classification, zero-shot-image-classification) run on them unchanged.
"""

from dataclasses import dataclass
from typing import Optional

import torch
from transformers.modeling_outputs import (
    BaseModelOutput,
    ImageClassifierOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from transformers.utils import ModelOutput

from .ort_model import TformerORTModel


class TformerORTModelForFeatureExtraction(TformerORTModel):
    """last_hidden_state (text or image encoders); a CLIP tower's graph also gives pooler_output or its
    projection's text_embeds / image_embeds."""

    output_class = BaseModelOutput

    def forward(self, **inputs):
        outputs = self.session.run(self.prepare_inputs(inputs))
        if set(outputs) == {"last_hidden_state"}:
            return BaseModelOutput(**outputs)
        return TowerOutput(**outputs)

    @property
    def main_input_name(self) -> str:
        return "pixel_values" if "pixel_values" in self.session.input_names else "input_ids"


@dataclass
class TowerOutput(ModelOutput):
    """A CLIP tower's outputs, under the names its PyTorch model uses."""

    last_hidden_state: Optional[torch.Tensor] = None
    pooler_output: Optional[torch.Tensor] = None
    text_embeds: Optional[torch.Tensor] = None
    image_embeds: Optional[torch.Tensor] = None


class TformerORTModelForMaskedLM(TformerORTModel):
    output_class = MaskedLMOutput


class TformerORTModelForSequenceClassification(TformerORTModel):
    output_class = SequenceClassifierOutput


class TformerORTModelForTokenClassification(TformerORTModel):
    output_class = TokenClassifierOutput


class TformerORTModelForQuestionAnswering(TformerORTModel):
    output_class = QuestionAnsweringModelOutput


class TformerORTModelForImageClassification(TformerORTModel):
    main_input_name = "pixel_values"
    output_class = ImageClassifierOutput


@dataclass
class ZeroShotOutput(ModelOutput):
    """The dual encoder's outputs (as transformers' CLIPOutput names them)."""

    logits_per_image: Optional[torch.Tensor] = None
    logits_per_text: Optional[torch.Tensor] = None
    text_embeds: Optional[torch.Tensor] = None
    image_embeds: Optional[torch.Tensor] = None


class TformerORTModelForZeroShotImageClassification(TformerORTModel):
    """The dual encoder's graph (exported for zero-shot-image-classification and feature-extraction alike)."""

    main_input_name = "input_ids"
    output_class = ZeroShotOutput
