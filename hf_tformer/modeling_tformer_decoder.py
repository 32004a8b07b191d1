"""The decoder variant (GPT-like): a causal stack with a KV cache, a language-modeling head and a classifier."""

from typing import Any, Optional, Union

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_outputs import (
    BaseModelOutputWithPast,
    CausalLMOutputWithPast,
    MoeCausalLMOutputWithPast,
    MoeModelOutputWithPast,
    SequenceClassifierOutputWithPast,
)

from .configuration_tformer import TformerDecoderConfig
from .heads import causal_lm_loss, last_token_index, lm_logits, sequence_classification_loss, token_loss
from .linear import TformerLinear
from .moe import load_balancing_loss
from .pretrained import (
    TformerGenerationMixin,
    TformerPreTrainedModel,
    config_flag,
    declare_auto_classes,
    embed_input_ids,
    make_token_embedding,
)
from .stack import TformerStack

# transformers (4.57) copies only the *direct* relative imports of a modeling file out of a local checkpoint
# folder, so every core module it needs transitively is imported here by name (tests/test_remote_code.py checks).
from .attention import TformerAttention  # noqa: F401
from .block import TformerBlock  # noqa: F401
from .config_checks import check_config  # noqa: F401
from .embeddings import TformerEmbeddings  # noqa: F401
from .feed_forward import TformerFeedForward  # noqa: F401
from .input_checks import check_forward_kwargs  # noqa: F401
from .masks import self_attention_mask  # noqa: F401
from .norms import build_norm  # noqa: F401
from .positions import apply_rotary  # noqa: F401
from .tokenization_tformer import TformerTokenizerFast  # noqa: F401  (AutoTokenizer's fallback)


class TformerDecoderPreTrainedModel(TformerPreTrainedModel):
    config_class = TformerDecoderConfig


class TformerDecoderModel(TformerDecoderPreTrainedModel):
    def __init__(self, config: TformerDecoderConfig) -> None:
        super().__init__(config)
        self.embed_tokens = make_token_embedding(config)
        self.decoder = TformerStack(config, config.num_hidden_layers, is_causal=True)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def get_decoder(self) -> "TformerDecoderModel":
        """A decoder-only model is its own decoder (as LlamaModel). transformers' default would return the
        `decoder` stack, which takes no input_ids: vLLM's Transformers backend compiles what this returns."""
        return self

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        output_router_logits: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[BaseModelOutputWithPast, MoeModelOutputWithPast, tuple]:
        inputs_embeds = embed_input_ids(self.embed_tokens, input_ids, inputs_embeds)
        if past_key_values is not None and not isinstance(past_key_values, Cache):
            raise TypeError(
                f"past_key_values must be a transformers Cache (e.g. DynamicCache), got {type(past_key_values).__name__}."
            )
        use_cache = config_flag(use_cache, self.config, "use_cache") and not (
            self.decoder.layers[0].gradient_checkpointing and self.training
        )
        if use_cache and past_key_values is None:
            # with the config, sliding-window layers get cache layers that keep only the last window - 1 keys
            past_key_values = DynamicCache(config=self.config)
        outputs = self.decoder(
            inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values if use_cache else None,
            output_attentions=config_flag(output_attentions, self.config, "output_attentions"),
            output_hidden_states=config_flag(output_hidden_states, self.config, "output_hidden_states"),
            output_router_logits=config_flag(output_router_logits, self.config, "output_router_logits"),
            **kwargs,
        )
        fields = dict(
            last_hidden_state=outputs.last_hidden_state,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        if self.config.num_experts:  # a sparse MoE model answers as transformers' MoE models do
            output = MoeModelOutputWithPast(**fields, router_logits=outputs.router_logits)
        else:
            output = BaseModelOutputWithPast(**fields)
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerDecoderForCausalLM(TformerDecoderPreTrainedModel, TformerGenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    # Vocabulary-sharded head, logits gathered on every rank (a style name both transformers 4.57 and 5.x know).
    _tp_plan = {"lm_head": "colwise_rep"}

    def __init__(self, config: TformerDecoderConfig) -> None:
        super().__init__(config)
        self.model = TformerDecoderModel(config)
        self.lm_head = TformerLinear(config.hidden_size, config.vocab_size, bias=config.lm_head_bias)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        logits_to_keep: Union[int, torch.Tensor] = 0,
        output_router_logits: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        shift_labels: Optional[torch.LongTensor] = None,
        **kwargs: Any,
    ) -> Union[CausalLMOutputWithPast, MoeCausalLMOutputWithPast, tuple]:
        """shift_labels: targets already aligned with the logits (position t predicts shift_labels[t]), as
        sequence / context-parallel training hands them (the shift must happen before the sequence is sharded);
        they take the place of `labels`."""
        output_router_logits = config_flag(output_router_logits, self.config, "output_router_logits")
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_router_logits=output_router_logits,
            return_dict=True,
            **kwargs,
        )
        # generate() asks for the last position only: skip the vocabulary projection of the rest.
        logits = lm_logits(self.lm_head, outputs.last_hidden_state, logits_to_keep, self.config)
        loss = None
        if shift_labels is not None:
            loss = token_loss(logits, shift_labels)
        elif labels is not None:
            loss = causal_lm_loss(logits, labels)
        fields = dict(
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        if not self.config.num_experts:
            output = CausalLMOutputWithPast(loss=loss, **fields)
        else:
            aux_loss = None
            if output_router_logits and outputs.router_logits:
                aux_loss = load_balancing_loss(outputs.router_logits, self.config.num_experts,
                                               self.config.num_experts_per_tok, attention_mask)
                if loss is not None:
                    loss = loss + self.config.router_aux_loss_coef * aux_loss.to(loss.device)
            output = MoeCausalLMOutputWithPast(loss=loss, aux_loss=aux_loss, router_logits=outputs.router_logits,
                                               **fields)
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerDecoderForSequenceClassification(TformerDecoderPreTrainedModel):
    """Classifies from the last real token of each row (left or right padding)."""

    def __init__(self, config: TformerDecoderConfig) -> None:
        super().__init__(config)
        self.model = TformerDecoderModel(config)
        self.score = TformerLinear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, labels=None,
        return_dict=None, **kwargs
    ) -> Union[SequenceClassifierOutputWithPast, tuple]:
        kwargs.setdefault("use_cache", False)
        outputs = self.model(input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        hidden_states = outputs.last_hidden_state
        last = last_token_index(input_ids, attention_mask, self.config.pad_token_id, hidden_states.shape[1])
        rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
        logits = self.score(hidden_states[rows, last.to(hidden_states.device)])  # (batch, num_labels)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        output = SequenceClassifierOutputWithPast(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


AUTO_CLASSES = {
    "AutoModel": TformerDecoderModel,
    "AutoModelForCausalLM": TformerDecoderForCausalLM,
    "AutoModelForSequenceClassification": TformerDecoderForSequenceClassification,
}
declare_auto_classes(TformerDecoderPreTrainedModel, TformerDecoderConfig, AUTO_CLASSES)
