"""The encoder variant (BERT-like): a stack without a causal mask, and its task heads."""

from typing import Any, Optional, Union

import torch
from torch import nn
from transformers.modeling_outputs import (
    BaseModelOutput,
    MaskedLMOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

from .configuration_tformer import TformerEncoderConfig
from .heads import (
    MaskedLMHead,
    PooledClassificationHead,
    classifier_dropout,
    sequence_classification_loss,
    span_loss,
    token_loss,
)
from .linear import TformerLinear
from .pretrained import TformerPreTrainedModel, config_flag, declare_auto_classes, embed_input_ids, make_token_embedding
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
from .moe import TformerSparseMoe  # noqa: F401
from .norms import build_norm  # noqa: F401
from .positions import apply_rotary  # noqa: F401
from .tokenization_tformer import TformerTokenizerFast  # noqa: F401  (AutoTokenizer's fallback)


class TformerEncoderPreTrainedModel(TformerPreTrainedModel):
    config_class = TformerEncoderConfig


class TformerEncoderModel(TformerEncoderPreTrainedModel):
    def __init__(self, config: TformerEncoderConfig) -> None:
        super().__init__(config)
        self.embed_tokens = make_token_embedding(config)
        self.encoder = TformerStack(config, config.num_hidden_layers, is_causal=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embed_tokens = value

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.LongTensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[BaseModelOutput, tuple]:
        outputs = self.encoder(
            embed_input_ids(self.embed_tokens, input_ids, inputs_embeds),
            attention_mask=attention_mask,
            position_ids=position_ids,
            token_type_ids=token_type_ids,
            output_attentions=config_flag(output_attentions, self.config, "output_attentions"),
            output_hidden_states=config_flag(output_hidden_states, self.config, "output_hidden_states"),
            **kwargs,
        )
        output = BaseModelOutput(
            last_hidden_state=outputs.last_hidden_state,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerEncoderForMaskedLM(TformerEncoderPreTrainedModel):
    _tied_weights_keys = {"lm_head.decoder.weight": "model.embed_tokens.weight"}

    def __init__(self, config: TformerEncoderConfig) -> None:
        super().__init__(config)
        self.model = TformerEncoderModel(config)
        self.lm_head = MaskedLMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head.decoder = value

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, return_dict=None, **kwargs) -> MaskedLMOutput:
        outputs = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        logits = self.lm_head(outputs.last_hidden_state)
        loss = token_loss(logits, labels) if labels is not None else None
        output = MaskedLMOutput(loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions)
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerEncoderForSequenceClassification(TformerEncoderPreTrainedModel):
    def __init__(self, config: TformerEncoderConfig) -> None:
        super().__init__(config)
        self.model = TformerEncoderModel(config)
        self.classifier = PooledClassificationHead(config)
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        labels=None, return_dict=None, **kwargs
    ) -> SequenceClassifierOutput:
        outputs = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        logits = self.classifier(outputs.last_hidden_state)
        loss = sequence_classification_loss(logits, labels, self.config) if labels is not None else None
        output = SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerEncoderForTokenClassification(TformerEncoderPreTrainedModel):
    def __init__(self, config: TformerEncoderConfig) -> None:
        super().__init__(config)
        self.model = TformerEncoderModel(config)
        self.dropout = classifier_dropout(config)
        self.classifier = TformerLinear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
                labels=None, return_dict=None, **kwargs) -> TokenClassifierOutput:
        outputs = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = token_loss(logits, labels) if labels is not None else None
        output = TokenClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


class TformerEncoderForQuestionAnswering(TformerEncoderPreTrainedModel):
    def __init__(self, config: TformerEncoderConfig) -> None:
        super().__init__(config)
        self.model = TformerEncoderModel(config)
        self.qa_outputs = TformerLinear(config.hidden_size, 2)
        self.post_init()

    def forward(
        self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        start_positions=None, end_positions=None, return_dict=None, **kwargs
    ) -> QuestionAnsweringModelOutput:
        outputs = self.model(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                             position_ids=position_ids, inputs_embeds=inputs_embeds, return_dict=True, **kwargs)
        start_logits, end_logits = self.qa_outputs(outputs.last_hidden_state).unbind(-1)  # (batch, seq) each
        start_logits, end_logits = start_logits.contiguous(), end_logits.contiguous()
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        output = QuestionAnsweringModelOutput(
            loss=loss,
            start_logits=start_logits,
            end_logits=end_logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )
        return output if config_flag(return_dict, self.config, "return_dict") else output.to_tuple()


AUTO_CLASSES = {
    "AutoModel": TformerEncoderModel,
    "AutoModelForMaskedLM": TformerEncoderForMaskedLM,
    "AutoModelForSequenceClassification": TformerEncoderForSequenceClassification,
    "AutoModelForTokenClassification": TformerEncoderForTokenClassification,
    "AutoModelForQuestionAnswering": TformerEncoderForQuestionAnswering,
}
declare_auto_classes(TformerEncoderPreTrainedModel, TformerEncoderConfig, AUTO_CLASSES)
