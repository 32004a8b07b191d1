"""Configuration of the image encoder (ViT / DeiT): the shared core's fields plus the patch grid.

Kept apart from configuration_tformer.py: transformers parses the module `auto_map` names on every remote-code load.
"""

from typing import Any

from .config_checks import check_config, check_vision_config
from .configuration_tformer import TformerConfig


class TformerViTConfig(TformerConfig):
    """An image encoder over the shared stack (ViT defaults: pre-norm, gelu, eps 1e-12, no dropout).

    Args:
        image_size: side of the (square) images the learned positions were made for; a multiple of `patch_size`.
            Other sizes need `interpolate_pos_encoding=True` in forward.
        patch_size: side of the square patches the strided Conv2d embeds, one token each.
        num_channels: channels of `pixel_values` (3 for RGB).
        distillation_token: a second learned prefix token after [CLS] (DeiT), with its own position.
        distillation_head: the image classifier averages a second head over the distillation token (DeiT's
            ...ForImageClassificationWithTeacher); needs `distillation_token`.
        patch_embedding_bias: a bias on the patch Conv2d (ViT has one, CLIP's image tower none).
    The stack adds no positions of its own (`position_embedding_type="none"`: the patch embeddings do) and has no
    token table (`vocab_size=None`); every other field is the shared core's (see TformerConfig).
    """

    model_type = "hf_tformer_vit"
    has_token_embeddings = False

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        num_channels: int = 3,
        distillation_token: bool = False,
        distillation_head: bool = False,
        patch_embedding_bias: bool = True,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        layer_norm_eps: float = 1e-12,
        hidden_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.distillation_token = distillation_token
        self.distillation_head = distillation_head
        self.patch_embedding_bias = patch_embedding_bias
        for field, value in (("vocab_size", None), ("pad_token_id", None), ("position_embedding_type", "none"),
                             ("norm_placement", "pre"), ("type_vocab_size", 0), ("use_cache", False),
                             ("tie_word_embeddings", False)):
            kwargs.setdefault(field, value)
        super().__init__(
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            layer_norm_eps=layer_norm_eps,
            hidden_dropout=hidden_dropout,
            attention_dropout=attention_dropout,
            **kwargs,
        )

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_prefix_tokens(self) -> int:
        """[CLS], and DeiT's distillation token."""
        return 1 + int(self.distillation_token)

    def validate_tformer(self) -> None:
        check_config(self)
        check_vision_config(self)
