"""Validation of hf_tformer configs and the tensor-parallel plan they declare.

Kept apart from configuration_tformer.py, whose classes are what `auto_map` points at: transformers parses that
module's source on every remote-code load, so the less it holds the cheaper a load is.
"""

import math
import sys
from importlib import import_module
from typing import Any, Optional

# "none": the stack adds no positions because a front end already did (the vision patch embeddings, vision.py).
POSITION_TYPES = ("sinusoidal", "learned", "rotary", "relative", "none")
NORM_PLACEMENTS = ("pre", "post")
NORM_TYPES = ("layernorm", "rmsnorm")
ACTIVATIONS = ("relu", "gelu", "gelu_new", "silu", "quick_gelu")  # quick_gelu: x * sigmoid(1.702 x) (CLIP)
GATED_ACTIVATIONS = ("swiglu", "geglu", "geglu_new")
LAYER_TYPES = ("full_attention", "sliding_attention")


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field}={value!r} is not supported; choose one of {list(allowed)}.")


def _positive_int(field: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field}={value!r} must be a positive integer.")


def _number(value: Any) -> bool:
    """A finite int or float (NaN and inf compare False with everything, so range checks alone let them through)."""
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _positive_number(field: str, value: Any, hint: str) -> None:
    if not _number(value) or value <= 0:
        raise ValueError(f"{field}={value!r} must be a finite positive number {hint}.")


# Strings a hand-written config.json holds for booleans: named in the error, never coerced ("no" is truthy).
_FALSE_WORDS, _TRUE_WORDS = ("false", "no", "n", "off", "0", "f"), ("true", "yes", "y", "on", "1", "t")


def _bool(field: str, value: Any) -> None:
    if isinstance(value, bool):
        return
    word = value.strip().lower() if isinstance(value, str) else None
    fix = "false" if word in _FALSE_WORDS else "true" if word in _TRUE_WORDS else "true or false"
    python = {"false": "False", "true": "True"}.get(fix, "True or False")
    raise ValueError(f"{field}={value!r} must be True or False (a bool, not {type(value).__name__}); write {fix} "
                     f"in config.json (unquoted) or {python} in Python.")


# Boolean fields of transformers' PretrainedConfig that change what our models do (None: the version lacks it).
TRANSFORMERS_BOOL_FIELDS = ("tie_word_embeddings", "use_cache", "is_encoder_decoder", "return_dict",
                            "output_hidden_states", "output_attentions", "is_decoder", "add_cross_attention",
                            "tie_encoder_decoder", "torchscript")
BOOL_FIELDS = ("attention_bias", "attention_out_bias", "mlp_bias", "lm_head_bias", "qk_norm", "parallel_residual",
               "norm_topk_prob", "output_router_logits", "embedding_layernorm", "scale_embeddings")


def check_bool_fields(config: Any, fields: tuple[str, ...], *, optional: bool = False) -> None:
    """Every field a bool (`optional`: a missing or None field is skipped)."""
    for field in fields:
        value = getattr(config, field, None)
        if not (optional and value is None):
            _bool(field, value)


def check_token_id(field: str, value: Any, vocab_size: int) -> None:
    """None, or an int id in the vocabulary."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < vocab_size:
        raise ValueError(f"{field}={value!r} is outside the vocabulary [0, {vocab_size}); set it to a token id of "
                         "the tokenizer (e.g. its bos or pad token id).")


def check_initializer_range(config: Any) -> None:
    value = config.initializer_range
    if not _number(value) or value < 0:
        raise ValueError(f"initializer_range={value!r} must be a finite number >= 0 (the std of the normal init; "
                         "0.02 is usual).")


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


def moe_tp_plan(stack: str, *, shared_expert: bool) -> dict[str, str]:
    """The experts of sparse MoE layers split like the dense MLP (Mixtral's plan on transformers 4.57); the router
    (`mlp.gate`, a few KB) stays replicated so that every rank routes every token alike."""
    plan = {}
    for expert in ("experts.*", "shared_expert") if shared_expert else ("experts.*",):
        plan[f"{stack}.layers.*.mlp.{expert}.gate_proj"] = "colwise"
        plan[f"{stack}.layers.*.mlp.{expert}.up_proj"] = "colwise"
        plan[f"{stack}.layers.*.mlp.{expert}.down_proj"] = "rowwise"
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
    check_bool_fields(config, BOOL_FIELDS)
    check_bool_fields(config, TRANSFORMERS_BOOL_FIELDS, optional=True)
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
    if not (_number(config.layer_norm_eps) and config.layer_norm_eps > 0):
        raise ValueError(f"layer_norm_eps={config.layer_norm_eps!r} must be a positive float.")
    if not (_number(config.rotary_base) and config.rotary_base > 1):
        raise ValueError(f"rotary_base={config.rotary_base!r} must be a finite number > 1.")
    check_initializer_range(config)
    if config.relative_attention_num_buckets < 4:
        raise ValueError(f"relative_attention_num_buckets={config.relative_attention_num_buckets} must be >= 4 "
                         "(half exact, half log-spaced, per direction).")
    if config.attention_scale is not None:
        _positive_number("attention_scale", config.attention_scale, "or None (1/sqrt(head_dim))")
    _positive_number("lm_head_input_scale", config.lm_head_input_scale, "(1.0 leaves the hidden states unscaled)")
    if token_fields:
        check_token_id("pad_token_id", config.pad_token_id, config.vocab_size)
    if config.is_encoder_decoder:  # the decoder's first input at generate() and in shifted labels
        check_token_id("decoder_start_token_id", config.decoder_start_token_id, config.vocab_size)
    check_attention_options(config)
    check_moe_options(config)


def vllm_cpu_head_sizes() -> Optional[tuple[int, ...]]:
    """The head sizes vLLM's CPU attention takes when this process is serving with vLLM on its CPU platform, else
    None. vLLM is never imported here: it is asked only once it is loaded (it is what set the "vllm" attention)."""
    platforms = sys.modules.get("vllm.platforms")
    if platforms is None or not platforms.current_platform.is_cpu():
        return None
    backend = import_module("vllm.v1.attention.backends.cpu_attn").CPUAttentionBackend
    return tuple(backend.get_supported_head_sizes())


def check_vllm_head_dim(config: Any) -> None:
    """Raise `ValueError` when vLLM is building this model for its CPU attention, which cannot take its head_dim.

    vLLM 0.32 checks head sizes for its GPU attention backends at start-up, but on the CPU only the kernel refuses
    one, on the first request, which kills the server. vLLM's Transformers backend sets the config's attention
    implementation to "vllm" before it builds the model: refusing then stops the server from starting."""
    if getattr(config, "_attn_implementation", None) != "vllm":
        return
    supported = vllm_cpu_head_sizes()
    if supported is None or config.head_dim in supported:
        return
    hidden = config.hidden_size
    heads = [count for count in range(1, hidden + 1) if hidden % count == 0 and hidden // count in supported]
    fix = (f"num_attention_heads in {heads[::-1]} (with num_key_value_heads dividing it)" if heads
           else "hidden_size and num_attention_heads")
    raise ValueError(
        f"head_dim={config.head_dim} (hidden_size={hidden} / num_attention_heads={config.num_attention_heads}) is "
        f"not a head size vLLM's CPU attention supports ({list(supported)}): the server would fail on its first "
        f"request. Serve a model trained with {fix} so that hidden_size / num_attention_heads is one of them."
    )


def check_attention_options(config: Any) -> None:
    """QK-norm, the output-projection bias, partial rotary, the parallel residual and sliding-window attention."""
    factor = config.partial_rotary_factor
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0.0 < factor <= 1.0:
        raise ValueError(f"partial_rotary_factor={factor!r} must be a number in (0, 1] (1.0 rotates every head dim).")
    if factor != 1.0 and config.position_embedding_type != "rotary":
        raise ValueError(f"partial_rotary_factor={factor} needs position_embedding_type='rotary', got "
                         f"{config.position_embedding_type!r}; leave it at 1.0.")
    if config.position_embedding_type == "rotary" and config.rotary_dim < 2:
        raise ValueError(f"partial_rotary_factor={factor} rotates {config.rotary_dim} of head_dim={config.head_dim} "
                         "dims; rotary needs at least 2.")
    if config.parallel_residual and config.norm_placement != "pre":
        raise ValueError("parallel_residual=True adds attention and MLP to the same pre-norm residual; set "
                         f"norm_placement='pre' (got {config.norm_placement!r}) or parallel_residual=False.")
    if config.parallel_residual and getattr(config, "is_encoder_decoder", False):
        raise ValueError("parallel_residual=True is not supported by the encoder-decoder (its decoder blocks add "
                         "cross attention in sequence); set parallel_residual=False.")
    window, layer_types = config.sliding_window, config.layer_types
    if window is not None:
        _positive_int("sliding_window", window)
    if window is None and layer_types is None:
        return
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(f"sliding_window={window!r} / layer_types: local attention is supported by the encoder and "
                         "decoder variants, not the encoder-decoder; leave both None.")
    if config.position_embedding_type == "relative":
        raise ValueError(f"sliding_window={window!r} with position_embedding_type='relative' is not supported (the "
                         "relative bias spans every key); use rotary or learned positions, or sliding_window=None.")
    check_layer_types(layer_types, config.num_hidden_layers, window)


def check_layer_types(layer_types: Any, num_layers: int, window: Any) -> None:
    """Also run before transformers 5.x's own `layer_types` validator (which names no fix)."""
    if layer_types is None:
        return
    if not isinstance(layer_types, (list, tuple)) or len(layer_types) != num_layers:
        raise ValueError(f"layer_types={layer_types!r} must list one entry per layer (num_hidden_layers={num_layers}).")
    for value in layer_types:
        _choice("layer_types entry", value, LAYER_TYPES)
    if "sliding_attention" in layer_types and window is None:
        raise ValueError("layer_types names 'sliding_attention' layers but sliding_window=None; set the window "
                         "size (e.g. sliding_window=4096).")


def check_moe_options(config: Any) -> None:
    """The sparse mixture-of-experts fields (moe.py); nothing to check for a dense model (num_experts=0)."""
    experts = config.num_experts
    if isinstance(experts, bool) or not isinstance(experts, int) or experts < 0:
        raise ValueError(f"num_experts={experts!r} must be an integer >= 0 (0 = a dense feed-forward everywhere).")
    if experts == 0:
        return
    if getattr(config, "model_type", None) != "hf_tformer_decoder":
        raise ValueError(f"num_experts={experts}: the mixture-of-experts feed-forward is supported by the decoder "
                         "variant (hf_tformer_decoder) only; set num_experts=0.")
    _positive_int("num_experts_per_tok", config.num_experts_per_tok)
    if config.num_experts_per_tok > experts:
        raise ValueError(f"num_experts_per_tok={config.num_experts_per_tok} exceeds num_experts={experts}; route each "
                         "token to at most num_experts experts.")
    if config.moe_intermediate_size is not None:
        _positive_int("moe_intermediate_size", config.moe_intermediate_size)
    shared = config.shared_expert_intermediate_size
    if isinstance(shared, bool) or not isinstance(shared, int) or shared < 0:
        raise ValueError(f"shared_expert_intermediate_size={shared!r} must be an integer >= 0 (0 = no shared expert).")
    layers = config.moe_layers
    if layers is not None and (not isinstance(layers, (list, tuple)) or not all(
            isinstance(i, int) and not isinstance(i, bool) and 0 <= i < config.num_hidden_layers for i in layers)):
        raise ValueError(f"moe_layers={layers!r} must list layer indices in [0, {config.num_hidden_layers}) (None = "
                         "every layer).")
    coef = config.router_aux_loss_coef
    if isinstance(coef, bool) or not isinstance(coef, (int, float)) or coef < 0:
        raise ValueError(f"router_aux_loss_coef={coef!r} must be a number >= 0 (0 leaves the LM loss alone).")


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
    check_bool_fields(config, ("distillation_token", "distillation_head", "patch_embedding_bias"))
    if config.distillation_head and not config.distillation_token:
        raise ValueError("distillation_head=True classifies from the distillation token, but distillation_token=False;"
                         " set distillation_token=True (DeiT) or distillation_head=False.")


def check_clip_config(config: Any, tower: str) -> None:
    """The CLIP fields of a text / vision tower (after `check_config`) or of the dual config (`tower="dual"`)."""
    _positive_int("projection_dim", config.projection_dim)
    if tower == "text" and (isinstance(config.eos_token_id, bool) or not isinstance(config.eos_token_id, int)):
        raise ValueError(f"eos_token_id={config.eos_token_id!r}: CLIP's text tower pools at the end-of-text token; set "
                         "it to the tokenizer's eos_token_id (an int).")
    if tower == "text" and config.position_embedding_type != "learned":
        raise ValueError(f"position_embedding_type={config.position_embedding_type!r}: CLIP's text tower has learned "
                         "positions; leave it at 'learned'.")
    if tower == "vision" and config.distillation_token:
        raise ValueError("distillation_token=True: CLIP's image tower pools [CLS] and has no distillation token; set "
                         "distillation_token=False.")
    if tower == "dual":
        value = config.logit_scale_init_value
        if not _number(value):
            raise ValueError(f"logit_scale_init_value={value!r} must be a number, finite (CLIP: 2.6592 = "
                             "log(1 / 0.07)).")
        check_initializer_range(config)
        check_bool_fields(config, TRANSFORMERS_BOOL_FIELDS, optional=True)
