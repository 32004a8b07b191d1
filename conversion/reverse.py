"""The way back: an hf_tformer checkpoint into the native transformers class of a family whose config maps.

Nothing new is declared per family beyond the inverse config: the forward key rules are reused. Every forward
transform is an index rearrangement (transpose, split, flatten, drop rows), so pushing the *positions* of a native
tensor through it tells where each of our values goes back. A round trip of the config proves the mapping
(translating the native config forward must give ours again, field by field), and the same parity gate as the
forward direction proves the weights.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

import hf_tformer as ht

from .converter import carry_files, text_vocab_size
from .dtypes import check_dtype_name, checkpoint_dtype, resolve_dtype
from .generation_settings import (carry_generation_config, check_generation_config, read_generation_config,
                                  settings_summary)
from .model_card import ModelCardFacts, card_base_model, hub_repo_id, pipeline_tag_and_auto_class, write_model_card
from .sources import SOURCES, Source
from .sentence_transformers import EncodeParity, complete_folder, read_layout
from .staging import Destination, claim_destination
from .tolerance import card_figures
from .user_errors import check_folder, read_config_json
from .verify import ParityReport, check_parity

# The fields that decide what an hf_tformer model computes; a round trip must preserve each of them.
ARCHITECTURE_FIELDS = (
    "vocab_size", "hidden_size", "num_hidden_layers", "encoder_layers", "decoder_layers", "num_attention_heads",
    "num_key_value_heads", "intermediate_size", "hidden_act", "position_embedding_type", "rotary_base",
    "relative_attention_num_buckets", "relative_attention_max_distance", "attention_scale", "lm_head_input_scale",
    "norm_placement", "norm_type", "layer_norm_eps", "attention_bias", "mlp_bias", "lm_head_bias",
    "embedding_layernorm", "type_vocab_size", "scale_embeddings", "tie_word_embeddings", "pad_token_id",
    "image_size", "patch_size", "num_channels", "distillation_token", "distillation_head",
    "attention_out_bias", "qk_norm", "partial_rotary_factor", "parallel_residual", "sliding_window", "layer_types",
    "num_experts", "num_experts_per_tok", "norm_topk_prob", "expert_intermediate_size",
    "shared_expert_intermediate_size", "moe_layer_indices",
    "patch_embedding_bias", "projection_dim", "logit_scale_init_value",
    "num_mel_bins", "max_source_positions", "max_target_positions",
)
SUB_CONFIGS = ("text_config", "vision_config")  # a dual encoder's towers (CLIP): each must round-trip too
_OUR_CONFIGS = {c.model_type: c for c in (ht.TformerEncoderConfig, ht.TformerDecoderConfig,
                                          ht.TformerEncoderDecoderConfig, ht.TformerViTConfig,
                                          ht.TformerCLIPConfig, ht.TformerCLIPTextConfig, ht.TformerCLIPVisionConfig,
                                          ht.TformerWhisperConfig)}


@dataclass
class ReverseReport:
    source: str
    destination: str
    architecture: str
    dtype: str = "float32"
    parity: Optional[ParityReport] = None
    encode_parity: Optional[EncodeParity] = None  # a sentence-transformers folder: encode() against ours


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
    return a == b


def _native_class_and_config(family: Source, model_type: str, ours: type, config):
    """(architecture, native config) of the first native class of `ours` whose config round trip holds: DeiT has
    two image classifiers, told apart by the config (distillation_head)."""
    candidates = [architecture for architecture, (reference, target) in family.classes.items()
                  if target is ours and family.reference_class(architecture).config_class.model_type == model_type]
    if not candidates:
        offered = sorted({target.__name__ for _, target in family.classes.values()})
        raise ValueError(f"{ours.__name__} has no {model_type} counterpart; {model_type} takes {offered}.")
    for architecture in candidates[:-1]:
        try:
            return architecture, _native_config(family, model_type, architecture, config)
        except ValueError:
            continue  # the last candidate's error is the one reported
    return candidates[-1], _native_config(family, model_type, candidates[-1], config)


def _native_config(family: Source, model_type: str, architecture: str, ours) -> "transformers.PretrainedConfig":
    if family.native_config is None:
        raise ValueError(f"converting back into {model_type} is not supported yet.")
    config_class = family.reference_class(architecture).config_class
    native = config_class(**family.native_config(ours), architectures=[architecture])
    back = family.translate_config(native.to_dict())  # what the forward conversion would make of it
    pairs = [("", ours, back)] + [(f"{sub}.", getattr(ours, sub), getattr(back, sub)) for sub in SUB_CONFIGS
                                  if getattr(ours, sub, None) is not None]
    differing = [f"{where}{name}: ours {getattr(a, name, None)!r}, via {model_type} {getattr(b, name, None)!r}"
                 for where, a, b in pairs for name in ARCHITECTURE_FIELDS
                 if not _same(getattr(a, name, None), getattr(b, name, None))]
    if differing:
        raise ValueError(f"this checkpoint's config does not map onto {model_type}: " + "; ".join(differing))
    return native


def restore_state_dict(native: torch.nn.Module, ours: torch.nn.Module, family: Source, native_config: dict) -> dict:
    """Native state dict with every tensor the forward rules map filled from ours (index tracing, see above);
    tensors the rules drop (buffers, tied copies, unused offset rows) keep the native model's own values."""
    prefix = "" if hasattr(ours, "model") else "model."
    values = {prefix + k: v for k, v in ours.state_dict().items()}
    tied = dict(ours._tied_weights_keys or {}) if ours.config.tie_word_embeddings else {}
    needed = set(values) - {prefix + k for k in tied}
    rules = family.rules(native_config, type(ours))
    state, consumed, unmatched = native.state_dict(), set(), []
    for key, tensor in state.items():
        matches = [(r, groups) for r in rules if (groups := r.match(key)) is not None]
        if len(matches) != 1:
            unmatched.append(key)
            continue
        matched_rule, groups = matches[0]
        if not matched_rule.targets:
            continue
        positions = matched_rule.transform(torch.arange(tensor.numel()).reshape(tensor.shape))
        positions = positions if isinstance(positions, tuple) else (positions,)
        restored = tensor.detach().clone().reshape(-1)
        for template, where in zip(matched_rule.targets, positions):
            target = template.format(**groups)
            # a negative position: a value the forward transform made up (Whisper's zero key bias), not a native one
            where, kept = where.reshape(-1), where.reshape(-1) >= 0
            restored[where[kept]] = values[target].reshape(-1)[kept].to(restored.dtype)
            consumed.add(target)
        state[key] = restored.reshape(tensor.shape)
    left = sorted(needed - consumed)
    if unmatched or left:
        raise ValueError(f"the weights do not map back cleanly: native keys no rule covers: {unmatched[:8]}; "
                         f"our keys with no native place: {left[:8]}")
    return state


def to_native(checkpoint: str, destination: str, model_type: str, *, force: bool = False,
              verify: bool = True, dtype: str = "auto") -> ReverseReport:
    """Write the hf_tformer checkpoint at `checkpoint` as a native `model_type` checkpoint (no remote code).

    dtype: what the weights are written in: "auto" (the checkpoint's own), "float32", "bfloat16" or "float16".
    The destination is checked and claimed before any work, as for convert() (staging.py)."""
    with claim_destination(Path(destination), force, sources=[Path(checkpoint)]) as out:
        return _to_native(Path(checkpoint), out, model_type, verify, dtype)


def _to_native(folder: Path, out: Destination, model_type: str, verify: bool, dtype: str) -> ReverseReport:
    check_dtype_name(dtype)
    fix = "it is not an hf_tformer checkpoint: point at one (`hf-tformer convert` writes them)."
    check_folder(folder, fix)
    layout = read_layout(folder, _OUR_CONFIGS)  # a sentence-transformers folder: its Transformer module goes back
    folder = layout.transformer_folder if layout else folder
    if model_type not in SOURCES:
        raise ValueError(f"model_type={model_type!r} is not supported; supported: {sorted(SOURCES)}.")
    config_dict = read_config_json(folder, fix)
    ours_type = config_dict.get("model_type")
    if ours_type not in _OUR_CONFIGS:
        raise ValueError(f"{folder} is not an hf_tformer checkpoint (config.json model_type={ours_type!r}).")
    config = _OUR_CONFIGS[ours_type].from_pretrained(folder)
    family = SOURCES[model_type]
    our_class = getattr(ht, (config.architectures or [None])[0] or "", None)
    if our_class is None:
        raise ValueError(f"{folder}'s config.json names no hf_tformer class in `architectures`.")
    generation_config = read_generation_config(folder, config_dict)
    check_generation_config(generation_config, text_vocab_size(config))
    written_dtype = resolve_dtype(dtype, checkpoint_dtype(folder))
    ours = our_class.from_pretrained(folder, dtype=torch.float32).eval()  # verified in fp32, like the native side
    architecture, native_config = _native_class_and_config(family, model_type, our_class, config)
    reference_class = family.reference_class(architecture)
    native = reference_class(native_config).eval()
    output = native.get_output_embeddings()
    if not config.tie_word_embeddings and output is not None and \
            output.weight.data_ptr() == native.get_input_embeddings().weight.data_ptr():
        # transformers 5 ties T5's head whatever the config says; ours is untied, so the native one must be too
        output.weight = torch.nn.Parameter(output.weight.detach().clone())
    native.load_state_dict(restore_state_dict(native, ours, family, native_config.to_dict()))
    for model in (ours, native):  # both decode under the checkpoint's own settings, in the gate and after saving
        carry_generation_config(model, generation_config)
    if config.tie_word_embeddings:
        native.tie_weights()
    report = ReverseReport(str(folder), str(out.given), architecture, dtype=str(written_dtype).removeprefix("torch."))
    if verify:
        report.parity = check_parity(ours, native)  # raises ValueError when the outputs differ
    native.to(written_dtype)
    with out.staged(sources=[folder, layout.root] if layout else [folder]) as staging:
        native.save_pretrained(staging)
        carry_files(folder, staging)
        _write_model_card(staging, report, model_type, generation_config if native.can_generate() else None)
        if layout:  # the other modules and files where modules.json expects them; encode() parity
            report.encode_parity = complete_folder(layout, staging, verify)[1]
    return report


def _write_model_card(folder: Path, report: ReverseReport, model_type: str, generation_config) -> None:
    tag, auto_class = pipeline_tag_and_auto_class(report.architecture)
    parity = report.parity
    figures = ["not verified (written with --no-verify)"] if parity is None else card_figures(
        parity.checks, parity.rule, "Against the hf_tformer checkpoint on random padded inputs, in float32")
    if parity is not None and parity.own_settings_identical is not None:
        figures.append(f"greedy tokens identical: {parity.greedy_identical}; generate() under the checkpoint's own "
                       f"settings ({parity.generation_settings}) identical: {parity.own_settings_identical}")
    source = Path(report.source)
    write_model_card(folder, ModelCardFacts(
        title=f"{report.architecture} converted back from hf_tformer",
        pipeline_tag=tag, base_model=card_base_model(source) or hub_repo_id(report.source),
        tags=["converted", model_type], figures=figures,
        summary=f"The hf_tformer checkpoint `{report.source}` written as transformers' own {report.architecture} "
                f"({model_type}): a plain checkpoint, no remote code. Weights stored as {report.dtype} safetensors."
                + ("" if generation_config is None else f" Generation settings: {settings_summary(generation_config)}."),
        usage=f"import transformers\n\nmodel = transformers.{auto_class}.from_pretrained(\"PATH_OR_REPO_ID\")",
    ))
