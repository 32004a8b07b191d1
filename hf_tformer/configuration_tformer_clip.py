"""Configuration of the CLIP-style dual encoder: a text tower, an image tower and the shared embedding space.

Kept apart from the other configuration modules: transformers parses the module `auto_map` names on every
remote-code load. The towers are configs of the shared core; the dual config holds one of each as a sub-config
(`text_config` / `vision_config`, as transformers' CLIPConfig does), plus the projection width and the logit scale.
"""

from typing import Any, Optional, Union

from transformers import PretrainedConfig

from .config_checks import check_clip_config, check_config, check_vision_config
from .configuration_tformer import TformerConfig
from .configuration_tformer_vit import TformerViTConfig

# Shared-core fields a CLIP tower always has: pre-LN blocks with biases, no token types, no cache.
_TOWER_FIXED = (("norm_placement", "pre"), ("type_vocab_size", 0), ("use_cache", False),
                ("tie_word_embeddings", False))


class TformerCLIPTextConfig(TformerConfig):
    """CLIP's text tower: a causal pre-LN stack with learned positions and a final LayerNorm, pooled at the
    end-of-text token (defaults: openai/clip-vit-base-patch32's text tower).

    Args:
        projection_dim: width of the shared embedding space (TformerCLIPTextModelWithProjection).
        eos_token_id: the token the pooled output is read at (its first occurrence in each row). The legacy value 2
            (configs from before transformers' fix) pools at each row's highest token id instead, as transformers
            does for such configs.
        max_position_embeddings: the longest text (77 in CLIP); longer input is a ValueError.
    Every other field is the shared core's (see TformerConfig).
    """

    model_type = "hf_tformer_clip_text"
    base_config_key = "text_config"

    def __init__(
        self,
        vocab_size: int = 49408,
        hidden_size: int = 512,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 8,
        intermediate_size: int = 2048,
        hidden_act: str = "quick_gelu",
        max_position_embeddings: int = 77,
        layer_norm_eps: float = 1e-5,
        hidden_dropout: float = 0.0,
        attention_dropout: float = 0.0,
        projection_dim: int = 512,
        pad_token_id: Optional[int] = 1,
        bos_token_id: Optional[int] = 49406,
        eos_token_id: Optional[int] = 49407,
        **kwargs: Any,
    ) -> None:
        self.projection_dim = projection_dim
        for field, value in (*_TOWER_FIXED, ("position_embedding_type", "learned")):
            kwargs.setdefault(field, value)
        super().__init__(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            hidden_act=hidden_act,
            max_position_embeddings=max_position_embeddings,
            layer_norm_eps=layer_norm_eps,
            hidden_dropout=hidden_dropout,
            attention_dropout=attention_dropout,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            **kwargs,
        )

    def validate_tformer(self) -> None:
        check_config(self)
        check_clip_config(self, tower="text")


class TformerCLIPVisionConfig(TformerViTConfig):
    """CLIP's image tower: ViT's patch front end without a conv bias, a LayerNorm before the blocks
    (`embedding_layernorm`, CLIP's pre_layrnorm), no final norm on `last_hidden_state`, and a LayerNorm on the
    pooled [CLS] state (defaults: openai/clip-vit-base-patch32's image tower).

    Args:
        projection_dim: width of the shared embedding space (TformerCLIPVisionModelWithProjection).
    Every other field is the image encoder's (see TformerViTConfig).
    """

    model_type = "hf_tformer_clip_vision"
    base_config_key = "vision_config"

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 32,
        hidden_size: int = 768,
        num_hidden_layers: int = 12,
        num_attention_heads: int = 12,
        intermediate_size: int = 3072,
        hidden_act: str = "quick_gelu",
        layer_norm_eps: float = 1e-5,
        projection_dim: int = 512,
        **kwargs: Any,
    ) -> None:
        self.projection_dim = projection_dim
        for field, value in (*_TOWER_FIXED, ("embedding_layernorm", True), ("patch_embedding_bias", False)):
            kwargs.setdefault(field, value)
        super().__init__(
            image_size=image_size,
            patch_size=patch_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
            **kwargs,
        )

    def validate_tformer(self) -> None:
        check_config(self)
        check_vision_config(self)
        check_clip_config(self, tower="vision")


def _sub_config(value: Union[None, dict, PretrainedConfig], config_class: type) -> PretrainedConfig:
    if value is None:
        return config_class()
    if isinstance(value, config_class):
        return value
    if isinstance(value, dict):
        return config_class(**{k: v for k, v in value.items() if k != "model_type"})
    raise ValueError(f"{config_class.base_config_key}={value!r} must be a dict or a {config_class.__name__}.")


class TformerCLIPConfig(PretrainedConfig):
    """A CLIP-style dual encoder: texts and images embedded into one space and scored by scaled cosine similarity.

    Args:
        text_config: the text tower, a dict of TformerCLIPTextConfig fields (or the config itself).
        vision_config: the image tower, a dict of TformerCLIPVisionConfig fields (or the config itself).
        projection_dim: width of the shared embedding space both towers project into.
        logit_scale_init_value: the initial learned log temperature (CLIP: log(1 / 0.07) = 2.6592).
        initializer_range: std of the normal initialisation of the projections.
    """

    model_type = "hf_tformer_clip"
    sub_configs = {"text_config": TformerCLIPTextConfig, "vision_config": TformerCLIPVisionConfig}

    def __init__(
        self,
        text_config: Union[None, dict, TformerCLIPTextConfig] = None,
        vision_config: Union[None, dict, TformerCLIPVisionConfig] = None,
        projection_dim: int = 512,
        logit_scale_init_value: float = 2.6592,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        self.text_config = _sub_config(text_config, TformerCLIPTextConfig)
        self.vision_config = _sub_config(vision_config, TformerCLIPVisionConfig)
        self.projection_dim = projection_dim
        self.logit_scale_init_value = logit_scale_init_value
        self.initializer_range = initializer_range
        kwargs.setdefault("tie_word_embeddings", False)  # nothing to tie (transformers 5 sets no default)
        super().__init__(**kwargs)
        check_clip_config(self, tower="dual")

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs: Any):
        """Keyword overrides are set after __init__ (see TformerConfig.from_dict): check the result again."""
        loaded = super().from_dict(config_dict, **kwargs)
        check_clip_config(loaded[0] if isinstance(loaded, tuple) else loaded, tower="dual")
        return loaded
