"""Configuration of the speech encoder-decoder (Whisper-shaped): the encoder-decoder's fields plus the audio front end.

Kept apart from configuration_tformer.py: transformers parses the module `auto_map` names on every remote-code load.
"""

from typing import Any, Optional

from .config_checks import block_tp_plan
from .config_checks import check_config  # noqa: F401  (transformers 4.57 copies only direct relative imports)
from .configuration_tformer import TformerEncoderDecoderConfig

# Makes transformers' pipeline("automatic-speech-recognition") run Whisper's pre/post-processing for this model (it
# keys that on model_type == "whisper"): config.json names our subclass of the stock pipeline, which every save of the
# config (the model's, optimum's ONNX export, optimum-cli) copies next to it (see speech_recognition_pipeline_class).
CUSTOM_PIPELINES = {
    "automatic-speech-recognition": {
        "impl": "pipeline_tformer_whisper.TformerSpeechRecognitionPipeline",
        "pt": ["AutoModelForSpeechSeq2Seq"],
        "type": "multimodal",
    }
}


def speech_recognition_pipeline_class() -> type:
    """The pipeline class config.json's custom_pipelines names. Imported here, lazily, because transformers copies
    a config module's relative imports with it when it saves the config: the pipeline code travels with every
    config.json that names it, at no import cost when the config is loaded."""
    from .pipeline_tformer_whisper import TformerSpeechRecognitionPipeline

    return TformerSpeechRecognitionPipeline


class TformerWhisperConfig(TformerEncoderDecoderConfig):
    """A speech-to-text encoder-decoder over the shared stacks (whisper-tiny's shape by default).

    Args:
        num_mel_bins: log-mel channels of `input_features` (the feature extractor's `feature_size`: 80, or 128).
        max_source_positions: encoder positions, i.e. frames after the stride-2 convolution; the encoder takes at
            most `2 * max_source_positions` input frames (1500 -> 3000 frames, 30 s at a hop of 10 ms).
        max_target_positions: decoder positions (the learned table); prompt + generated tokens must fit.
        median_filter_width: read by transformers' Whisper generation for word-level timestamps.
    The encoder's positions are a frozen (max_source_positions, hidden_size) table added by the audio front end (its
    stack adds none): the checkpoint's own, or Whisper's sinusoids where none is stored; the decoder learns
    `max_target_positions` positions. Pre-LayerNorm, gelu, one token table tied to the output
    projection. Every other field is the shared core's (see TformerConfig).
    """

    model_type = "hf_tformer_whisper"
    attribute_map = {**TformerEncoderDecoderConfig.attribute_map, "max_target_positions": "max_position_embeddings",
                     "d_model": "hidden_size"}
    # the audio encoder's blocks sit in its `stack` (modeling_tformer_whisper.TformerAudioEncoder)
    base_model_tp_plan = {**block_tp_plan("encoder.stack"), **block_tp_plan("decoder", cross_attention=True)}

    def __init__(
        self,
        vocab_size: int = 51865,
        num_mel_bins: int = 80,
        max_source_positions: int = 1500,
        max_target_positions: int = 448,
        encoder_layers: int = 4,
        decoder_layers: int = 4,
        hidden_size: int = 384,
        num_attention_heads: int = 6,
        intermediate_size: int = 1536,
        hidden_act: str = "gelu",
        pad_token_id: Optional[int] = 50257,
        bos_token_id: Optional[int] = 50257,
        eos_token_id: Optional[int] = 50257,
        decoder_start_token_id: Optional[int] = 50258,
        median_filter_width: int = 7,
        **kwargs: Any,
    ) -> None:
        self.num_mel_bins = num_mel_bins
        self.max_source_positions = max_source_positions
        self.median_filter_width = median_filter_width
        # config.json stores the decoder's positions as max_position_embeddings (read back through attribute_map)
        kwargs["max_position_embeddings"] = kwargs.get("max_position_embeddings", max_target_positions)
        kwargs.setdefault("custom_pipelines", CUSTOM_PIPELINES)
        for field, value in (("position_embedding_type", "learned"), ("norm_placement", "pre"),
                             ("scale_embeddings", False), ("layer_norm_eps", 1e-5), ("hidden_dropout", 0.0),
                             ("attention_dropout", 0.0), ("tie_word_embeddings", True)):
            kwargs.setdefault(field, value)
        super().__init__(
            vocab_size=vocab_size,
            encoder_layers=encoder_layers,
            decoder_layers=decoder_layers,
            hidden_size=hidden_size,
            num_attention_heads=num_attention_heads,
            intermediate_size=intermediate_size,
            hidden_act=hidden_act,
            pad_token_id=pad_token_id,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            decoder_start_token_id=decoder_start_token_id,
            **kwargs,
        )

    def validate_tformer(self) -> None:
        super().validate_tformer()
        for name in ("num_mel_bins", "max_source_positions", "median_filter_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        if self.position_embedding_type != "learned":
            raise ValueError(f"position_embedding_type={self.position_embedding_type!r}: the speech decoder learns its "
                             "positions ('learned'); the encoder's fixed sinusoids come from the audio front end.")
        if self.hidden_size % 2 or self.hidden_size < 4:
            raise ValueError(f"hidden_size={self.hidden_size} must be even and >= 4: the encoder's sinusoids use "
                             "hidden_size / 2 frequencies (sin and cos).")
