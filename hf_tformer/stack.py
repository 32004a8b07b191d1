"""Embeddings (positions, token types, norm) + N blocks + the final norm of pre-norm stacks.

The encoder is a stack without a causal mask, the decoder a stack with one, and the encoder-decoder's decoder adds
cross attention to its blocks. Masks and rotary tables are built here once per forward and shared by all blocks.

`cache_position` reaches the stack through the models' **kwargs: transformers 4.57's generate() passes it (its
StaticCache needs it), 5.x no longer does and warns about remote code whose forward names it.
"""

from typing import Any, Optional

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

from .block import TformerBlock
from .embeddings import TformerEmbeddings
from .masks import (
    check_padding_mask,
    cross_attention_mask,
    self_attention_mask,
    static_cache_capacity,
    validating_inputs,
)
from .norms import build_norm
from .positions import RelativePositionBias, local_heads, rotary_cos_sin


class TformerStack(nn.Module):
    def __init__(self, config, num_layers: int, *, is_causal: bool, has_cross_attention: bool = False) -> None:
        super().__init__()
        self.config = config
        self.is_causal = is_causal
        self.embeddings = TformerEmbeddings(config)
        self.layers = nn.ModuleList(
            TformerBlock(config, index, is_causal=is_causal, has_cross_attention=has_cross_attention)
            for index in range(num_layers)
        )
        self.final_norm = build_norm(config) if config.norm_placement == "pre" else None
        if config.position_embedding_type == "relative":
            self.relative_position_bias = RelativePositionBias(config, bidirectional=not is_causal)

    def _positions(
        self, batch_size: int, query_length: int, past_key_values: Optional[Cache], cache_position, device
    ) -> tuple[int, torch.Tensor]:
        """(number of key slots, cache_position of shape (query,))."""
        capacity = static_cache_capacity(past_key_values)
        if capacity is not None:
            if cache_position is None:
                cache_position = torch.arange(query_length, device=device) + past_key_values.get_seq_length()
            return capacity, cache_position
        past_length = past_key_values.get_seq_length() if past_key_values is not None else 0
        if cache_position is None:
            cache_position = torch.arange(past_length, past_length + query_length, device=device)
        return past_length + query_length, cache_position

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        past_key_values: Optional[Cache] = None,
        cache_position: Optional[torch.Tensor] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **kwargs: Any,
    ) -> BaseModelOutputWithPastAndCrossAttentions:
        batch_size, query_length = inputs_embeds.shape[:2]
        kv_length, cache_position = self._positions(
            batch_size, query_length, past_key_values, cache_position, inputs_embeds.device
        )
        if self.config.position_embedding_type == "learned" and validating_inputs():
            # Given position_ids are what index the table: a packed row (vLLM flattens a batch into one row whose
            # positions restart per sequence) holds more tokens than any one sequence has positions.
            needed = kv_length
            if position_ids is not None and position_ids.numel():
                needed = int(position_ids.max()) + 1
            if needed > self.config.max_position_embeddings:
                raise ValueError(
                    f"{needed} positions are needed but max_position_embeddings="
                    f"{self.config.max_position_embeddings} with learned positions; shorten the input "
                    "(truncation=True) or use a model with more positions."
                )
        if attention_mask is not None and static_cache_capacity(past_key_values) is None:
            check_padding_mask(attention_mask, batch_size, kv_length, "attention_mask")
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)  # (1, query)

        hidden_states = self.embeddings(inputs_embeds, position_ids, token_type_ids)
        position_embeddings = None
        if self.config.position_embedding_type == "rotary":
            position_embeddings = rotary_cos_sin(
                position_ids, self.config.head_dim, self.config.rotary_base, hidden_states.dtype
            )
        implementation = "eager" if output_attentions else self.config._attn_implementation
        relative = hasattr(self, "relative_position_bias")
        self_mask = self_attention_mask(
            attention_mask,
            batch_size=batch_size,
            query_length=query_length,
            kv_length=kv_length,
            cache_position=cache_position,
            is_causal=self.is_causal,
            dtype=hidden_states.dtype,
            attn_implementation=implementation,
            force_explicit=past_key_values is not None or relative,
        )
        if relative:
            if not isinstance(self_mask, torch.Tensor) or self_mask.dim() != 4:
                raise ValueError(
                    f"position_embedding_type='relative' adds a bias to the attention scores, which "
                    f"attn_implementation={implementation!r} cannot take; use 'sdpa' or 'eager'."
                )
            bias = self.relative_position_bias(cache_position, kv_length, self_mask.dtype)  # (1, heads, query, key)
            bias = bias[:, local_heads(self.layers[0].self_attn.q_proj.weight, self.config.head_dim)]
            # (batch, 1, query, key) + (1, heads, query, key) -> (batch, heads, query, key)
            self_mask = self_mask + bias
        cross_mask = None
        if encoder_hidden_states is not None:
            if encoder_attention_mask is not None:
                check_padding_mask(
                    encoder_attention_mask, batch_size, encoder_hidden_states.shape[1], "encoder_attention_mask"
                )
            cross_mask = cross_attention_mask(
                encoder_attention_mask,
                query_length=query_length,
                dtype=hidden_states.dtype,
                attn_implementation=implementation,
            )
        if output_attentions:
            kwargs["output_attentions"] = True

        all_hidden_states = () if output_hidden_states else None
        all_self_attentions = () if output_attentions else None
        all_cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        for block in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, self_weights, cross_weights = block(
                hidden_states,
                self_mask,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=cross_mask,
                position_embeddings=position_embeddings,
                past_key_values=past_key_values,
                cache_position=cache_position,
                **kwargs,
            )
            if output_attentions:
                all_self_attentions += (self_weights,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_weights,)
        if self.final_norm is not None:
            hidden_states = self.final_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return BaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            past_key_values=past_key_values,
            hidden_states=all_hidden_states,
            attentions=all_self_attentions,
            cross_attentions=all_cross_attentions,
        )
