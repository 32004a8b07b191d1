"""Speech recognition (Whisper-shaped): the audio front end (audio.py) + the encoder stack, and the encoder-decoder's
causal decoder with cross attention, learned positions and the tied output projection.

The model is the text encoder-decoder with its encoder hook (`_build_encoder`) returning the audio encoder, so the
decoder, its self + cross KV caches and the generation head are the same code. Generation is transformers' own
Whisper generation (`WhisperGenerationMixin`: task / language tokens, timestamps, long-form), which needs only the
attributes it reads from a Whisper model: `model.encoder.conv1/conv2` (the input stride) and the config's
`max_source_positions`, `max_target_positions`, `decoder_layers`, `vocab_size`.
"""

from typing import Any, Optional, Union

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput, Seq2SeqModelOutput
from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

from .audio import TformerAudioFrontEnd, check_input_features
from .configuration_tformer_whisper import TformerWhisperConfig
from .modeling_tformer_encoder_decoder import (
    TformerEncoderDecoderForConditionalGeneration,
    TformerEncoderDecoderModel,
    TformerEncoderDecoderPreTrainedModel,
    run_encoder_stack,
)
from .pretrained import config_flag, declare_auto_classes
from .stack import TformerStack

# transformers (4.57) copies only the *direct* relative imports of a modeling file out of a local checkpoint
# folder, so every core module it needs transitively is imported here by name (tests/test_remote_code.py checks).
from .attention import TformerAttention  # noqa: F401
from .block import TformerBlock  # noqa: F401
from .config_checks import check_config  # noqa: F401
from .configuration_tformer import TformerConfig  # noqa: F401
from .embeddings import TformerEmbeddings  # noqa: F401
from .feed_forward import TformerFeedForward  # noqa: F401
from .input_checks import check_forward_kwargs  # noqa: F401
from .heads import lm_logits  # noqa: F401
from .linear import TformerLinear  # noqa: F401
from .masks import self_attention_mask  # noqa: F401
from .moe import TformerSparseMoe  # noqa: F401
from .norms import build_norm  # noqa: F401
from .pipeline_tformer_whisper import TformerSpeechRecognitionPipeline  # noqa: F401  (config.custom_pipelines)
from .positions import apply_rotary  # noqa: F401
from .tokenization_tformer import TformerTokenizerFast  # noqa: F401  (AutoTokenizer's fallback)


class TformerAudioEncoder(nn.Module):
    """The audio front end + the encoder stack (no positions of its own): what `get_encoder()` returns."""

    main_input_name = "input_features"

    def __init__(self, config: TformerWhisperConfig) -> None:
        super().__init__()
        self.config = config
        self.front_end = TformerAudioFrontEnd(config)
        self.stack = TformerStack(config, config.encoder_layers, is_causal=False, position_embedding_type="none")

    @property
    def conv1(self) -> nn.Conv1d:  # transformers' Whisper generation reads the input stride from these two
        return self.front_end.conv1

    @property
    def conv2(self) -> nn.Conv1d:
        return self.front_end.conv2

    def forward(
        self,
        input_features: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[BaseModelOutput, tuple]:
        """attention_mask is accepted and not used, as in Whisper: every frame is attended (padding is silence)."""
        check_input_features(input_features, self.config)
        return run_encoder_stack(
            self.stack, self.front_end(input_features), self.config, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=return_dict, **kwargs,
        )


class TformerWhisperPreTrainedModel(TformerEncoderDecoderPreTrainedModel):
    config_class = TformerWhisperConfig
    main_input_name = "input_features"
    _supports_static_cache = False  # static caches under Whisper's generation are untested: refused, not guessed
    # Checkpoints saved before the encoder's position table was stored have none: they load with Whisper's sinusoids
    # (what the front end computed then), filled in by _init_weights, instead of failing as a missing weight.
    _keys_to_ignore_on_load_missing = [r"encoder\.front_end\.position_embeddings$"]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, TformerAudioFrontEnd):
            module.reset_positions()


class TformerWhisperModel(TformerWhisperPreTrainedModel, TformerEncoderDecoderModel):
    def _build_encoder(self, config: TformerWhisperConfig) -> TformerAudioEncoder:
        return TformerAudioEncoder(config)

    def get_encoder(self) -> TformerAudioEncoder:
        return self.encoder

    def forward(
        self,
        input_features: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        decoder_input_ids: Optional[torch.LongTensor] = None,
        encoder_outputs: Optional[Union[BaseModelOutput, tuple]] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        **kwargs: Any,
    ) -> Union[Seq2SeqModelOutput, tuple]:
        """attention_mask (over frames) is accepted and not used, as in Whisper: cross attention sees every frame.
        The decoder's arguments (decoder_attention_mask, past_key_values, use_cache, ...) are the text model's."""
        output_attentions = config_flag(output_attentions, self.config, "output_attentions")
        output_hidden_states = config_flag(output_hidden_states, self.config, "output_hidden_states")
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_features, output_attentions=output_attentions,
                                           output_hidden_states=output_hidden_states, return_dict=True)
        return self._decode(encoder_outputs, decoder_input_ids=decoder_input_ids, output_attentions=output_attentions,
                            output_hidden_states=output_hidden_states, **kwargs)


class TformerWhisperForConditionalGeneration(
    TformerWhisperPreTrainedModel, WhisperGenerationMixin, TformerEncoderDecoderForConditionalGeneration
):
    """generate() is transformers' WhisperGenerationMixin.generate (which calls GenerationMixin.generate through
    our argument checks): forced language / task tokens, suppress_tokens, begin_suppress_tokens, timestamps and
    long-form decoding behave as for WhisperForConditionalGeneration."""

    base_model_class = TformerWhisperModel

    def forward(
        self,
        input_features: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        decoder_input_ids: Optional[torch.LongTensor] = None,
        decoder_attention_mask: Optional[torch.Tensor] = None,
        encoder_outputs: Optional[Union[BaseModelOutput, tuple]] = None,
        past_key_values: Optional[Any] = None,
        labels: Optional[torch.LongTensor] = None,
        logits_to_keep: Union[int, torch.Tensor] = 0,
        **kwargs: Any,
    ) -> Union[Seq2SeqLMOutput, tuple]:
        """The text model's head and loss over `input_features` (its other arguments pass through by name). The
        decoder's inputs are named, as in transformers' Whisper: exporters read the signature to match inputs."""
        return super().forward(input_features, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                               decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                               past_key_values=past_key_values, labels=labels, logits_to_keep=logits_to_keep,
                               **kwargs)


AUTO_CLASSES = {
    "AutoModel": TformerWhisperModel,
    "AutoModelForSpeechSeq2Seq": TformerWhisperForConditionalGeneration,
}
declare_auto_classes(TformerWhisperPreTrainedModel, TformerWhisperConfig, AUTO_CLASSES)
