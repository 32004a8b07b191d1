"""optimum ONNX configs for the hf_tformer model types (text and image), and their registration with optimum.

optimum only exports model types it knows. `register()` declares ours with its TasksManager (over optimum's own
bases, so dummy inputs, dynamic axes, past key/values naming and the decoder-with-past split are optimum's), and
teaches optimum's ORTModelForCausalLM / ORTModelForSeq2SeqLM the key/value head count of GQA/MQA checkpoints, which
they otherwise assume equals the query head count for model types they do not list. It also routes optimum's config
loading so that each export's config code is imported as its own module (config_code.py).
"""

from typing import Any

from optimum.exporters.onnx.config import (
    TextDecoderWithPositionIdsOnnxConfig,
    TextEncoderOnnxConfig,
    TextSeq2SeqOnnxConfig,
)
from optimum.exporters.onnx.model_configs import (
    CLIPOnnxConfig,
    CLIPTextOnnxConfig,
    CLIPVisionModelOnnxConfig,
    ViTOnnxConfig,
    WhisperOnnxConfig,
)
from optimum.exporters.tasks import TasksManager
from optimum.utils import (
    DEFAULT_DUMMY_SHAPES,
    DummyAudioInputGenerator,
    DummySeq2SeqDecoderTextInputGenerator,
    DummySeq2SeqPastKeyValuesGenerator,
    DummyTextInputGenerator,
    MistralDummyPastKeyValuesGenerator,
    NormalizedSeq2SeqConfig,
    NormalizedTextConfigWithGQA,
)

from .config_code import route_optimum_config_loading
from .tasks import (  # noqa: F401 (supported_tasks re-exported)
    DECODER,
    DEFAULT_OPSET,
    ENCODER,
    ENCODER_DECODER,
    CLIP,
    CLIP_TEXT,
    CLIP_VISION,
    TASKS,
    VISION,
    WHISPER,
    registered_tasks,
    supported_tasks,
)


class FitsLearnedPositions:
    """Dummy sequences short enough for the learned position table: optimum traces with 16 tokens (and 16 more of
    past), which a checkpoint with a smaller table (a tiny speech decoder: 16 positions) cannot embed."""

    def generate_dummy_inputs(self, framework: str = "pt", **kwargs: Any) -> dict:
        table = getattr(self._config, "max_position_embeddings", None)
        if getattr(self._config, "position_embedding_type", None) == "learned" and table:
            wanted = kwargs.get("sequence_length", DEFAULT_DUMMY_SHAPES["sequence_length"])
            kwargs["sequence_length"] = max(1, min(wanted, (table - 1) // 2))  # past + new tokens fit the table
        return super().generate_dummy_inputs(framework, **kwargs)


class TformerEncoderOnnxConfig(TextEncoderOnnxConfig):
    NORMALIZED_CONFIG_CLASS = NormalizedTextConfigWithGQA
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4

    @property
    def inputs(self) -> dict[str, dict[int, str]]:
        axes = {0: "batch_size", 1: "sequence_length"}
        inputs = {"input_ids": dict(axes), "attention_mask": dict(axes)}
        if getattr(self._config, "type_vocab_size", 0) > 0:
            inputs["token_type_ids"] = dict(axes)
        return inputs


class TformerDecoderOnnxConfig(FitsLearnedPositions, TextDecoderWithPositionIdsOnnxConfig):
    # Past key/values shaped (batch, num_key_value_heads, past, head_dim): GQA and MQA export as they run.
    DUMMY_INPUT_GENERATOR_CLASSES = (DummyTextInputGenerator, MistralDummyPastKeyValuesGenerator)
    DUMMY_PKV_GENERATOR_CLASS = MistralDummyPastKeyValuesGenerator
    NORMALIZED_CONFIG_CLASS = NormalizedTextConfigWithGQA
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4


class TformerSeq2SeqPastKeyValuesGenerator(DummySeq2SeqPastKeyValuesGenerator):
    """optimum's seq2seq generator sizes past key/values by query heads; ours follow num_key_value_heads."""

    def generate(self, input_name: str, framework: str = "pt", int_dtype: str = "int64", float_dtype: str = "fp32"):
        if input_name != "past_key_values":
            return super().generate(input_name, framework, int_dtype, float_dtype)
        config = self.normalized_config.config
        heads, head_dim = config.num_key_value_heads, config.hidden_size // config.num_attention_heads
        self_shape = (self.batch_size, heads, self.sequence_length, head_dim)
        cross_shape = (self.batch_size, heads, self.encoder_sequence_length, head_dim)
        return [
            tuple(self.random_float_tensor(shape, framework=framework, dtype=float_dtype)
                  for shape in (self_shape, self_shape, cross_shape, cross_shape))
            for _ in range(self.decoder_num_layers)
        ]


# Our encoder-decoders name layers per side and heads once (both sides have num_attention_heads).
_SEQ2SEQ_FIELDS = dict(encoder_num_layers="encoder_layers", decoder_num_layers="decoder_layers",
                       num_layers="decoder_layers", encoder_num_attention_heads="num_attention_heads",
                       decoder_num_attention_heads="num_attention_heads")


class TformerEncoderDecoderOnnxConfig(FitsLearnedPositions, TextSeq2SeqOnnxConfig):
    NORMALIZED_CONFIG_CLASS = NormalizedSeq2SeqConfig.with_args(**_SEQ2SEQ_FIELDS, allow_new=True)
    DUMMY_INPUT_GENERATOR_CLASSES = (
        DummyTextInputGenerator,
        DummySeq2SeqDecoderTextInputGenerator,
        TformerSeq2SeqPastKeyValuesGenerator,
    )
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4


class TformerViTOnnxConfig(ViTOnnxConfig):
    """optimum's ViT config as is (pixel_values with dynamic batch, channels, height and width; dummy images of
    the config's image_size and num_channels): our image encoder takes and returns what transformers' ViT does."""

    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4


class TformerCLIPOnnxConfig(CLIPOnnxConfig):
    """optimum's CLIP config as is: input_ids, pixel_values, attention_mask -> logits_per_image, logits_per_text,
    text_embeds, image_embeds, with dynamic text batch, image batch, sequence length and image size."""

    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4


def _with_projection(config) -> bool:
    """A tower saved with its projection (Tformer*WithProjection): it returns text_embeds / image_embeds."""
    return any(name.endswith("WithProjection") for name in (getattr(config, "architectures", None) or ()))


class TformerCLIPTextOnnxConfig(CLIPTextOnnxConfig):
    """optimum's clip-text config (input_ids only: CLIP's causal text tower never attends to right padding) ->
    last_hidden_state, pooler_output; a tower saved with its projection gives optimum's clip-text-with-projection
    outputs (text_embeds, last_hidden_state) instead."""

    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        if _with_projection(self._config):
            return {"text_embeds": {0: "batch_size"}, "last_hidden_state": {0: "batch_size", 1: "sequence_length"}}
        return super().outputs


class TformerCLIPVisionOnnxConfig(CLIPVisionModelOnnxConfig):
    """optimum's clip_vision_model config: pixel_values -> last_hidden_state, pooler_output; a tower saved with its
    projection gives image_embeds, last_hidden_state (optimum has no config of its own for that one)."""

    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4

    @property
    def outputs(self) -> dict[str, dict[int, str]]:
        if _with_projection(self._config):
            return {"image_embeds": {0: "batch_size"}, "last_hidden_state": {0: "batch_size"}}
        return super().outputs


class TformerAudioInputGenerator(DummyAudioInputGenerator):
    """Dummy log-mel windows as long as the encoder takes (2 * max_source_positions frames), not optimum's fixed
    3000: a checkpoint with shorter windows refuses more frames than its positions."""

    def __init__(self, task: str, normalized_config, **kwargs: Any) -> None:
        super().__init__(task, normalized_config, **kwargs)
        self.nb_max_frames = 2 * normalized_config.config.max_source_positions


class TformerWhisperOnnxConfig(FitsLearnedPositions, WhisperOnnxConfig):
    """optimum's Whisper config (encoder: input_features -> last_hidden_state; decoder: decoder_input_ids,
    encoder_hidden_states and past key/values -> logits and present key/values) over our field names, with past
    key/values sized by num_key_value_heads and dummy windows of the checkpoint's length."""

    NORMALIZED_CONFIG_CLASS = NormalizedSeq2SeqConfig.with_args(**_SEQ2SEQ_FIELDS, feature_size="num_mel_bins",
                                                                allow_new=True)
    DUMMY_INPUT_GENERATOR_CLASSES = (
        TformerAudioInputGenerator,
        DummySeq2SeqDecoderTextInputGenerator,
        TformerSeq2SeqPastKeyValuesGenerator,
    )
    DEFAULT_ONNX_OPSET = DEFAULT_OPSET
    ATOL_FOR_VALIDATION = 1e-4


ONNX_CONFIGS = {ENCODER: TformerEncoderOnnxConfig, DECODER: TformerDecoderOnnxConfig,
                ENCODER_DECODER: TformerEncoderDecoderOnnxConfig, VISION: TformerViTOnnxConfig,
                CLIP: TformerCLIPOnnxConfig, CLIP_TEXT: TformerCLIPTextOnnxConfig,
                CLIP_VISION: TformerCLIPVisionOnnxConfig, WHISPER: TformerWhisperOnnxConfig}

_registered = False


def register() -> None:
    """Make optimum know our model types (idempotent). Call before main_export or ORTModel*.from_pretrained."""
    global _registered
    if _registered:
        return
    for model_type, config_class in ONNX_CONFIGS.items():
        TasksManager.create_register("onnx", overwrite_existing=True)(model_type, *registered_tasks(model_type))(
            config_class)
    # optimum maps automatic-speech-recognition to AutoModelForSpeechSeq2Seq or AutoModelForCTC by looking the model
    # type up in their (native) mappings; a remote-code type is in neither. Its custom-class table decides instead.
    TasksManager._CUSTOM_CLASSES[("pt", WHISPER, "automatic-speech-recognition")] = (
        "transformers", "AutoModelForSpeechSeq2Seq")
    _teach_ort_models_kv_heads()
    _route_speech_models_to_whisper_generation()
    route_optimum_config_loading(tuple(TASKS))  # each export's config code in its own module (config_code.py)
    _registered = True


def _teach_ort_models_kv_heads() -> None:
    """ORTModelForCausalLM / ORTModelForSeq2SeqLM size the empty first-step cache by query heads unless the model
    type is one they list; for our GQA/MQA checkpoints that would feed ORT (batch, heads, 0, head_dim) where the
    graph wants (batch, kv_heads, 0, head_dim). Set the key/value head count after their own __init__."""
    from optimum.onnxruntime import ORTModelForCausalLM
    from optimum.onnxruntime.modeling_seq2seq import ORTDecoderForSeq2Seq

    def after_init(cls: type, attribute: str) -> None:
        original = cls.__init__
        if getattr(original, "_hf_tformer_patched", False):
            return

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            original(self, *args, **kwargs)
            config = self.config
            if getattr(config, "model_type", None) in TASKS and hasattr(config, "num_key_value_heads"):
                setattr(self, attribute, config.num_key_value_heads)
                self.embed_size_per_head = config.hidden_size // config.num_attention_heads

        __init__._hf_tformer_patched = True
        cls.__init__ = __init__

    after_init(ORTModelForCausalLM, "num_key_value_heads")
    after_init(ORTDecoderForSeq2Seq, "num_attention_heads")


def _route_speech_models_to_whisper_generation() -> None:
    """ORTModelForSpeechSeq2Seq hands model_type "whisper" to its ORTModelForWhisper (transformers' Whisper
    generate: task / language tokens, timestamps, long-form) and every other type to plain generate(), which knows
    none of Whisper's generation settings. Our speech model is generated exactly as Whisper: route it there too, to
    a subclass that refuses token-level timestamps clearly (runtime.speech_ort_class)."""
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq
    from optimum.onnxruntime.modeling_seq2seq import ORTModelForWhisper

    from .runtime import speech_ort_class

    original = ORTModelForSpeechSeq2Seq._from_pretrained.__func__
    if getattr(original, "_hf_tformer_patched", False):
        return

    def _from_pretrained(cls, model_id, config, **kwargs):
        if getattr(config, "model_type", None) == WHISPER and not issubclass(cls, ORTModelForWhisper):
            return speech_ort_class()._from_pretrained(model_id, config, **kwargs)
        return original(cls, model_id, config, **kwargs)

    _from_pretrained._hf_tformer_patched = True
    ORTModelForSpeechSeq2Seq._from_pretrained = classmethod(_from_pretrained)
