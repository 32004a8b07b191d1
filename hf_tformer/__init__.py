"""hf_tformer: encoder, decoder, encoder-decoder and image-encoder Transformers as Hugging Face models, from one
shared core.

Importing the package registers every config and model with transformers' Auto classes in this process. Checkpoints
saved with `save_pretrained` carry the modeling code, so elsewhere they load with `trust_remote_code=True`.
"""

from transformers import AutoConfig

from .configuration_tformer import TformerConfig, TformerDecoderConfig, TformerEncoderConfig, TformerEncoderDecoderConfig
from .configuration_tformer_clip import TformerCLIPConfig, TformerCLIPTextConfig, TformerCLIPVisionConfig
from .configuration_tformer_vit import TformerViTConfig
from .configuration_tformer_whisper import TformerWhisperConfig
from .modeling_tformer_clip import AUTO_CLASSES as _CLIP_AUTO_CLASSES
from .modeling_tformer_clip import TEXT_AUTO_CLASSES as _CLIP_TEXT_AUTO_CLASSES
from .modeling_tformer_clip import VISION_AUTO_CLASSES as _CLIP_VISION_AUTO_CLASSES
from .modeling_tformer_clip import (
    TformerCLIPModel,
    TformerCLIPPreTrainedModel,
    TformerCLIPTextModel,
    TformerCLIPTextModelWithProjection,
    TformerCLIPVisionModel,
    TformerCLIPVisionModelWithProjection,
)
from .modeling_tformer_decoder import AUTO_CLASSES as _DECODER_AUTO_CLASSES
from .modeling_tformer_decoder import (
    TformerDecoderForCausalLM,
    TformerDecoderForSequenceClassification,
    TformerDecoderModel,
    TformerDecoderPreTrainedModel,
)
from .modeling_tformer_encoder import AUTO_CLASSES as _ENCODER_AUTO_CLASSES
from .modeling_tformer_encoder import (
    TformerEncoderForMaskedLM,
    TformerEncoderForQuestionAnswering,
    TformerEncoderForSequenceClassification,
    TformerEncoderForTokenClassification,
    TformerEncoderModel,
    TformerEncoderPreTrainedModel,
)
from .modeling_tformer_encoder_decoder import AUTO_CLASSES as _ENCODER_DECODER_AUTO_CLASSES
from .modeling_tformer_encoder_decoder import (
    TformerEncoderDecoderForConditionalGeneration,
    TformerEncoderDecoderModel,
    TformerEncoderDecoderPreTrainedModel,
    shift_tokens_right,
)
from .modeling_tformer_vit import AUTO_CLASSES as _VIT_AUTO_CLASSES
from .modeling_tformer_vit import TformerViTForImageClassification, TformerViTModel, TformerViTPreTrainedModel
from .modeling_tformer_whisper import AUTO_CLASSES as _WHISPER_AUTO_CLASSES
from .modeling_tformer_whisper import (
    TformerWhisperForConditionalGeneration,
    TformerWhisperModel,
    TformerWhisperPreTrainedModel,
)

__version__ = "0.1.0"

VARIANTS = {
    TformerEncoderConfig: _ENCODER_AUTO_CLASSES,
    TformerDecoderConfig: _DECODER_AUTO_CLASSES,
    TformerEncoderDecoderConfig: _ENCODER_DECODER_AUTO_CLASSES,
    TformerViTConfig: _VIT_AUTO_CLASSES,
    TformerCLIPConfig: _CLIP_AUTO_CLASSES,
    TformerCLIPTextConfig: _CLIP_TEXT_AUTO_CLASSES,
    TformerCLIPVisionConfig: _CLIP_VISION_AUTO_CLASSES,
    TformerWhisperConfig: _WHISPER_AUTO_CLASSES,
}


def _register_with_auto_classes() -> None:
    import transformers

    for config_class, auto_classes in VARIANTS.items():
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for auto_name, model_class in auto_classes.items():
            getattr(transformers, auto_name).register(config_class, model_class, exist_ok=True)


_register_with_auto_classes()

__all__ = [
    "TformerCLIPConfig",
    "TformerCLIPModel",
    "TformerCLIPPreTrainedModel",
    "TformerCLIPTextConfig",
    "TformerCLIPTextModel",
    "TformerCLIPTextModelWithProjection",
    "TformerCLIPVisionConfig",
    "TformerCLIPVisionModel",
    "TformerCLIPVisionModelWithProjection",
    "TformerConfig",
    "TformerDecoderConfig",
    "TformerDecoderForCausalLM",
    "TformerDecoderForSequenceClassification",
    "TformerDecoderModel",
    "TformerDecoderPreTrainedModel",
    "TformerEncoderConfig",
    "TformerEncoderDecoderConfig",
    "TformerEncoderDecoderForConditionalGeneration",
    "TformerEncoderDecoderModel",
    "TformerEncoderDecoderPreTrainedModel",
    "TformerEncoderForMaskedLM",
    "TformerEncoderForQuestionAnswering",
    "TformerEncoderForSequenceClassification",
    "TformerEncoderForTokenClassification",
    "TformerEncoderModel",
    "TformerEncoderPreTrainedModel",
    "TformerViTConfig",
    "TformerViTForImageClassification",
    "TformerViTModel",
    "TformerViTPreTrainedModel",
    "TformerWhisperConfig",
    "TformerWhisperForConditionalGeneration",
    "TformerWhisperModel",
    "TformerWhisperPreTrainedModel",
    "VARIANTS",
    "shift_tokens_right",
]
