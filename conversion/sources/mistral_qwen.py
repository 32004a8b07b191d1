"""Mistral, Qwen2 and Qwen3 -> decoder: Llama's layout and key names, plus sliding-window attention (Mistral: every
layer; Qwen: the layers `layer_types` marks), Qwen2's q/k/v biases without an output bias and Qwen3's QK-norm."""

from typing import Optional

import hf_tformer as ht

from .base import Source
from .llama import _llama_config, _llama_native, _llama_rules

_SLIDING = "sliding_attention"


def _qwen_layers(config: dict) -> tuple[Optional[int], Optional[list[str]]]:
    """(sliding_window, layer_types) in our canonical form: None for all-full, layer_types None for all-sliding."""
    window = config.get("sliding_window") if config.get("use_sliding_window") else None
    if window is None:
        return None, None
    layer_types = config.get("layer_types") or [
        _SLIDING if index >= config.get("max_window_layers", 0) else "full_attention"
        for index in range(config["num_hidden_layers"])
    ]
    if _SLIDING not in layer_types:
        return None, None
    return window, None if set(layer_types) == {_SLIDING} else list(layer_types)


def _qwen_native_layers(config: ht.TformerConfig) -> dict:
    if config.sliding_window is None:
        return dict(use_sliding_window=False, sliding_window=None, max_window_layers=config.num_hidden_layers)
    layer_types = [config.layer_type(index) for index in range(config.num_hidden_layers)]
    return dict(use_sliding_window=True, sliding_window=config.sliding_window, layer_types=layer_types,
                max_window_layers=layer_types.index(_SLIDING))


def _mistral_config(config: dict) -> ht.TformerDecoderConfig:
    return _llama_config(config, "Mistral", sliding_window=config.get("sliding_window"))


def _mistral_native(config: ht.TformerConfig) -> dict:
    if config.layer_types is not None:
        raise ValueError(f"layer_types={config.layer_types}: Mistral slides the window over every layer or none; "
                         "convert to qwen2 for a per-layer choice.")
    return dict(_llama_native(config), sliding_window=config.sliding_window)


def _qwen2_config(config: dict) -> ht.TformerDecoderConfig:
    window, layer_types = _qwen_layers(config)
    return _llama_config(config, "Qwen2", sliding_window=window, layer_types=layer_types, attention_bias=True,
                         attention_out_bias=False)


def _qwen2_native(config: ht.TformerConfig) -> dict:
    if not config.attention_bias or config.attention_out_bias:
        raise ValueError(f"attention_bias={config.attention_bias}, attention_out_bias={config.attention_out_bias}: "
                         "Qwen2 has biases on q/k/v and none on the output projection.")
    native = _llama_native(config)
    for name in ("attention_bias", "mlp_bias"):
        native.pop(name)
    return dict(native, **_qwen_native_layers(config))


def _qwen3_config(config: dict) -> ht.TformerDecoderConfig:
    window, layer_types = _qwen_layers(config)
    return _llama_config(config, "Qwen3", sliding_window=window, layer_types=layer_types, qk_norm=True)


def _qwen3_native(config: ht.TformerConfig) -> dict:
    return dict(_llama_native(config), head_dim=config.head_dim, **_qwen_native_layers(config))


def _classes(prefix: str) -> dict:
    return {
        f"{prefix}Model": (f"{prefix}Model", ht.TformerDecoderModel),
        f"{prefix}ForCausalLM": (f"{prefix}ForCausalLM", ht.TformerDecoderForCausalLM),
        f"{prefix}ForSequenceClassification": (f"{prefix}ForSequenceClassification",
                                               ht.TformerDecoderForSequenceClassification),
    }


MISTRAL = Source(model_types=("mistral",), classes=_classes("Mistral"), translate_config=_mistral_config,
                 native_config=_mistral_native, rules=_llama_rules)
QWEN2 = Source(model_types=("qwen2",), classes=_classes("Qwen2"), translate_config=_qwen2_config,
               native_config=_qwen2_native, rules=_llama_rules)
QWEN3 = Source(model_types=("qwen3",), classes=_classes("Qwen3"), translate_config=_qwen3_config,
               native_config=_qwen3_native, rules=_llama_rules)
