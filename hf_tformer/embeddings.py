"""What turns token embeddings into the first hidden states: scaling, positions, token types, norm, dropout.

Token embedding tables are owned by the models (the encoder-decoder shares one between its two stacks), so a stack
receives `inputs_embeds` and adds everything position- and segment-dependent here.
"""

import math
from typing import Optional

import torch
from torch import nn

from .input_checks import check_not_empty, check_token_types
from .norms import build_norm
from .positions import sinusoidal_position_embeddings


class TformerEmbeddings(nn.Module):
    def __init__(self, config, position_embedding_type: Optional[str] = None) -> None:
        super().__init__()
        self.position_embedding_type = position_embedding_type or config.position_embedding_type
        self.max_positions = config.max_position_embeddings
        self.hidden_size = config.hidden_size
        self.scale = math.sqrt(config.hidden_size) if config.scale_embeddings else 1.0
        if self.position_embedding_type == "learned":
            self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.type_vocab_size = config.type_vocab_size
        if config.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.layernorm = build_norm(config) if config.embedding_layernorm else None
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        # (batch, seq, hidden) from a token table (checked there) or a front end (pixels, audio frames)
        check_not_empty(inputs_embeds, "the input to the stack", "(batch, seq, hidden)")
        hidden_states = inputs_embeds * self.scale if self.scale != 1.0 else inputs_embeds
        if self.position_embedding_type == "learned":
            hidden_states = hidden_states + self.position_embeddings(position_ids)
        elif self.position_embedding_type == "sinusoidal":
            hidden_states = hidden_states + sinusoidal_position_embeddings(
                position_ids, self.hidden_size, hidden_states.dtype
            )
        if token_type_ids is not None:
            check_token_types(token_type_ids, self.type_vocab_size)
        if hasattr(self, "token_type_embeddings"):
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(position_ids).expand(inputs_embeds.shape[:2])
            hidden_states = hidden_states + self.token_type_embeddings(token_type_ids)
        if self.layernorm is not None:
            hidden_states = self.layernorm(hidden_states)
        return self.dropout(hidden_states)
