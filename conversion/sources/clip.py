"""CLIP -> the dual encoder (CLIPModel) or one of its towers (CLIPTextModel / CLIPVisionModel, with or without
their projection).

The text tower is a causal pre-LN stack with learned positions, pooled at the end-of-text token; the image tower is
the image encoder with CLIP's ends (no conv bias, `pre_layrnorm` as the embedding norm, `post_layernorm` on [CLS]).
transformers 5 names a bare tower's weights without its `text_model.` / `vision_model.` prefix; both are accepted.
"""

import hf_tformer as ht

from ..keymap import Rule, rule
from .base import I, P, Source, activation, plain_activation

_TEXT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers",
                "num_attention_heads", "max_position_embeddings", "layer_norm_eps", "attention_dropout",
                "initializer_range", "pad_token_id", "bos_token_id", "eos_token_id")
_VISION_FIELDS = ("hidden_size", "intermediate_size", "projection_dim", "num_hidden_layers", "num_attention_heads",
                  "num_channels", "image_size", "patch_size", "layer_norm_eps", "attention_dropout",
                  "initializer_range")


def _fields(config: dict, names: tuple[str, ...]) -> dict:
    return {name: config[name] for name in names if config.get(name) is not None}


def _text_config(config: dict) -> ht.TformerCLIPTextConfig:
    return ht.TformerCLIPTextConfig(**_fields(config, _TEXT_FIELDS),
                                    hidden_act=activation(config.get("hidden_act", "quick_gelu")))


def _vision_config(config: dict) -> ht.TformerCLIPVisionConfig:
    for name in ("image_size", "patch_size"):
        if not isinstance(config.get(name), int):
            raise ValueError(f"{name}={config.get(name)!r} is not supported; only square sizes (one int) convert.")
    return ht.TformerCLIPVisionConfig(**_fields(config, _VISION_FIELDS),
                                      hidden_act=activation(config.get("hidden_act", "quick_gelu")))


def _translate(config: dict):
    if config.get("model_type") == "clip_text_model":
        return _text_config(config)
    if config.get("model_type") == "clip_vision_model":
        return _vision_config(config)
    return ht.TformerCLIPConfig(
        text_config=_text_config(config.get("text_config") or {}),
        vision_config=_vision_config(config.get("vision_config") or {}),
        **_fields(config, ("projection_dim", "logit_scale_init_value")),
    )


def _check_tower(config, kind: type, family: str) -> None:
    if not isinstance(config, kind):
        raise ValueError(f"a {config.model_type} checkpoint is not a {kind.model_type} one; {family} takes "
                         f"{kind.model_type}.")
    vision = kind is ht.TformerCLIPVisionConfig
    if config.norm_type != "layernorm" or not config.attention_bias or not config.attention_out_bias or \
            not config.mlp_bias or config.attention_scale is not None or \
            config.num_key_value_heads != config.num_attention_heads or config.embedding_layernorm != vision or \
            (vision and config.patch_embedding_bias):
        raise ValueError(f"{family} is a pre-LayerNorm MHA tower with biases (and, for images, a norm before the "
                         "blocks and no conv bias); this checkpoint's norm_type / biases / attention_scale / "
                         "num_key_value_heads / embedding_layernorm / patch_embedding_bias differ.")


def _native_text(config) -> dict:
    _check_tower(config, ht.TformerCLIPTextConfig, "clip_text_model")
    return dict({name: getattr(config, name) for name in _TEXT_FIELDS},
                hidden_act=plain_activation(config, "clip_text_model"))


def _native_vision(config) -> dict:
    _check_tower(config, ht.TformerCLIPVisionConfig, "clip_vision_model")
    return dict({name: getattr(config, name) for name in _VISION_FIELDS},
                hidden_act=plain_activation(config, "clip_vision_model"))


def _native_dual(config) -> dict:
    if not isinstance(config, ht.TformerCLIPConfig):
        raise ValueError(f"a {config.model_type} checkpoint is not a dual encoder; clip takes hf_tformer_clip.")
    return dict(text_config=_native_text(config.text_config), vision_config=_native_vision(config.vision_config),
                projection_dim=config.projection_dim, logit_scale_init_value=config.logit_scale_init_value)


def _block_rules(source: str, target: str) -> list[Rule]:
    """The encoder layers of either tower: `source` / `target` are the key prefixes up to the stack."""
    layer, ours = rf"{source}encoder\.layers\.{I}\.", target + "encoder.layers.{i}."
    return [
        rule(rf"{layer}self_attn\.(?P<x>[qkv])_proj\.{P}", ours + "self_attn.{x}_proj.{p}"),
        rule(rf"{layer}self_attn\.out_proj\.{P}", ours + "self_attn.o_proj.{p}"),
        rule(rf"{layer}layer_norm1\.{P}", ours + "self_attn_norm.{p}"),
        rule(rf"{layer}mlp\.fc1\.{P}", ours + "mlp.up_proj.{p}"),
        rule(rf"{layer}mlp\.fc2\.{P}", ours + "mlp.down_proj.{p}"),
        rule(rf"{layer}layer_norm2\.{P}", ours + "mlp_norm.{p}"),
    ]


def _text_rules(source: str, target: str) -> list[Rule]:
    return [
        rule(rf"{source}embeddings\.token_embedding\.weight", target + "embed_tokens.weight"),
        rule(rf"{source}embeddings\.position_embedding\.weight", target + "encoder.embeddings.position_embeddings.weight"),
        rule(rf"{source}embeddings\.position_ids"),  # a buffer of 0..n-1 that older checkpoints store
        *_block_rules(source, target),
        rule(rf"{source}final_layer_norm\.{P}", target + "final_norm.{p}"),
    ]


def _vision_rules(source: str, target: str) -> list[Rule]:
    # CLIP's class embedding is (hidden,) and its positions an Embedding table; ours are (1, 1, hidden) and
    # (1, positions, hidden) parameters.
    return [
        rule(rf"{source}embeddings\.class_embedding", target + "embeddings.cls_token",
             transform=lambda tensor: tensor.reshape(1, 1, -1)),
        rule(rf"{source}embeddings\.patch_embedding\.weight", target + "embeddings.projection.weight"),
        rule(rf"{source}embeddings\.position_embedding\.weight", target + "embeddings.position_embeddings",
             transform=lambda tensor: tensor.unsqueeze(0)),
        rule(rf"{source}embeddings\.position_ids"),
        rule(rf"{source}pre_layrnorm\.{P}", target + "encoder.embeddings.layernorm.{p}"),
        *_block_rules(source, target),
        rule(rf"{source}post_layernorm\.{P}", target + "pooler.layernorm.{p}"),
    ]


def _dual_rules(config: dict, target: type) -> list[Rule]:
    return [
        *_text_rules(r"text_model\.", "model.text_model."),
        *_vision_rules(r"vision_model\.", "model.vision_model."),
        rule(r"(?P<n>text_projection|visual_projection)\.weight", "model.{n}.weight"),
        rule(r"logit_scale", "model.logit_scale"),
    ]


def _text_tower_rules(config: dict, target: type) -> list[Rule]:
    return [*_text_rules(r"(?:text_model\.)?", "model."), rule(r"text_projection\.weight", "text_projection.weight")]


def _vision_tower_rules(config: dict, target: type) -> list[Rule]:
    return [*_vision_rules(r"(?:vision_model\.)?", "model."),
            rule(r"visual_projection\.weight", "visual_projection.weight")]


CLIP = Source(
    model_types=("clip",),
    classes={"CLIPModel": ("CLIPModel", ht.TformerCLIPModel)},
    translate_config=_translate,
    native_config=_native_dual,
    rules=_dual_rules,
)

CLIP_TEXT = Source(
    model_types=("clip_text_model",),
    classes={
        "CLIPTextModel": ("CLIPTextModel", ht.TformerCLIPTextModel),
        "CLIPTextModelWithProjection": ("CLIPTextModelWithProjection", ht.TformerCLIPTextModelWithProjection),
    },
    translate_config=_translate,
    native_config=_native_text,
    rules=_text_tower_rules,
)

CLIP_VISION = Source(
    model_types=("clip_vision_model",),
    classes={
        "CLIPVisionModel": ("CLIPVisionModel", ht.TformerCLIPVisionModel),
        "CLIPVisionModelWithProjection": ("CLIPVisionModelWithProjection", ht.TformerCLIPVisionModelWithProjection),
    },
    translate_config=_translate,
    native_config=_native_vision,
    rules=_vision_tower_rules,
)
