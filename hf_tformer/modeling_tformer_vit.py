"""The image encoder (ViT / DeiT): the patch front end (vision.py) + the shared stack without a causal mask, and
its heads. The stack runs with `position_embedding_type="none"`: the front end adds [CLS] and the positions."""

from typing import Any, Optional, Union

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling, ImageClassifierOutput

from .configuration_tformer_vit import TformerViTConfig
from .heads import FirstTokenPooler, sequence_classification_loss
from .linear import TformerLinear
from .pretrained import TformerPreTrainedModel, config_flag, declare_auto_classes, init_normal
from .stack import TformerStack
from .vision import TformerPatchEmbeddings, check_pixel_values

# transformers (4.57) copies only the *direct* relative imports of a modeling file out of a local checkpoint
# folder, so every core module it needs transitively is imported here by name (tests/test_remote_code.py checks).
from .attention import TformerAttention  # noqa: F401
from .block import TformerBlock  # noqa: F401
from .config_checks import check_config  # noqa: F401
from .configuration_tformer import TformerConfig  # noqa: F401
from .embeddings import TformerEmbeddings  # noqa: F401
from .feed_forward import TformerFeedForward  # noqa: F401
from .input_checks import check_forward_kwargs  # noqa: F401
from .masks import self_attention_mask  # noqa: F401
from .moe import TformerSparseMoe  # noqa: F401
from .norms import build_norm  # noqa: F401
from .positions import apply_rotary  # noqa: F401
from .tokenization_tformer import TformerTokenizerFast  # noqa: F401  (AutoTokenizer's fallback)

class TformerViTPreTrainedModel(TformerPreTrainedModel):
    config_class = TformerViTConfig
    main_input_name = "pixel_values"
    _supports_static_cache = False
    _supports_cache_class = False

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, TformerPatchEmbeddings):
            for parameter in module.learned_tokens():
                init_normal(parameter, mean=0.0, std=self.config.initializer_range)


class TformerViTModel(TformerViTPreTrainedModel):
    optional_head_modules = ("pooler",)  # loading a classifier's weights (no pooler) here leaves it to fine-tuning
    # What CLIP's image tower changes (modeling_tformer_clip.py): its pooler, and no final norm on the sequence.
    pooler_class: type = FirstTokenPooler
    final_norm: bool = True

    def __init__(self, config: TformerViTConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = TformerPatchEmbeddings(config)
        self.encoder = TformerStack(config, config.num_hidden_layers, is_causal=False, final_norm=self.final_norm)
        self.pooler = self.pooler_class(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Conv2d:
        return self.embeddings.projection

    def forward(
        self,
        pixel_values: Optional[torch.Tensor] = None,
        interpolate_pos_encoding: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[BaseModelOutputWithPooling, tuple]:
        interpolate = bool(interpolate_pos_encoding)
        check_pixel_values(pixel_values, self.config, interpolate)
        outputs = self.encoder(
            self.embeddings(pixel_values),
            output_attentions=config_flag(output_attentions, self.config, "output_attentions"),
            output_hidden_states=config_flag(output_hidden_states, self.config, "output_hidden_states"),
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state  # after the final norm (pre-norm stacks, unless final_norm=False)
        output = BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=self.pooler(hidden_states) if self.pooler is not None else None,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerViTForImageClassification(TformerViTPreTrainedModel):
    """A linear head over the final [CLS] state; with `distillation_head` (DeiT with teacher) the mean of that and a
    second head over the distillation token. Loss as transformers' heads: regression, single- or multi-label."""

    def __init__(self, config: TformerViTConfig) -> None:
        super().__init__(config)
        self.model = TformerViTModel(config, add_pooling_layer=False)
        self.classifier = TformerLinear(config.hidden_size, config.num_labels)
        if config.distillation_head:
            self.distillation_classifier = TformerLinear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        pixel_values: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        interpolate_pos_encoding: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[ImageClassifierOutput, tuple]:
        outputs = self.model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True,
                             **kwargs)
        hidden_states = outputs.last_hidden_state
        logits = self.classifier(hidden_states[:, 0])
        if hasattr(self, "distillation_classifier"):
            logits = (logits + self.distillation_classifier(hidden_states[:, 1])) / 2
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        output = ImageClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


AUTO_CLASSES = {
    "AutoModel": TformerViTModel,
    "AutoModelForImageClassification": TformerViTForImageClassification,
}
declare_auto_classes(TformerViTPreTrainedModel, TformerViTConfig, AUTO_CLASSES)
