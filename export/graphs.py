"""The graphs of an export: which files, their input / output names, dynamic axes and tracing inputs, per model type
and task, laid out as optimum lays out its own exports of BERT / GPT-2 / BART / ViT / CLIP / Whisper.

So optimum's ORTModel* load our exports on transformers 4.57, and our own ORT classes (ort_*.py) load them on any
version. Each graph is a small wrapper module whose forward takes the graph's inputs positionally (in `inputs`
order) and returns its outputs as a tuple (in `outputs` order): exactly what torch.onnx.export traces.
"""

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from transformers.cache_utils import DynamicCache, EncoderDecoderCache

from .tasks import CLIP, CLIP_TEXT, CLIP_VISION, DECODER, ENCODER, ENCODER_DECODER, VISION, WHISPER

BATCH, SEQUENCE = 2, 8  # tracing sizes; every axis named in dynamic_axes stays dynamic in the graph
TEXT_AXES = {0: "batch_size", 1: "sequence_length"}
IMAGE_AXES = {0: "batch_size", 1: "num_channels", 2: "height", 3: "width"}


@dataclass
class GraphSpec:
    file_name: str
    module: nn.Module
    inputs: dict[str, torch.Tensor]  # tracing inputs, in the order the module's forward takes them
    outputs: list[str]
    dynamic_axes: dict[str, dict[int, str]]


class NamedOutputs(nn.Module):
    """model(**{name: input}) -> the named output fields, as a tuple."""

    def __init__(self, model: nn.Module, input_names: list[str], output_names: list[str],
                 call: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.model, self.input_names, self.output_names = model, input_names, output_names
        self.call = call or model

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.call(**dict(zip(self.input_names, args)))
        return tuple(getattr(output, name) for name in self.output_names)


def kv_shape(config, batch: int, length: int) -> tuple[int, int, int, int]:
    """(batch, key/value heads, length, head_dim): one cached key or value of one layer."""
    return batch, config.num_key_value_heads, length, config.head_dim


def fitting_length(config, wanted: int, table_field: str = "max_position_embeddings") -> int:
    """A tracing length that leaves room for as many cached positions in a learned position table."""
    table = getattr(config, table_field, None)
    if getattr(config, "position_embedding_type", None) == "learned" and table:
        return max(1, min(wanted, (table - 1) // 2))
    return wanted


def token_ids(config, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, config.vocab_size, (batch, length), generator=generator)


def _encoder_like(model: nn.Module, model_type: str, task: str) -> GraphSpec:
    """One graph, no cache: the encoder's tasks, the decoder's feature extraction / classification, images."""
    config = model.config
    if model_type == VISION:
        pixels = torch.randn(BATCH, config.num_channels, config.image_size, config.image_size)
        output = "logits" if task == "image-classification" else "last_hidden_state"
        return GraphSpec("model.onnx", NamedOutputs(model, ["pixel_values"], [output]), {"pixel_values": pixels},
                         [output], {"pixel_values": IMAGE_AXES, output: {0: "batch_size"}})
    length = fitting_length(config, SEQUENCE)
    inputs = {"input_ids": token_ids(config, BATCH, length), "attention_mask": torch.ones(BATCH, length,
                                                                                         dtype=torch.long)}
    inputs["attention_mask"][1, -2:] = 0  # a padded row, so the mask is not constant-folded away
    if model_type == ENCODER and getattr(config, "type_vocab_size", 0) > 0:
        inputs["token_type_ids"] = torch.zeros(BATCH, length, dtype=torch.long)
    if task == "text-generation":  # optimum's decoder without past takes explicit positions too
        inputs["position_ids"] = torch.arange(length).expand(BATCH, length)
    outputs = {"question-answering": ["start_logits", "end_logits"], "feature-extraction": ["last_hidden_state"]
               }.get(task, ["logits"])
    axes = {name: dict(TEXT_AXES) for name in inputs}
    per_token = task not in ("text-classification",)
    axes.update({name: (dict(TEXT_AXES) if per_token else {0: "batch_size"}) for name in outputs})
    return GraphSpec("model.onnx", NamedOutputs(model, list(inputs), outputs), inputs, outputs, axes)


def _clip(model: nn.Module, model_type: str) -> GraphSpec:
    """The dual encoder as one graph (texts and images batched independently), or one tower."""
    config = model.config
    text = getattr(config, "text_config", config)
    vision = getattr(config, "vision_config", config)
    with_projection = hasattr(model, "text_projection") or hasattr(model, "visual_projection")
    inputs: dict[str, torch.Tensor] = {}
    axes: dict[str, dict[int, str]] = {}
    if model_type in (CLIP, CLIP_TEXT):
        inputs["input_ids"] = token_ids(text, BATCH, fitting_length(text, SEQUENCE))
        axes["input_ids"] = {0: "text_batch_size" if model_type == CLIP else "batch_size", 1: "sequence_length"}
    if model_type in (CLIP, CLIP_VISION):
        inputs["pixel_values"] = torch.randn(BATCH + 1, vision.num_channels, vision.image_size, vision.image_size)
        axes["pixel_values"] = {0: "image_batch_size" if model_type == CLIP else "batch_size", 1: "num_channels",
                                2: "height", 3: "width"}
    if model_type == CLIP:
        inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
        axes["attention_mask"] = dict(axes["input_ids"])
        outputs = ["logits_per_image", "logits_per_text", "text_embeds", "image_embeds"]
        axes.update({"logits_per_image": {0: "image_batch_size", 1: "text_batch_size"},
                     "logits_per_text": {0: "text_batch_size", 1: "image_batch_size"},
                     "text_embeds": {0: "text_batch_size"}, "image_embeds": {0: "image_batch_size"}})
    else:
        embeds = "text_embeds" if model_type == CLIP_TEXT else "image_embeds"
        outputs = [embeds, "last_hidden_state"] if with_projection else ["last_hidden_state", "pooler_output"]
        axes.update({name: {0: "batch_size"} for name in outputs})
        if model_type == CLIP_TEXT:
            axes["last_hidden_state"][1] = "sequence_length"
    return GraphSpec("model.onnx", NamedOutputs(model, list(inputs), outputs), inputs, outputs, axes)


def _self_cache(past: tuple[torch.Tensor, ...]) -> DynamicCache:
    """A DynamicCache holding past (key, value, key, value, ...) per layer."""
    cache = DynamicCache()
    for layer in range(len(past) // 2):
        cache.update(past[2 * layer], past[2 * layer + 1], layer)
    return cache


def _layer_tensors(cache: DynamicCache) -> list[torch.Tensor]:
    return [tensor for layer in cache.layers for tensor in (layer.keys, layer.values)]


class CausalLMWithPast(nn.Module):
    """(input_ids, attention_mask, position_ids, past key, past value, ...) -> (logits, present key, value, ...)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, position_ids, *past: torch.Tensor) -> tuple[torch.Tensor, ...]:
        output = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            past_key_values=_self_cache(past), use_cache=True)
        return (output.logits, *_layer_tensors(output.past_key_values))


def cache_names(layers: int, prefix: str, sides: tuple[str, ...] = ("",)) -> list[str]:
    """optimum's names, in the graphs' order: past_key_values.0.key / present.0.decoder.value ... (the exporter's
    and our ORT classes' one source of them)."""
    return [f"{prefix}.{layer}{side}.{kind}" for layer in range(layers) for side in sides for kind in ("key", "value")]


def _causal_lm(model: nn.Module) -> GraphSpec:
    config = model.config
    length = fitting_length(config, SEQUENCE)
    past_length = length
    layers = config.num_hidden_layers
    inputs = {"input_ids": token_ids(config, BATCH, length),
              "attention_mask": torch.ones(BATCH, past_length + length, dtype=torch.long),
              "position_ids": torch.arange(past_length, past_length + length).expand(BATCH, length)}
    inputs["attention_mask"][1, :2] = 0  # left padding, as generation pads
    past_axes = {0: "batch_size", 2: "past_sequence_length"}
    for name in cache_names(layers, "past_key_values", ("",)):
        inputs[name] = torch.randn(kv_shape(config, BATCH, past_length))
    presents = cache_names(layers, "present", ("",))
    axes = {"input_ids": dict(TEXT_AXES), "position_ids": dict(TEXT_AXES),
            "attention_mask": {0: "batch_size", 1: "past_sequence_length + sequence_length"},
            "logits": dict(TEXT_AXES)}
    axes.update({name: dict(past_axes) for name in inputs if name.startswith("past_key_values")})
    axes.update({name: {0: "batch_size", 2: "past_sequence_length + sequence_length"} for name in presents})
    return GraphSpec("model.onnx", CausalLMWithPast(model), inputs, ["logits", *presents], axes)


class Seq2SeqEncoder(nn.Module):
    """The encoder alone: (input_ids, attention_mask) or (input_features,) -> last_hidden_state."""

    def __init__(self, model: nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.encoder, self.input_names = model.get_encoder(), input_names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.encoder(**dict(zip(self.input_names, args)), return_dict=True).last_hidden_state


class Seq2SeqDecoder(nn.Module):
    """First step: (input_ids, [encoder_attention_mask], encoder_hidden_states) -> (logits, self k/v and cross k/v
    per layer). With past: (input_ids, [encoder_attention_mask], self k, self v, cross k, cross v, ...) ->
    (logits, new self k/v per layer): the cross-attention cache is read, never rewritten."""

    def __init__(self, model: nn.Module, with_past: bool, has_encoder_mask: bool) -> None:
        super().__init__()
        self.model, self.with_past, self.has_encoder_mask = model, with_past, has_encoder_mask

    def forward(self, input_ids: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoder_mask, rest = (rest[0], rest[1:]) if self.has_encoder_mask else (None, rest)
        config = self.model.config
        if self.with_past:
            self_past = [t for index, t in enumerate(rest) if index % 4 < 2]
            cross_past = [t for index, t in enumerate(rest) if index % 4 >= 2]
            cache = EncoderDecoderCache(_self_cache(tuple(self_past)), _self_cache(tuple(cross_past)))
            for layer in range(len(cross_past) // 2):
                cache.is_updated[layer] = True  # cross keys / values come from the cache, not recomputed
            # The cross attention reads its cache; the encoder states only give the stack its batch and length.
            batch, _, source_length, _ = cross_past[0].shape
            states = cross_past[0].new_zeros(batch, source_length, config.hidden_size)
        else:
            cache, states = EncoderDecoderCache(DynamicCache(), DynamicCache()), rest[0]
        output = self.model(decoder_input_ids=input_ids, attention_mask=encoder_mask, encoder_outputs=(states,),
                            past_key_values=cache, use_cache=True, return_dict=True)
        present = output.past_key_values
        self_tensors = _layer_tensors(present.self_attention_cache)
        if self.with_past:
            return (output.logits, *self_tensors)
        cross_tensors = _layer_tensors(present.cross_attention_cache)
        interleaved = []
        for layer in range(len(self_tensors) // 2):
            interleaved += self_tensors[2 * layer: 2 * layer + 2] + cross_tensors[2 * layer: 2 * layer + 2]
        return (output.logits, *interleaved)


def _seq2seq(model: nn.Module, model_type: str, with_past: bool) -> list[GraphSpec]:
    """encoder_model.onnx, decoder_model.onnx and (with past) decoder_with_past_model.onnx."""
    config = model.config
    speech = model_type == WHISPER
    layers = config.decoder_layers
    if speech:
        frames = 2 * config.max_source_positions
        encoder_inputs = {"input_features": torch.randn(BATCH, config.num_mel_bins, frames)}
        encoder_axes = {"input_features": {0: "batch_size", 1: "feature_size", 2: "encoder_sequence_length"},
                        "last_hidden_state": {0: "batch_size", 1: "encoder_sequence_length / 2"}}
        source_length = config.max_source_positions
    else:
        source_length = fitting_length(config, SEQUENCE)
        mask = torch.ones(BATCH, source_length, dtype=torch.long)
        mask[1, -2:] = 0
        encoder_inputs = {"input_ids": token_ids(config, BATCH, source_length), "attention_mask": mask}
        encoder_axes = {name: {0: "batch_size", 1: "encoder_sequence_length"}
                        for name in ("input_ids", "attention_mask", "last_hidden_state")}
    graphs = [GraphSpec("encoder_model.onnx", Seq2SeqEncoder(model, list(encoder_inputs)), encoder_inputs,
                        ["last_hidden_state"], encoder_axes)]
    target_table = "max_target_positions" if speech else "max_position_embeddings"
    target_length = fitting_length(config, SEQUENCE, target_table)
    decoder_inputs = {"input_ids": token_ids(config, BATCH, target_length)}
    source_axes = {0: "batch_size", 1: "encoder_sequence_length"}
    if not speech:
        decoder_inputs["encoder_attention_mask"] = encoder_inputs["attention_mask"]
    first = dict(decoder_inputs, encoder_hidden_states=torch.randn(BATCH, source_length, config.hidden_size))
    self_axes = {0: "batch_size", 2: "past_decoder_sequence_length + decoder_sequence_length"}
    cross_axes = {0: "batch_size", 2: "encoder_sequence_length"}
    common_axes = {"input_ids": {0: "batch_size", 1: "decoder_sequence_length"}, "encoder_attention_mask": source_axes,
                   "logits": {0: "batch_size", 1: "decoder_sequence_length"}}
    presents = cache_names(layers, "present", (".decoder", ".encoder"))
    first_axes = dict(common_axes, encoder_hidden_states=source_axes)
    first_axes.update({name: dict(self_axes if ".decoder." in name else cross_axes) for name in presents})
    if speech:
        del first_axes["encoder_attention_mask"]
    graphs.append(GraphSpec("decoder_model.onnx", Seq2SeqDecoder(model, False, not speech), first,
                            ["logits", *presents], first_axes))
    if with_past:
        past = dict(decoder_inputs)
        for name in cache_names(layers, "past_key_values", (".decoder", ".encoder")):
            # as many cached decoder positions as new ones: both fit a learned position table (fitting_length)
            past[name] = torch.randn(kv_shape(config, BATCH, target_length if ".decoder." in name else source_length))
        past_axes = {k: v for k, v in common_axes.items() if k in past or k == "logits"}
        past_axes.update({name: ({0: "batch_size", 2: "past_decoder_sequence_length"} if ".decoder." in name
                                 else dict(cross_axes)) for name in past if name.startswith("past_key_values")})
        self_presents = cache_names(layers, "present", (".decoder",))
        past_axes.update({name: dict(self_axes) for name in self_presents})
        graphs.append(GraphSpec("decoder_with_past_model.onnx", Seq2SeqDecoder(model, True, not speech), past,
                                ["logits", *self_presents], past_axes))
    return graphs


def graph_specs(model: nn.Module, model_type: str, task: str) -> list[GraphSpec]:
    """The graphs to export for `task` (a name from tasks.TASKS, synonyms resolved)."""
    if model_type in (CLIP, CLIP_TEXT, CLIP_VISION):
        return [_clip(model, model_type)]
    if model_type in (ENCODER_DECODER, WHISPER):
        return _seq2seq(model, model_type, with_past=task.endswith("-with-past"))
    if model_type == DECODER and task == "text-generation-with-past":
        return [_causal_lm(model)]
    if model_type in (ENCODER, DECODER, VISION):
        return [_encoder_like(model, model_type, task)]
    raise ValueError(f"model_type={model_type!r} has no ONNX graphs; expected one of the hf_tformer model types.")
