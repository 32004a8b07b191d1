"""Validation of hf_tformer configs and the tensor-parallel plan they declare.

Kept apart from configuration_tformer.py, whose classes are what `auto_map` points at: transformers parses that
module's source on every remote-code load, so the less it holds the cheaper a load is.
"""

from typing import Any

# "none": the stack adds no positions because a front end already did (the vision patch embeddings, vision.py).
POSITION_TYPES = ("sinusoidal", "learned", "rotary", "relative", "none")
NORM_PLACEMENTS = ("pre", "post")
NORM_TYPES = ("layernorm", "rmsnorm")
ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu")
GATED_ACTIVATIONS = ("swiglu", "geglu", "geglu_new")


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not supported; choose one of {list(allowed)}.")


def _positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field}={value!r} must be a positive integer.")


def _positive_number(field: str, value: Any, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{field}={value!r} must be a positive number {hint}.")


def _probability(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{field}={value!r} must be a float in [0, 1).")


# Tensor-parallel plan of the blocks, shared by every stack ("colwise" splits heads / hidden units across ranks).
def block_tp_plan(stack: str, *, cross_attention: bool = False) -> dict[str, str]:
    plan = {}
    # Only modules the stack has: transformers logs every rule that matches nothing.
    for attn in ("self_attn", "cross_attn") if cross_attention else ("self_attn",):
        for proj in ("q_proj", "k_proj", "v_proj"):
            plan[f"{stack}.layers.*.{attn}.{proj}"] = "colwise"
        plan[f"{stack}.layers.*.{attn}.o_proj"] = "rowwise"
    plan[f"{stack}.layers.*.mlp.up_proj"] = "colwise"
    plan[f"{stack}.layers.*.mlp.gate_proj"] = "colwise"
    plan[f"{stack}.layers.*.mlp.down_proj"] = "rowwise"
    return plan


def check_config(config: Any) -> None:
    """Raise `ValueError` naming the first invalid field of an hf_tformer config, its value and what is allowed."""
    # A model fed by a front end (pixels, audio frames) has no token table: its vocab_size is None.
    token_fields = ("vocab_size",) if getattr(config, "has_token_embeddings", True) else ()
    for field in (*token_fields, "hidden_size", "num_attention_heads", "num_key_value_heads",
                  "intermediate_size", "max_position_embeddings", "relative_attention_num_buckets",
                  "relative_attention_max_distance"):
        _positive_int(field, getattr(config, field))
    for field in config._layer_count_fields():
        _positive_int(field, getattr(config, field))
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(
            f"hidden_size={config.hidden_size} is not divisible by num_attention_heads={config.num_attention_heads}; "
            "pick a head count that divides the hidden size."
        )
    if config.num_attention_heads % config.num_key_value_heads:
        raise ValueError(
            f"num_attention_heads={config.num_attention_heads} is not divisible by "
            f"num_key_value_heads={config.num_key_value_heads}; use a divisor (1 = MQA, equal = MHA)."
        )
    _choice("hidden_act", config.hidden_act, ACTIVATIONS + GATED_ACTIVATIONS)
    _choice("position_embedding_type", config.position_embedding_type, POSITION_TYPES)
    _choice("norm_placement", config.norm_placement, NORM_PLACEMENTS)
    _choice("norm_type", config.norm_type, NORM_TYPES)
    if config.position_embedding_type in ("rotary", "sinusoidal") and config._position_dim() % 2:
        raise ValueError(
            f"position_embedding_type={config.position_embedding_type!r} needs an even "
            f"{'head_dim' if config.position_embedding_type == 'rotary' else 'hidden_size'}, "
            f"got {config._position_dim()}; change hidden_size or num_attention_heads."
        )
    if isinstance(config.type_vocab_size, bool) or not isinstance(config.type_vocab_size, int) or config.type_vocab_size < 0:
        raise ValueError(f"type_vocab_size={config.type_vocab_size!r} must be an integer >= 0 (0 disables it).")
    for field in ("hidden_dropout", "attention_dropout", "activation_dropout"):
        _probability(field, getattr(config, field))
    if config.classifier_dropout is not None:
        _probability("classifier_dropout", config.classifier_dropout)
    if not (isinstance(config.layer_norm_eps, (int, float)) and config.layer_norm_eps > 0):
        raise ValueError(f"layer_norm_eps={config.layer_norm_eps!r} must be a positive float.")
    if not (isinstance(config.rotary_base, (int, float)) and config.rotary_base > 1):
        raise ValueError(f"rotary_base={config.rotary_base!r} must be a number > 1.")
    if config.relative_attention_num_buckets < 4:
        raise ValueError(f"relative_attention_num_buckets={config.relative_attention_num_buckets} must be >= 4 "
                         "(half exact, half log-spaced, per direction).")
    if config.attention_scale is not None:
        _positive_number("attention_scale", config.attention_scale, "or None (1/sqrt(head_dim))")
    _positive_number("lm_head_input_scale", config.lm_head_input_scale, "(1.0 leaves the hidden states unscaled)")
    if config.pad_token_id is not None and token_fields and not 0 <= config.pad_token_id < config.vocab_size:
        raise ValueError(f"pad_token_id={config.pad_token_id} is outside the vocabulary [0, {config.vocab_size}).")


def check_vision_config(config: Any) -> None:
    """The image fields of a vision config (after `check_config`): the patch grid and the prefix tokens."""
    for field in ("image_size", "patch_size", "num_channels"):
        _positive_int(field, getattr(config, field))
    if config.image_size % config.patch_size:
        raise ValueError(
            f"image_size={config.image_size} is not a multiple of patch_size={config.patch_size}; pick an image size "
            "that the patches tile exactly."
        )
    if config.position_embedding_type != "none":
        raise ValueError(
            f"position_embedding_type={config.position_embedding_type!r}: the patch embeddings add learned positions "
            "themselves (interpolated to other image sizes); leave it at 'none'."
        )
    if config.type_vocab_size != 0:
        raise ValueError(f"type_vocab_size={config.type_vocab_size!r}: images have no token types; set it to 0.")
    for field in ("distillation_token", "distillation_head"):
        if not isinstance(getattr(config, field), bool):
            raise ValueError(f"{field}={getattr(config, field)!r} must be True or False.")
    if config.distillation_head and not config.distillation_token:
        raise ValueError("distillation_head=True classifies from the distillation token, but distillation_token=False;"
                         " set distillation_token=True (DeiT) or distillation_head=False.")
