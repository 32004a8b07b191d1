"""The encoder-decoder variant (2017 Transformer / BART-like): an encoder stack, a causal decoder stack with cross
attention, one token-embedding table shared by both, and the conditional-generation head."""

from typing import Any, Optional, Union

import torch
from torch import nn
from transformers.cache_utils import Cache, DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput

from .configuration_tformer import TformerEncoderDecoderConfig
from .heads import lm_logits, token_loss
from .input_checks import check_class_labels
from .linear import TformerLinear
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
from .masks import self_attention_mask  # noqa: F401
from .moe import TformerSparseMoe  # noqa: F401
from .norms import build_norm  # noqa: F401
from .positions import apply_rotary  # noqa: F401
from .tokenization_tformer import TformerTokenizerFast  # noqa: F401  (AutoTokenizer's fallback)


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: Optional[int], decoder_start_token_id: int) -> torch.Tensor:
    """labels -> decoder inputs: prepend the start token, drop the last token, and replace -100 by the pad id."""
    if pad_token_id is None:
        raise ValueError("config.pad_token_id must be set to build decoder_input_ids from labels.")
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def run_encoder_stack(
    stack: TformerStack,
    inputs_embeds: torch.Tensor,
    config: TformerEncoderDecoderConfig,
    attention_mask: Optional[torch.Tensor] = None,
    output_attentions: Optional[bool] = None,
    output_hidden_states: Optional[bool] = None,
    return_dict: Optional[bool] = None,
    past_key_values: Optional[Cache] = None,
    **kwargs: Any,
) -> Union[BaseModelOutput, tuple]:
    """A front end's (batch, seq, hidden) through the encoder stack, as the encoder output generate() expects.

    past_key_values is the decoder's and is dropped: transformers 4.57's generate() hands the encoder every model
    kwarg not named decoder_* / use_cache, among them the cache of a generation being continued."""
    outputs = stack(
        inputs_embeds,
        attention_mask=attention_mask,
        output_attentions=config_flag(output_attentions, config, "output_attentions"),
        output_hidden_states=config_flag(output_hidden_states, config, "output_hidden_states"),
        **kwargs,
    )
    output = BaseModelOutput(
        last_hidden_state=outputs.last_hidden_state, hidden_states=outputs.hidden_states, attentions=outputs.attentions
    )
    return output if config_flag(return_dict, config, "return_dict") else output.to_tuple()


class TformerEncoderView(nn.Module):
    """What `get_encoder()` returns: the shared embeddings + the encoder stack, callable with input_ids.

    Built on demand over modules the model already owns, so the checkpoint holds each weight once.
    """

    main_input_name = "input_ids"

    def __init__(self, embed_tokens: nn.Embedding, stack: TformerStack, config: TformerEncoderDecoderConfig) -> None:
        super().__init__()
        self.embed_tokens = embed_tokens
        self.stack = stack
        self.config = config

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[BaseModelOutput, tuple]:
        return run_encoder_stack(
            self.stack, embed_input_ids(self.embed_tokens, input_ids, inputs_embeds), self.config,
            attention_mask=attention_mask, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=return_dict, **kwargs,
        )


class TformerEncoderDecoderPreTrainedModel(TformerPreTrainedModel):
    config_class = TformerEncoderDecoderConfig


class TformerEncoderDecoderModel(TformerEncoderDecoderPreTrainedModel):
    def __init__(self, config: TformerEncoderDecoderConfig) -> None:
        super().__init__(config)
        self.shared = make_token_embedding(config)
        self.encoder = self._build_encoder(config)
        self.decoder = TformerStack(config, config.decoder_layers, is_causal=True, has_cross_attention=True)
        self.post_init()

    def _build_encoder(self, config: TformerEncoderDecoderConfig) -> nn.Module:
        """The encoder front-end hook. Text: a stack fed by the shared token table (through `get_encoder()`'s view).
        Another modality returns its own front end + stack here and from `get_encoder()` (speech: the audio
        encoder of modeling_tformer_whisper.py), and calls `_decode` from its forward."""
        return TformerStack(config, config.encoder_layers, is_causal=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.shared

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.shared = value

    def get_encoder(self) -> TformerEncoderView:
        return TformerEncoderView(self.shared, self.encoder, self.config)

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        decoder_input_ids: Optional[torch.LongTensor] = None,
        decoder_attention_mask: Optional[torch.Tensor] = None,
        decoder_position_ids: Optional[torch.LongTensor] = None,
        encoder_outputs: Optional[Union[BaseModelOutput, tuple]] = None,
        past_key_values: Optional[Cache] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        decoder_inputs_embeds: Optional[torch.Tensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[Seq2SeqModelOutput, tuple]:
        output_attentions = config_flag(output_attentions, self.config, "output_attentions")
        output_hidden_states = config_flag(output_hidden_states, self.config, "output_hidden_states")
        if encoder_outputs is None:
            encoder_outputs = self.get_encoder()(
                input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
            )
        return self._decode(
            encoder_outputs, attention_mask, decoder_input_ids, decoder_attention_mask, decoder_position_ids,
            past_key_values, decoder_inputs_embeds, use_cache, output_attentions, output_hidden_states, return_dict,
            **kwargs,
        )

    def _decode(
        self,
        encoder_outputs: Union[BaseModelOutput, tuple],
        encoder_attention_mask: Optional[torch.Tensor] = None,
        decoder_input_ids: Optional[torch.LongTensor] = None,
        decoder_attention_mask: Optional[torch.Tensor] = None,
        decoder_position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[Cache] = None,
        decoder_inputs_embeds: Optional[torch.Tensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[Seq2SeqModelOutput, tuple]:
        """The decoder over given encoder outputs (cross attention masked by `encoder_attention_mask`)."""
        if not isinstance(encoder_outputs, BaseModelOutput):
            encoder_outputs = BaseModelOutput(*encoder_outputs)
        if decoder_input_ids is None and decoder_inputs_embeds is None:
            raise ValueError("Pass decoder_input_ids (or labels to the ForConditionalGeneration model).")
        if past_key_values is not None and not isinstance(past_key_values, EncoderDecoderCache):
            raise TypeError(
                f"past_key_values must be an EncoderDecoderCache, got {type(past_key_values).__name__}."
            )
        use_cache = config_flag(use_cache, self.config, "use_cache") and not (
            self.decoder.layers[0].gradient_checkpointing and self.training
        )
        if use_cache and past_key_values is None:
            past_key_values = EncoderDecoderCache(DynamicCache(), DynamicCache())
        decoder_outputs = self.decoder(
            embed_input_ids(self.shared, decoder_input_ids, decoder_inputs_embeds, "decoder_"),
            attention_mask=decoder_attention_mask,
            position_ids=decoder_position_ids,
            encoder_hidden_states=encoder_outputs.last_hidden_state,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values if use_cache else None,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        output = Seq2SeqModelOutput(
            last_hidden_state=decoder_outputs.last_hidden_state,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerEncoderDecoderForConditionalGeneration(TformerEncoderDecoderPreTrainedModel, TformerGenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.shared.weight"}
    base_model_class: type = TformerEncoderDecoderModel  # what `self.model` is (the speech model sets its own)
    # No vocabulary sharding of the tied head: transformers 5 vocab-shards only a base-model `embed_tokens`, not our
    # `shared` table, whose lookups would then miss the other ranks' rows; 4.57 has no style naming it either.

    def __init__(self, config: TformerEncoderDecoderConfig) -> None:
        super().__init__(config)
        self.model = self.base_model_class(config)
        self.lm_head = TformerLinear(config.hidden_size, config.vocab_size, bias=config.lm_head_bias)
        self.post_init()

    def get_encoder(self) -> TformerEncoderView:
        return self.model.get_encoder()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        check_class_labels(labels, self.config.vocab_size, labels.shape)  # before the shift makes them decoder inputs
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        decoder_input_ids: Optional[torch.LongTensor] = None,
        decoder_attention_mask: Optional[torch.Tensor] = None,
        encoder_outputs: Optional[Union[BaseModelOutput, tuple]] = None,
        past_key_values: Optional[Cache] = None,
        labels: Optional[torch.LongTensor] = None,
        logits_to_keep: Union[int, torch.Tensor] = 0,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[Seq2SeqLMOutput, tuple]:
        if labels is not None and decoder_input_ids is None and kwargs.get("decoder_inputs_embeds") is None:
            decoder_input_ids = self.prepare_decoder_input_ids_from_labels(labels)
        outputs = self.model(
            input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask,
            encoder_outputs=encoder_outputs,
            past_key_values=past_key_values,
            return_dict=True,
            **kwargs,
        )
        logits = lm_logits(self.lm_head, outputs.last_hidden_state, logits_to_keep, self.config)
        loss = token_loss(logits, labels) if labels is not None else None
        output = Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            decoder_hidden_states=outputs.decoder_hidden_states,
            decoder_attentions=outputs.decoder_attentions,
            cross_attentions=outputs.cross_attentions,
            encoder_last_hidden_state=outputs.encoder_last_hidden_state,
            encoder_hidden_states=outputs.encoder_hidden_states,
            encoder_attentions=outputs.encoder_attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


AUTO_CLASSES = {
    "AutoModel": TformerEncoderDecoderModel,
    "AutoModelForSeq2SeqLM": TformerEncoderDecoderForConditionalGeneration,
}
declare_auto_classes(TformerEncoderDecoderPreTrainedModel, TformerEncoderDecoderConfig, AUTO_CLASSES)
