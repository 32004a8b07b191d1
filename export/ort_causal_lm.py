"""The decoder's export under transformers' generate(): greedy, sampling, beam search, left-padded batches,
streaming, all of GenerationMixin, with the key/value cache held in a transformers DynamicCache between steps.

The graph (graphs.CausalLMWithPast) takes past keys / values and returns them with the new tokens' appended
("present"); an export without past recomputes the whole sequence every step.
"""

from typing import Any, Optional

import torch
from transformers import GenerationMixin
from transformers.cache_utils import DynamicCache, DynamicLayer
from transformers.modeling_outputs import CausalLMOutputWithPast

from .graphs import cache_names
from .ort_model import TformerORTModel


def cached_tensors(cache: Optional[DynamicCache], layers: int, empty: torch.Size) -> list[torch.Tensor]:
    """(key, value) per layer from the cache; zero-length ones (`empty` shaped) where nothing is cached yet."""
    if cache is None or cache.get_seq_length() == 0:
        return [torch.zeros(empty)] * (2 * layers)
    return [tensor for layer in cache.layers[:layers] for tensor in (layer.keys, layer.values)]


def store_presents(cache: DynamicCache, presents: list[torch.Tensor], past_length: int) -> None:
    """Keep the new tokens' keys / values (the graph returns past + new) in the cache.

    A growing layer (DynamicLayer) that holds exactly the past takes the graph's tensors as they are: its update()
    would concatenate a copy of the whole past onto the new tokens, per layer and step (what optimum avoids by
    feeding the presents back). Anything else (the first step, other layer types, offloading) goes through update."""
    for index in range(len(presents) // 2):
        key, value = presents[2 * index], presents[2 * index + 1]
        layer = cache.layers[index] if index < len(cache.layers) else None
        if (past_length > 0 and type(layer) is DynamicLayer and layer.get_seq_length() == past_length
                and not getattr(cache, "offloading", False)):
            layer.keys, layer.values = key, value
        else:
            cache.update(key[:, :, past_length:], value[:, :, past_length:], index)


class TformerORTModelForCausalLM(TformerORTModel, GenerationMixin):
    main_input_name = "input_ids"
    _is_stateful = False

    def __init__(self, config: Any, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        # Read once: forward runs per generated token, and 5.x's config attribute lookups are not free.
        self._layers = config.num_hidden_layers
        self._kv_shape = (config.num_key_value_heads, config.head_dim)  # (heads, head_dim) of one layer's keys
        self._past_names = cache_names(self._layers, "past_key_values")
        self._present_names = cache_names(self._layers, "present")
        self._use_cache = bool(self.sessions) and self._past_names[0] in self.session.input_names

    @property
    def use_cache(self) -> bool:
        """Whether the graph takes past keys / values (exported for text-generation-with-past)."""
        return self._use_cache

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # forward creates a plain DynamicCache (full layers: the graph was traced with one) on the first step
        return False

    def can_generate(self) -> bool:
        return True

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                position_ids: Optional[torch.Tensor] = None, past_key_values: Optional[DynamicCache] = None,
                use_cache: Optional[bool] = None, **kwargs: Any) -> CausalLMOutputWithPast:
        batch, length = input_ids.shape
        # use_cache=False (generate(use_cache=False) passes it): no cache read or returned, as the PyTorch model
        # does; a returned cache would make generate() feed only the newest token to the next step.
        with_past = self._use_cache and use_cache is not False
        past_length = past_key_values.get_seq_length() if with_past and past_key_values is not None else 0
        if attention_mask is None:
            attention_mask = torch.ones(batch, past_length + length, dtype=torch.long)
        if position_ids is None:  # as the PyTorch model: the tokens' indices (generate() passes its own)
            position_ids = torch.arange(past_length, past_length + length).expand(batch, length)
        feed = {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids}
        if not self._use_cache:
            if attention_mask.shape[1] != length:
                raise ValueError(f"this export has no past keys / values (exported for text-generation), so it needs "
                                 f"the whole sequence: got {length} tokens for a mask of {attention_mask.shape[1]}. "
                                 "Generate with use_cache=False, or export for text-generation-with-past.")
            return CausalLMOutputWithPast(logits=self.session.run(feed)["logits"])
        empty = torch.Size((batch, self._kv_shape[0], 0, self._kv_shape[1]))  # (batch, kv heads, 0, head_dim)
        past = cached_tensors(past_key_values if past_length else None, self._layers, empty)
        feed.update(zip(self._past_names, past))
        outputs = self.session.run(feed)
        if not with_past:
            return CausalLMOutputWithPast(logits=outputs["logits"])
        cache = past_key_values if past_key_values is not None else DynamicCache()
        store_presents(cache, [outputs[name] for name in self._present_names], past_length)
        return CausalLMOutputWithPast(logits=outputs["logits"], past_key_values=cache)
