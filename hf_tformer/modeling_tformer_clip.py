"""The CLIP-style dual encoder: a text tower and an image tower over the shared stack, projected into one space.

    input_ids --embed + learned positions--> causal stack --final norm--> state at the end-of-text token --+
                                                                                                          | project,
    pixel_values --patches + [CLS] + positions (vision.py)--> norm --> stack --> norm of [CLS] -----------+ L2-normalise
                                                                                                          v
                                        logits_per_text = exp(logit_scale) * text_embeds @ image_embeds.T

The image tower is the image encoder (modeling_tformer_vit.py) with CLIP's ends: no conv bias, a norm before the
blocks (`embedding_layernorm`), none after them, and a LayerNorm as the pooler.
"""

from typing import Any, Optional, Union

import torch
import transformers
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput, CLIPTextModelOutput, CLIPVisionModelOutput

from .configuration_tformer_clip import TformerCLIPConfig, TformerCLIPTextConfig, TformerCLIPVisionConfig
from .heads import FirstTokenNormPooler, contrastive_loss, eos_token_index
from .linear import TformerLinear
from .modeling_tformer_vit import TformerViTModel, TformerViTPreTrainedModel
from .norms import build_norm
from .pretrained import TformerPreTrainedModel, config_flag, declare_auto_classes, embed_input_ids, init_constant
from .stack import TformerStack

# transformers (4.57) copies only the *direct* relative imports of a modeling file out of a local checkpoint
# folder, so every core module it needs transitively is imported here by name (tests/test_remote_code.py checks).
from .attention import TformerAttention  # noqa: F401
from .block import TformerBlock  # noqa: F401
from .config_checks import check_config  # noqa: F401
from .configuration_tformer import TformerConfig  # noqa: F401
from .configuration_tformer_vit import TformerViTConfig  # noqa: F401
from .embeddings import TformerEmbeddings  # noqa: F401
from .feed_forward import TformerFeedForward  # noqa: F401
from .input_checks import check_forward_kwargs  # noqa: F401
from .masks import self_attention_mask  # noqa: F401
from .moe import TformerSparseMoe  # noqa: F401
from .positions import apply_rotary  # noqa: F401
from .tokenization_tformer import TformerTokenizerFast  # noqa: F401  (AutoTokenizer's fallback)
from .vision import TformerPatchEmbeddings  # noqa: F401

# get_text_features / get_image_features return what transformers' own CLIPModel returns: the projected features
# on 4.x, on 5.x the tower's output with the projected features as its pooler_output.
_FEATURES_AS_MODEL_OUTPUT = int(transformers.__version__.split(".")[0]) >= 5


def _l2_normalise(embeds: torch.Tensor) -> torch.Tensor:
    return embeds / embeds.pow(2).sum(dim=-1, keepdim=True).sqrt()  # pow / sum / sqrt: exports everywhere


def _features(outputs: BaseModelOutputWithPooling, features: torch.Tensor, return_dict: Optional[bool], config):
    if not _FEATURES_AS_MODEL_OUTPUT:
        return features
    outputs.pooler_output = features
    return outputs if config_flag(return_dict, config, "return_dict") else outputs.to_tuple()


class TformerCLIPTextPreTrainedModel(TformerPreTrainedModel):
    config_class = TformerCLIPTextConfig
    _supports_static_cache = False
    _supports_cache_class = False


class TformerCLIPTextModel(TformerCLIPTextPreTrainedModel):
    """The text tower: `last_hidden_state` after the final norm (the last of `hidden_states` is before it, as in
    CLIP), `pooler_output` its state at the end-of-text token (see `eos_token_index`). An `attention_mask`
    (padding) combines with the causal mask."""

    def __init__(self, config: TformerCLIPTextConfig) -> None:
        super().__init__(config)
        # No padding_idx: CLIP pads with its end-of-text token, whose embedding is trained.
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        # The final norm is applied here, not by the stack: CLIP's hidden_states end with the un-normed last layer.
        self.encoder = TformerStack(config, config.num_hidden_layers, is_causal=True, final_norm=False)
        self.final_norm = build_norm(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[BaseModelOutputWithPooling, tuple]:
        if input_ids is None:
            raise ValueError("input_ids is None: the text tower pools at the end-of-text token, found by its id; "
                             "tokenize the texts (AutoProcessor / AutoTokenizer) and pass input_ids.")
        outputs = self.encoder(
            embed_input_ids(self.embed_tokens, input_ids, None),
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=config_flag(output_attentions, self.config, "output_attentions"),
            output_hidden_states=config_flag(output_hidden_states, self.config, "output_hidden_states"),
            **kwargs,
        )
        hidden_states = self.final_norm(outputs.last_hidden_state)  # (batch, seq, hidden)
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        pooled = hidden_states[rows, eos_token_index(input_ids, self.config.eos_token_id).to(hidden_states.device)]
        output = BaseModelOutputWithPooling(
            last_hidden_state=hidden_states,
            pooler_output=pooled,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerCLIPTextModelWithProjection(TformerCLIPTextPreTrainedModel):
    """The text tower and its projection: `text_embeds` (batch, projection_dim), not normalised."""

    def __init__(self, config: TformerCLIPTextConfig) -> None:
        super().__init__(config)
        self.model = TformerCLIPTextModel(config)
        self.text_projection = TformerLinear(config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[CLIPTextModelOutput, tuple]:
        outputs = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids, return_dict=True,
                             **kwargs)
        output = CLIPTextModelOutput(
            text_embeds=self.text_projection(outputs.pooler_output),
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerCLIPVisionPreTrainedModel(TformerViTPreTrainedModel):
    config_class = TformerCLIPVisionConfig


class TformerCLIPVisionModel(TformerCLIPVisionPreTrainedModel, TformerViTModel):
    """The image tower: the image encoder's forward, `last_hidden_state` without a final norm and `pooler_output`
    the LayerNorm of the [CLS] state (CLIP's post_layernorm)."""

    optional_head_modules = ()  # the pooler norm is part of every CLIP image embedding
    pooler_class = FirstTokenNormPooler
    final_norm = False


class TformerCLIPVisionModelWithProjection(TformerCLIPVisionPreTrainedModel):
    """The image tower and its projection: `image_embeds` (batch, projection_dim), not normalised."""

    def __init__(self, config: TformerCLIPVisionConfig) -> None:
        super().__init__(config)
        self.model = TformerCLIPVisionModel(config)
        self.visual_projection = TformerLinear(config.hidden_size, config.projection_dim, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Conv2d:
        return self.model.embeddings.projection

    def forward(
        self,
        pixel_values: Optional[torch.Tensor] = None,
        interpolate_pos_encoding: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[CLIPVisionModelOutput, tuple]:
        outputs = self.model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True,
                             **kwargs)
        output = CLIPVisionModelOutput(
            image_embeds=self.visual_projection(outputs.pooler_output),
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerCLIPPreTrainedModel(TformerViTPreTrainedModel):
    config_class = TformerCLIPConfig
    main_input_name = "input_ids"

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, TformerCLIPModel):
            init_constant(module.logit_scale, self.config.logit_scale_init_value)


class TformerCLIPModel(TformerCLIPPreTrainedModel):
    """Both towers, their projections into `projection_dim` and the learned `logit_scale`: `logits_per_image`
    (images, texts) / `logits_per_text` are the scaled cosine similarities, `loss` (return_loss=True) CLIP's
    contrastive loss over a batch of matching (text, image) pairs."""

    def __init__(self, config: TformerCLIPConfig) -> None:
        super().__init__(config)
        self.text_model = TformerCLIPTextModel._from_config(config.text_config)
        self.vision_model = TformerCLIPVisionModel._from_config(config.vision_config)
        self.text_projection = TformerLinear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.visual_projection = TformerLinear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:  # resize_token_embeddings needs it
        self.text_model.set_input_embeddings(value)

    def get_text_features(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[torch.Tensor, BaseModelOutputWithPooling, tuple]:
        """(texts, projection_dim) projected, not normalised (on transformers 5: the text tower's output with these
        as its pooler_output, as CLIPModel returns there)."""
        outputs = self.text_model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  return_dict=True, **kwargs)
        return _features(outputs, self.text_projection(outputs.pooler_output), return_dict, self.config)

    def get_image_features(
        self,
        pixel_values: Optional[torch.Tensor] = None,
        interpolate_pos_encoding: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[torch.Tensor, BaseModelOutputWithPooling, tuple]:
        """(images, projection_dim) projected, not normalised (on transformers 5: the image tower's output with
        these as its pooler_output, as CLIPModel returns there)."""
        outputs = self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding,
                                    return_dict=True, **kwargs)
        return _features(outputs, self.visual_projection(outputs.pooler_output), return_dict, self.config)

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        pixel_values: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        return_loss: Optional[bool] = None,
        interpolate_pos_encoding: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[CLIPOutput, tuple]:
        missing = [name for name, value in (("input_ids", input_ids), ("pixel_values", pixel_values)) if value is None]
        if missing:
            raise ValueError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} None: TformerCLIPModel scores texts (input_ids) against "
                             "images (pixel_values) and needs both; for one side alone call get_text_features / "
                             "get_image_features, or use TformerCLIPTextModel / TformerCLIPVisionModel.")
        flags = dict(output_attentions=config_flag(output_attentions, self.config, "output_attentions"),
                     output_hidden_states=config_flag(output_hidden_states, self.config, "output_hidden_states"),
                     return_dict=True)
        vision_outputs = self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **flags,
                                           **kwargs)
        text_outputs = self.text_model(input_ids, attention_mask=attention_mask, position_ids=position_ids, **flags,
                                       **kwargs)
        image_features = self.visual_projection(vision_outputs.pooler_output)  # (images, projection)
        text_features = self.text_projection(text_outputs.pooler_output)  # (texts, projection)
        if _FEATURES_AS_MODEL_OUTPUT:  # as transformers 5's CLIPModel: the towers' pooler_output is projected
            vision_outputs.pooler_output, text_outputs.pooler_output = image_features, text_features
        image_embeds, text_embeds = _l2_normalise(image_features), _l2_normalise(text_features)
        logits_per_text = text_embeds @ image_embeds.t().to(text_embeds.device) * self.logit_scale.exp()
        output = CLIPOutput(
            loss=contrastive_loss(logits_per_text) if return_loss else None,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


AUTO_CLASSES = {
    "AutoModel": TformerCLIPModel,
    "AutoModelForZeroShotImageClassification": TformerCLIPModel,
}
TEXT_AUTO_CLASSES = {"AutoModel": TformerCLIPTextModel}
VISION_AUTO_CLASSES = {"AutoModel": TformerCLIPVisionModel}
declare_auto_classes(TformerCLIPPreTrainedModel, TformerCLIPConfig, AUTO_CLASSES)
declare_auto_classes(TformerCLIPTextPreTrainedModel, TformerCLIPTextConfig, TEXT_AUTO_CLASSES)
declare_auto_classes(TformerCLIPVisionPreTrainedModel, TformerCLIPVisionConfig, VISION_AUTO_CLASSES)
# Saved alone, a tower with its projection loads back as itself through AutoModel (its code travels with it).
for _with_projection in (TformerCLIPTextModelWithProjection, TformerCLIPVisionModelWithProjection):
    _with_projection.register_for_auto_class("AutoModel")
