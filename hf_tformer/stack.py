"""Embeddings (positions, token types, norm) + N blocks + the final norm of pre-norm stacks.

The encoder is a stack without a causal mask, the decoder a stack with one, and the encoder-decoder's decoder adds
cross attention to its blocks. Masks and rotary tables are built here once per forward and shared by all blocks.

`cache_position` reaches the stack through the models' **kwargs: transformers 4.57's generate() passes it (its
StaticCache needs it), 5.x no longer does and warns about remote code whose forward names it.
"""

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

from .block import TformerBlock
from .embeddings import TformerEmbeddings
from .input_checks import check_forward_kwargs, check_learned_positions
from .masks import (
    cached_key_span,
    check_padding_mask,
    cross_attention_mask,
    packed_sequence_ids,
    self_attention_mask,
    static_cache_capacity,
    validating_inputs,
)
from .norms import build_norm
from .positions import RelativePositionBias, local_heads, rotary_cos_sin


def _no_padding(attention_mask: Optional[torch.Tensor]) -> bool:
    """A (batch, keys) 0/1 mask with no zero says nothing a missing mask does not: dropping it lets SDPA and flash
    attention use their fast kernels, as transformers' own models do. Reads the mask (a device sync)."""
    return attention_mask is not None and attention_mask.dim() == 2 and bool(attention_mask.all())


@dataclass
class TformerStackOutput(BaseModelOutputWithPastAndCrossAttentions):
    """Adds the router logits of the sparse MoE layers, (batch * seq, num_experts) each, when asked for."""

    router_logits: Optional[tuple[torch.Tensor, ...]] = None


class TformerStack(nn.Module):
    def __init__(
        self, config, num_layers: int, *, is_causal: bool, has_cross_attention: bool = False, final_norm: bool = True,
        position_embedding_type: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.is_causal = is_causal
        # position_embedding_type="none" over a config with positions: a front end adds this stack's positions
        # (Whisper's audio encoder) while the other stack of the model uses the config's (its decoder's table).
        self.position_embedding_type = position_embedding_type or config.position_embedding_type
        self.embeddings = TformerEmbeddings(config, self.position_embedding_type)
        self.layers = nn.ModuleList(
            TformerBlock(config, index, is_causal=is_causal, has_cross_attention=has_cross_attention)
            for index in range(num_layers)
        )
        # final_norm=False: a pre-norm stack whose model norms only what it pools (CLIP's image tower).
        self.final_norm = build_norm(config) if config.norm_placement == "pre" and final_norm else None
        if self.position_embedding_type == "relative":
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

    def _layer_masks(
        self, full_mask, attention_mask: Optional[torch.Tensor], past_key_values: Optional[Cache], kv_length: int,
        mask_inputs: dict,
    ) -> list:
        """Each block's self-attention mask: `full_mask` for full layers, a banded one (over the keys its cache
        layer still holds) for sliding-window layers; each distinct mask is built once."""
        masks, built = [], {}
        for index, block in enumerate(self.layers):
            window = block.self_attn.sliding_window
            if window is None:
                masks.append(full_mask)
                continue
            span = cached_key_span(past_key_values, index, kv_length)
            if (window, span) not in built:
                built[window, span] = self_attention_mask(
                    attention_mask, kv_length=span[0], kv_offset=span[1], sliding_window=window, **mask_inputs
                )
            masks.append(built[window, span])
        return masks

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
        output_router_logits: bool = False,
        **kwargs: Any,
    ) -> TformerStackOutput:
        batch_size, query_length = inputs_embeds.shape[:2]
        kv_length, cache_position = self._positions(
            batch_size, query_length, past_key_values, cache_position, inputs_embeds.device
        )
        # unsupported or unknown keyword arguments, positions past a learned table: input_checks.py
        check_forward_kwargs(kwargs, self.config._attn_implementation, unused_encoder_states=(
            encoder_hidden_states is not None and not hasattr(self.layers[0], "cross_attn")))
        if self.position_embedding_type == "learned":
            check_learned_positions(position_ids, kv_length, self.config.max_position_embeddings)
        static = static_cache_capacity(past_key_values) is not None
        if attention_mask is not None and attention_mask.dim() != 4 and not static:  # 4-D: masks.custom_attention_mask
            check_padding_mask(attention_mask, batch_size, kv_length, "attention_mask")
        not_tracing = validating_inputs()  # under tracing / compiling the graph must not depend on mask values
        if not_tracing and not static and _no_padding(attention_mask):
            attention_mask = None
        sequence_ids = None
        if self.is_causal and position_ids is not None and attention_mask is None and not static and (
            kv_length == query_length
        ):  # given positions, no mask, nothing cached before: rows may pack several sequences (masks.py)
            sequence_ids = packed_sequence_ids(position_ids, batch_size)
        if position_ids is None:
            position_ids = cache_position.unsqueeze(0)  # (1, query)

        hidden_states = self.embeddings(inputs_embeds, position_ids, token_type_ids)
        position_embeddings = None
        if self.position_embedding_type == "rotary":
            position_embeddings = rotary_cos_sin(
                position_ids, self.config.rotary_dim, self.config.rotary_base, hidden_states.dtype
            )
        implementation = "eager" if output_attentions else self.config._attn_implementation
        relative = hasattr(self, "relative_position_bias")
        # Over a dynamic cache, "no mask" (+ the kernel's own causality) is exact when nothing is cached before the
        # queries (a prefill) or when one new token attends to every cached key (a decoding step): SDPA and flash
        # keep their fast kernels and no mask is built. Not under tracing, where the graph must serve any length.
        causal_without_mask = not_tracing and not static and (kv_length == query_length or query_length == 1)
        mask_inputs = dict(
            batch_size=batch_size,
            query_length=query_length,
            cache_position=cache_position,
            is_causal=self.is_causal,
            dtype=hidden_states.dtype,
            attn_implementation=implementation,
            force_explicit=relative or (past_key_values is not None and not causal_without_mask),
            sequence_ids=sequence_ids,
        )
        self_mask = None  # the full-attention layers' mask; not built when every layer slides
        if any(block.self_attn.sliding_window is None for block in self.layers):
            self_mask = self_attention_mask(attention_mask, kv_length=kv_length, **mask_inputs)
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
                if not_tracing and _no_padding(encoder_attention_mask):
                    encoder_attention_mask = None
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
        all_router_logits = () if output_router_logits else None
        layer_masks = self._layer_masks(self_mask, attention_mask, past_key_values, kv_length, mask_inputs)
        for block, layer_mask in zip(self.layers, layer_masks):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            # Tensors that may need gradients go positionally: reentrant gradient checkpointing
            # (GradientCheckpointingLayer) treats only positional arguments as the checkpoint's inputs, and would
            # backpropagate into the encoder's graph once per layer through a keyword one.
            hidden_states, self_weights, cross_weights, router_logits = block(
                hidden_states,
                layer_mask,
                encoder_hidden_states,
                cross_mask,
                position_embeddings=position_embeddings,
                past_key_values=past_key_values,
                cache_position=cache_position,
                **kwargs,
            )
            if output_attentions:
                all_self_attentions += (self_weights,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_weights,)
            if output_router_logits and router_logits is not None:
                all_router_logits += (router_logits,)
        if self.final_norm is not None:
            hidden_states = self.final_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return TformerStackOutput(
            last_hidden_state=hidden_states,
            past_key_values=past_key_values,
            hidden_states=all_hidden_states,
            attentions=all_self_attentions,
            cross_attentions=all_cross_attentions,
            router_logits=all_router_logits,
        )
