"""The encoder-decoder exports under transformers' generate(): text (hf_tformer_encoder_decoder) with
GenerationMixin, speech (hf_tformer_whisper) with transformers' WhisperGenerationMixin, as our PyTorch Whisper runs it
(task / language tokens, segment timestamps, long-form), so the automatic-speech-recognition pipeline runs on it too.

The graphs (graphs._seq2seq): encoder_model.onnx once per input; decoder_model.onnx on the first step, which returns
every layer's self and cross keys / values; decoder_with_past_model.onnx on every later step, which reads both and
returns the self keys / values with the new token's appended. Between steps they live in a transformers
EncoderDecoderCache (self: grows; cross: filled once, marked updated), so beam search reorders them as it reorders a
PyTorch model's. An export without the with-past graph runs decoder_model.onnx over the whole sequence every step.
"""

from types import SimpleNamespace
from typing import Any, Optional

import torch
from torch import nn
from transformers import GenerationMixin
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

from .graphs import cache_names
from .ort_causal_lm import store_presents
from .ort_model import OrtSession, TformerORTModel
from .runtime import TOKEN_TIMESTAMPS_REFUSED

ENCODER_FILE, DECODER_FILE, DECODER_WITH_PAST_FILE = (
    "encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx")


class OrtEncoder(nn.Module):
    """encoder_model.onnx as what get_encoder() returns. generate() calls it with the model's inputs and every other
    non-decoder kwarg it holds (its signature takes **kwargs): those the graph does not take are ignored."""

    main_input_name = "input_ids"

    def __init__(self, session: Optional[OrtSession], config: Any) -> None:
        super().__init__()
        self.session, self.config = session, config

    @property
    def path(self):
        return self.session.path

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                return_dict: Optional[bool] = None, **kwargs: Any) -> BaseModelOutput | tuple:
        if input_ids is None:
            raise ValueError("input_ids is required: the encoder of a text encoder-decoder reads token ids.")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        output = BaseModelOutput(**self.session.run({"input_ids": input_ids, "attention_mask": attention_mask}))
        return output if return_dict is not False else output.to_tuple()


class OrtSpeechEncoder(OrtEncoder):
    """The audio encoder's graph. WhisperGenerationMixin reads the frames per encoder position from
    `model.encoder.conv1/conv2` strides: those of our audio front end (hf_tformer/audio.py, as Whisper's)."""

    main_input_name = "input_features"
    conv1, conv2 = SimpleNamespace(stride=(1,)), SimpleNamespace(stride=(2,))

    def forward(self, input_features: Optional[torch.Tensor] = None, return_dict: Optional[bool] = None,
                **kwargs: Any) -> BaseModelOutput | tuple:
        """attention_mask (over frames) is accepted and not used, as in Whisper: every frame is attended."""
        if input_features is None or input_features.dim() != 3:
            shape = None if input_features is None else tuple(input_features.shape)
            raise ValueError(f"input_features must be (batch, num_mel_bins, frames), got {shape}: pass audio through "
                             "the export's feature extractor (AutoFeatureExtractor) with return_tensors='pt'.")
        mel_bins, frames = input_features.shape[1:]
        limit = 2 * self.config.max_source_positions
        if mel_bins != self.config.num_mel_bins or frames > limit:
            raise ValueError(f"input_features has {mel_bins} mel bins and {frames} frames; this export takes "
                             f"num_mel_bins={self.config.num_mel_bins} and at most {limit} frames per window: make "
                             "the features with the export's feature extractor (longer audio: generate() cuts it "
                             "into windows when given all frames with truncation=False, or use the pipeline).")
        output = BaseModelOutput(**self.session.run({"input_features": input_features}))
        return output if return_dict is not False else output.to_tuple()


class TformerORTModelForSeq2SeqLM(TformerORTModel, GenerationMixin):
    """text2text-generation[-with-past] exports of hf_tformer_encoder_decoder: forward() and all of generate()."""

    graph_names = (ENCODER_FILE, DECODER_FILE)
    optional_graph_names = (DECODER_WITH_PAST_FILE,)
    main_input_name = "input_ids"
    encoder_class: type = OrtEncoder
    _is_stateful = False

    def __init__(self, config, sessions: Optional[dict[str, OrtSession]] = None, folder=None,
                 provider: str = "CPUExecutionProvider") -> None:
        super().__init__(config, sessions=sessions, folder=folder, provider=provider)
        self.encoder = self.encoder_class(self.sessions.get(ENCODER_FILE), config)
        # Names read once: forward runs per generated token.
        self._layers = config.decoder_layers
        self._kv_names = {(prefix, side): cache_names(self._layers, prefix, (f".{side}",))
                          for prefix in ("past_key_values", "present") for side in ("decoder", "encoder")}

    @property
    def use_cache(self) -> bool:
        """Whether the export has the with-past decoder (exported for the -with-past task)."""
        return DECODER_WITH_PAST_FILE in self.sessions

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        # forward creates the EncoderDecoderCache of plain DynamicCaches (what the graphs were traced with)
        return False

    def can_generate(self) -> bool:
        return True

    def get_encoder(self) -> OrtEncoder:
        return self.encoder

    def forward(self, input_ids: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                decoder_input_ids: Optional[torch.Tensor] = None, encoder_outputs: Any = None,
                past_key_values: Optional[EncoderDecoderCache] = None, use_cache: Optional[bool] = None,
                decoder_attention_mask: Optional[torch.Tensor] = None, **kwargs: Any) -> Seq2SeqLMOutput:
        """The encoder (unless encoder_outputs are given) and one decoder pass. attention_mask is the encoder's
        (source padding); the decoder attends causally over every decoder token (the graphs take no decoder mask)."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        states = encoder_outputs[0]  # (batch, source, hidden)
        self._check_decoder_inputs(decoder_input_ids, decoder_attention_mask, use_cache)
        if attention_mask is None:  # every source position (speech: the graphs take no source mask)
            attention_mask = torch.ones(states.shape[:2], dtype=torch.long)
        feed = {"input_ids": decoder_input_ids, "encoder_attention_mask": attention_mask,
                "encoder_hidden_states": states}
        names = self._kv_names
        past_length = past_key_values.get_seq_length() if self.use_cache and past_key_values is not None else 0
        if past_length == 0:
            outputs = self.sessions[DECODER_FILE].run(feed)
            if not self.use_cache or use_cache is False:
                return Seq2SeqLMOutput(logits=outputs["logits"], encoder_last_hidden_state=states)
            cache = past_key_values if past_key_values is not None else EncoderDecoderCache(DynamicCache(),
                                                                                            DynamicCache())
            for side, part in (("decoder", cache.self_attention_cache), ("encoder", cache.cross_attention_cache)):
                store_presents(part, [outputs[name] for name in names["present", side]], 0)
            for layer in range(self._layers):
                cache.is_updated[layer] = True  # cross keys / values are the encoder's: computed once
        else:
            cache = past_key_values
            for side, part in (("decoder", cache.self_attention_cache), ("encoder", cache.cross_attention_cache)):
                tensors = [tensor for layer in part.layers for tensor in (layer.keys, layer.values)]
                feed.update(zip(names["past_key_values", side], tensors))
            outputs = self.sessions[DECODER_WITH_PAST_FILE].run(feed)
            store_presents(cache.self_attention_cache,
                           [outputs[name] for name in names["present", "decoder"]], past_length)
        return Seq2SeqLMOutput(logits=outputs["logits"], past_key_values=cache, encoder_last_hidden_state=states)

    def _check_decoder_inputs(self, decoder_input_ids: Optional[torch.Tensor],
                              decoder_attention_mask: Optional[torch.Tensor], use_cache: Optional[bool]) -> None:
        if decoder_input_ids is None:
            raise ValueError("decoder_input_ids is required (generate() makes them from the decoder start token).")
        if decoder_attention_mask is not None and not bool(decoder_attention_mask.bool().all()):
            raise ValueError("decoder_attention_mask masks decoder tokens, which the exported decoder cannot: its "
                             "graphs (optimum's layout) attend every decoder token. Pass unpadded decoder_input_ids "
                             "(for Whisper: condition_on_prev_tokens=False with batched long-form audio), or use "
                             "the PyTorch model.")
        if use_cache and not self.use_cache:
            raise ValueError(f"this export has no {DECODER_WITH_PAST_FILE} (it was exported without past keys / "
                             "values), so it cannot reuse a cache: generate with use_cache=False, or export for "
                             "the -with-past task.")


class TformerORTModelForSpeechSeq2Seq(TformerORTModelForSeq2SeqLM, WhisperGenerationMixin):
    """automatic-speech-recognition[-with-past] exports of hf_tformer_whisper: generate() is transformers'
    WhisperGenerationMixin.generate (as for our PyTorch model), without token-level timestamps (refused with
    runtime.TOKEN_TIMESTAMPS_REFUSED: the graphs output no cross-attention weights)."""

    main_input_name = "input_features"
    encoder_class = OrtSpeechEncoder

    def __init__(self, config, sessions: Optional[dict[str, OrtSession]] = None, folder=None,
                 provider: str = "CPUExecutionProvider") -> None:
        super().__init__(config, sessions=sessions, folder=folder, provider=provider)
        self.model = WhisperLayout(self.encoder, config)

    def forward(self, input_features: Optional[torch.Tensor] = None, attention_mask: Optional[torch.Tensor] = None,
                decoder_input_ids: Optional[torch.Tensor] = None, encoder_outputs: Any = None,
                **kwargs: Any) -> Seq2SeqLMOutput:
        """As the text model's, over log-mel input_features (attention_mask over frames is accepted, not used)."""
        if encoder_outputs is None:
            encoder_outputs = self.encoder(input_features=input_features)
        return super().forward(decoder_input_ids=decoder_input_ids, encoder_outputs=encoder_outputs, **kwargs)

    def generate(self, *args: Any, **kwargs: Any):
        if kwargs.get("return_token_timestamps"):
            raise ValueError(TOKEN_TIMESTAMPS_REFUSED)
        return super().generate(*args, **kwargs)

    def speech_pipeline(self, **kwargs: Any):
        """transformers' automatic-speech-recognition pipeline over this model, run as Whisper's (windows of the
        feature extractor's length, timestamps): the pipeline class the export's config.custom_pipelines names (its own copy of
        pipeline_tformer_whisper.py, so hf_tformer need not be installed), with the export's tokenizer and feature
        extractor unless `tokenizer` / `feature_extractor` are given; other kwargs go to transformers.pipeline()."""
        import transformers
        from transformers.dynamic_module_utils import get_class_from_dynamic_module

        task = "automatic-speech-recognition"
        impl = (getattr(self.config, "custom_pipelines", None) or {}).get(task, {}).get("impl")
        if self.model_save_dir is None or impl is None:
            raise ValueError(f"{self.model_save_dir or 'this model'} has no pipeline class in its config "
                             "(custom_pipelines): load a folder written by `hf-tformer export onnx`.")
        folder = str(self.model_save_dir)
        if kwargs.get("tokenizer") is None:
            kwargs["tokenizer"] = transformers.AutoTokenizer.from_pretrained(folder)
        if kwargs.get("feature_extractor") is None:
            kwargs["feature_extractor"] = transformers.AutoFeatureExtractor.from_pretrained(folder)
        return transformers.pipeline(task, model=self, pipeline_class=get_class_from_dynamic_module(impl, folder),
                                     **kwargs)


class WhisperLayout(nn.Module):
    """What WhisperGenerationMixin reads from `model.model`: the encoder (its conv strides) and the config."""

    def __init__(self, encoder: OrtSpeechEncoder, config: Any) -> None:
        super().__init__()
        self.encoder, self.config = encoder, config
