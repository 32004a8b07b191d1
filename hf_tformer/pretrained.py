"""The PreTrainedModel base shared by all variants, and input handling every base model needs."""

from typing import Optional

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.cache_utils import EncoderDecoderCache

from .config_checks import check_token_id
from .input_checks import check_inputs_embeds, check_token_ids
from .linear import to_plain_linear
from .masks import static_cache_capacity

try:  # transformers 5: inits that leave weights already loaded from a checkpoint alone
    from transformers.initialization import constant_ as init_constant
    from transformers.initialization import copy_ as init_copy
    from transformers.initialization import normal_ as init_normal
except ImportError:  # transformers 4.57 skips loaded modules itself
    def init_normal(tensor: torch.Tensor, mean: float, std: float) -> None:
        tensor.data.normal_(mean=mean, std=std)

    def init_copy(tensor: torch.Tensor, other: torch.Tensor) -> None:
        tensor.data.copy_(other)

    def init_constant(tensor: torch.Tensor, value: float) -> None:
        tensor.data.fill_(value)


class TformerPreTrainedModel(PreTrainedModel):
    base_model_prefix = "model"
    # Each loss is a mean over its batch: Trainer then divides by the gradient-accumulation steps itself instead of
    # passing num_items_in_batch (which the models refuse, input_checks.py), as it does for any model taking **kwargs.
    accepts_loss_kwargs = False
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["TformerBlock"]
    _skip_keys_device_placement = ["past_key_values"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flash_attn_2 = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _supports_cache_class = True
    _supports_static_cache = True
    _can_compile_fullgraph = True
    # {"AutoModel": class, "AutoModelForX": class, ...} of the variant, set by `declare_auto_classes`.
    auto_classes: dict[str, type] = {}
    # Weights are initialised by PreTrainedModel._init_weights (Linear / Embedding normal(0, initializer_range),
    # norms to ones/zeros): our norm classes are nn.LayerNorm and TformerRMSNorm, which it recognises by name.

    def create_masks_for_generate(
        self, attention_mask: Optional[torch.Tensor] = None, past_key_values=None, **kwargs
    ) -> Optional[torch.Tensor]:
        """generate() pre-builds fixed-shape masks for static caches with this hook (so compiled steps do not
        recompile). Our stacks build every mask themselves (masks.py) from the 2D padding mask, so this only pads
        that mask with zeros to the cache's capacity: a fixed shape at every step."""
        capacity = static_cache_capacity(past_key_values)
        if attention_mask is None or attention_mask.dim() != 2 or capacity is None:
            return attention_mask
        return torch.nn.functional.pad(attention_mask, (0, capacity - attention_mask.shape[-1]))

    def to_plain_linear(self) -> "TformerPreTrainedModel":
        """Make every linear layer a plain `torch.nn.Linear` (in place; returns the model), for torch tools that match
        modules by exact class: `torch.ao.quantization.quantize_dynamic(model.to_plain_linear(), {torch.nn.Linear},
        dtype=torch.qint8)`. Without it quantize_dynamic skips our layers (an nn.Linear subclass) and changes nothing."""
        return to_plain_linear(self)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """transformers' loading, but a checkpoint missing backbone weights (or with extra ones) is an error, never a
        silent random init. Missing task-head weights stay a warning: that is how fine-tuning starts."""
        wants_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        missing = _backbone_keys(model, info.get("missing_keys", ()))
        unexpected = _backbone_keys(model, info.get("unexpected_keys", ()))
        if missing or unexpected:
            raise ValueError(
                f"The checkpoint does not match {cls.__name__}: missing weights {missing} (they would be randomly "
                f"initialised), unexpected weights {unexpected}. Check that config.json belongs to these weights."
            )
        return (model, info) if wants_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Also writes an `auto_map` entry for every auto class of the variant, not only the saved class's."""
        self.config.auto_map = {
            "AutoConfig": f"{type(self.config).__module__.rsplit('.', 1)[-1]}.{type(self.config).__name__}",
            **{name: f"{cls.__module__.rsplit('.', 1)[-1]}.{cls.__name__}" for name, cls in self.auto_classes.items()},
            # Reached only when the folder's tokenizer_config.json names no class: turns that into a clear error.
            "AutoTokenizer": [None, "tokenization_tformer.TformerTokenizerFast"],
        }
        return super().save_pretrained(save_directory, *args, **kwargs)


class TformerGenerationMixin(GenerationMixin):
    """transformers' generate(), with the arguments it would crash on (ZeroDivisionError, IndexError) checked first."""

    def generate(self, *args, **kwargs):
        config = kwargs.get("generation_config") or self.generation_config
        for name in ("num_beams", "num_return_sequences", "max_new_tokens", "num_beam_groups"):
            value = kwargs.get(name, getattr(config, name, None))
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        if self.config.is_encoder_decoder:  # else it would surface as "input_ids contains ..." from the decoder
            start = kwargs.get("decoder_start_token_id", getattr(config, "decoder_start_token_id", None))
            start = start.tolist() if isinstance(start, torch.Tensor) else start  # one id, or one per row
            for token in start if isinstance(start, list) else [start]:
                check_token_id("decoder_start_token_id", token, self.config.vocab_size)
        return super().generate(*args, **kwargs)

    def prepare_inputs_for_generation(self, *args, **kwargs) -> dict:
        """transformers' inputs for the next step, with a static cache allocated before the step runs (eagerly)."""
        inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        batch = next((inputs[name] for name in ("input_ids", "inputs_embeds", "decoder_input_ids",
                                                "decoder_inputs_embeds") if inputs.get(name) is not None), None)
        if batch is not None:
            allocate_static_cache(self, inputs.get("past_key_values"), batch.shape[0])
        return inputs


def allocate_static_cache(model: PreTrainedModel, past_key_values, batch_size: int) -> None:
    """Allocate the layers of a static cache (self- and cross-attention) now, if none is allocated yet.

    transformers allocates them lazily at the first `update`, which under `torch.compile(model.forward)` happens
    inside the compiled prefill: its graph then holds a guard `layers[0].is_initialized == False`. 4.57's generate()
    keeps its static cache for the next call (reset, still allocated), so that call's prefill failed the guard and
    compiled again (native Llama too). Allocated here, before the first compiled call, every call sees one state.
    Left lazy where the layers' heads, dtype or device are not the model's own: tensor parallel (heads per rank),
    autocast (another dtype), layers spread over several devices."""
    if isinstance(past_key_values, EncoderDecoderCache):
        caches = [past_key_values.self_attention_cache, past_key_values.cross_attention_cache]
    else:
        caches = [past_key_values]
    device = model.device
    if ((getattr(model, "_tp_size", None) or 1) > 1 or device.type == "meta" or torch.is_autocast_enabled(device.type)
            or len(set(getattr(model, "hf_device_map", {}).values())) > 1):
        return
    config = model.config
    for cache in caches:
        layers = getattr(cache, "layers", None)
        if not layers or any(not getattr(layer, "is_compileable", False) or getattr(layer, "is_sliding", False)
                             or layer.is_initialized for layer in layers):
            continue
        cache.early_initialization(batch_size=batch_size, num_heads=config.num_key_value_heads,
                                   head_dim=config.head_dim, dtype=model.get_input_embeddings().weight.dtype,
                                   device=device)


def _backbone_keys(model: PreTrainedModel, keys) -> list[str]:
    """The keys that name weights of the base model (as opposed to a task head's)."""
    base = model.base_model
    prefix = f"{model.base_model_prefix}."
    # A base model's own optional heads (ViT's pooler) are task heads too: missing, they are a warning.
    children = {name for name, _ in base.named_children()} - set(getattr(base, "optional_head_modules", ()))
    backbone = []
    for key in sorted(keys):
        name = key[len(prefix):] if base is not model and key.startswith(prefix) else key
        if name.split(".")[0] in children:
            backbone.append(key)
    return backbone


def declare_auto_classes(base: type, config_class: type, auto_classes: dict[str, type]) -> None:
    """Mark the variant's classes for `save_pretrained` to copy their code next to the weights (remote code)."""
    config_class.register_for_auto_class("AutoConfig")
    for name, cls in auto_classes.items():
        cls.register_for_auto_class(name)
    base.auto_classes = dict(auto_classes)


def embed_input_ids(
    embed_tokens: nn.Embedding, input_ids: Optional[torch.Tensor], inputs_embeds: Optional[torch.Tensor],
    prefix: str = "",
) -> torch.Tensor:
    """Exactly one of input_ids / inputs_embeds -> (batch, seq, hidden), checked (input_checks.py): float or empty
    ids, ids outside the vocabulary and embeddings of the wrong width raise. `prefix` names the inputs in errors
    ("decoder_": decoder_input_ids / decoder_inputs_embeds)."""
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError(f"Pass exactly one of {prefix}input_ids or {prefix}inputs_embeds.")
    if inputs_embeds is not None:
        check_inputs_embeds(inputs_embeds, embed_tokens.embedding_dim, f"{prefix}inputs_embeds")
        return inputs_embeds
    check_token_ids(input_ids, embed_tokens.num_embeddings, f"{prefix}input_ids")
    return embed_tokens(input_ids)


def make_token_embedding(config) -> nn.Embedding:
    return nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)


def config_flag(value: Optional[bool], config, name: str) -> bool:
    """An explicit forward argument wins over the config's default (`output_attentions`, `return_dict`, ...)."""
    return bool(value if value is not None else getattr(config, name, False))
