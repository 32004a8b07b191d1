"""Convert a checkpoint folder (or Hub repo id) into an hf_tformer checkpoint, gated on numerical parity.

Nothing is written at the destination unless the converted model computes the same function as the source:
the result is staged in a temporary folder next to the destination and renamed into place at the end.
"""

import gc
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from tqdm.auto import tqdm

from .dtypes import check_dtype_name, majority_dtype, resolve_dtype
from .generation_settings import (carry_generation_config, check_alignment_heads, check_generation_config,
                                  read_generation_config, settings_summary)
from .keymap import convert_state_dict
from .model_card import ModelCardFacts, hub_repo_id, pipeline_tag_and_auto_class, write_model_card
from .sentence_transformers import EncodeParity, complete_folder, read_layout
from .sources import SOURCES, Source
from .staging import Destination, claim_destination
from .tolerance import card_figures
from .user_errors import check_folder, read_config_json
from .verify import ParityReport, check_parity

CARRIED_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                 "merges.txt", "spiece.model", "sentencepiece.bpe.model", "generation_config.json",
                 "preprocessor_config.json", "processor_config.json", "added_tokens.json", "normalizer.json")


@dataclass
class ConversionReport:
    source: str
    destination: str
    architecture: str
    target_class: str
    tensors: int
    dtype: str = "float32"
    parity: Optional[ParityReport] = None
    carried: list[str] = field(default_factory=list)
    notes: str = ""
    generation_settings: Optional[str] = None  # the source's own decoding settings, written to generation_config.json
    generation_fields_unread: list[str] = field(default_factory=list)  # carried unchanged; generate() ignores them
    encode_parity: Optional[EncodeParity] = None  # a sentence-transformers folder: encode() against the source


def resolve_source(source: str) -> Path:
    """A local folder, or a Hub repo id through snapshot_download (honours the cache and HF_HUB_OFFLINE)."""
    if os.path.isdir(source):
        return Path(source)
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import validate_repo_id

    fix = "point at a checkpoint folder (the one holding config.json) or a Hub repo id (owner/name)."
    try:
        validate_repo_id(source)
        local = os.path.exists(source)  # a file named like a repo id
    except ValueError:  # a path, not a repo id
        local = True
    if local:
        check_folder(Path(source), fix)  # raises: a missing path, or a file
    try:
        return Path(snapshot_download(source))
    except (OSError, ValueError) as error:  # huggingface_hub's not-found, offline and HTTP errors
        raise ValueError(f"{source} is not a local folder, and the Hub repo {source!r} could not be read "
                         f"({type(error).__name__}: {error}); {fix} (HF_HUB_OFFLINE=1 reads the local cache only.)"
                         ) from None


def read_config(folder: Path) -> tuple[dict, Source, str]:
    config = read_config_json(folder, "point at a transformers checkpoint folder.")
    model_type = config.get("model_type")
    if model_type not in SOURCES:
        raise ValueError(f"{folder / 'config.json'}: model_type={model_type!r} is not supported; supported: "
                         f"{sorted(SOURCES)}.")
    source = SOURCES[model_type]
    architecture = (config.get("architectures") or [None])[0]
    if architecture not in source.classes:
        raise ValueError(f"architecture {architecture!r} of {model_type!r} is not supported; "
                         f"supported: {sorted(source.classes)}.")
    return config, source, architecture


class LazyWeights:
    """Source tensors read one at a time: safetensors memory-mapped; pickles only when allowed, weights_only."""

    def __init__(self, folder: Path, allow_pickle: bool) -> None:
        from safetensors import safe_open

        self._handles, self._where = [], {}
        files = sorted(folder.glob("*.safetensors"))
        if files:
            for path in files:
                try:
                    handle = safe_open(str(path), framework="pt")
                except Exception as error:  # safetensors raises its own error types
                    raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
                self._handles.append(handle)
                for key in handle.keys():
                    self._where[key] = handle
            self._pickled = None
            return
        pickles = sorted(folder.glob("pytorch_model*.bin"))
        if not pickles:
            raise ValueError(f"{folder} holds no model.safetensors or pytorch_model.bin.")
        if not allow_pickle:
            raise ValueError(f"{folder} holds only pickled weights ({pickles[0].name}); pickles can run code when "
                             "loaded. Pass --allow-pickle (allow_pickle=True) to load them with weights_only=True.")
        self._pickled = {}
        for path in pickles:
            self._pickled.update(torch.load(path, map_location="cpu", weights_only=True))

    def keys(self) -> list[str]:
        return list(self._pickled) if self._pickled is not None else list(self._where)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._pickled[key] if self._pickled is not None else self._where[key].get_tensor(key)


def _expected_keys(model: torch.nn.Module) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    tied = dict(model._tied_weights_keys or {}) if model.config.tie_word_embeddings else {}
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in tied}
    return shapes, tied


def convert(source: str, destination: str, *, force: bool = False, allow_pickle: bool = False,
            verify: bool = True, progress: bool = True, dtype: str = "auto") -> ConversionReport:
    """Convert `source` into an hf_tformer checkpoint at `destination`; raise ValueError on any mismatch.

    dtype: what the weights are written in: "auto" (the source's own), "float32", "bfloat16" or "float16".
    The destination is checked and claimed before any work (staging.py): never the source, the working directory
    or a folder of unrelated files; a second writer to it is refused."""
    with claim_destination(Path(destination), force, sources=[Path(source)]) as out:
        return _convert(source, out, allow_pickle, verify, progress, dtype)


def _convert(source: str, out: Destination, allow_pickle: bool, verify: bool, progress: bool,
             dtype: str) -> ConversionReport:
    check_dtype_name(dtype)
    folder = resolve_source(source)
    layout = read_layout(folder, SOURCES)  # a sentence-transformers folder: its Transformer module converts
    folder = layout.transformer_folder if layout else folder
    config_dict, family, architecture = read_config(folder)
    target_class = family.target_class(architecture)
    config = family.translate_config(config_dict)
    # Read and checked before any work: a token id outside the vocabulary is refused here, nothing written.
    generation_config = read_generation_config(folder, config_dict)
    carried_unread = check_generation_config(generation_config, text_vocab_size(config), family.generation_fields)
    check_alignment_heads(generation_config, config)
    with torch.device("meta"):
        skeleton = target_class(config)
    expected, tied = _expected_keys(skeleton)
    prefix = "" if hasattr(skeleton, "model") else "model."  # base models have no "model." prefix
    weights = LazyWeights(folder, allow_pickle)
    keys = weights.keys()
    bar = tqdm(total=len(keys), unit="tensor", desc="converting", disable=not progress)
    converted = convert_state_dict(
        keys, weights.__getitem__, family.rules(config_dict, target_class),
        {prefix + k: v for k, v in expected.items()}, {prefix + k: prefix + v for k, v in tied.items()},
        on_tensor=lambda key: bar.update(1),
    )
    bar.close()
    written_dtype = resolve_dtype(dtype, majority_dtype(converted.values()))
    # The converted tensors become the parameters (assign=True on a meta skeleton): no random init, no second copy.
    model = skeleton
    # fp32 like the reference the parity gate compares with; cast to the written dtype after the gate.
    loaded = model.load_state_dict({k[len(prefix):]: v.float() if v.is_floating_point() else v
                                    for k, v in converted.items()}, strict=False, assign=True)
    tensors = len(converted)
    del converted
    if set(loaded.missing_keys) - set(tied) or loaded.unexpected_keys:  # convert_state_dict checked this already
        raise ValueError(f"internal key mismatch: {loaded.missing_keys} / {loaded.unexpected_keys}")
    model.tie_weights()
    still_meta = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if still_meta:
        raise ValueError(f"internal error: tensors left uninitialised after conversion: {still_meta[:8]}")
    model.eval()
    carry_generation_config(model, generation_config)
    report = ConversionReport(str(source), str(out.given), architecture, target_class.__name__, tensors,
                              dtype=str(written_dtype).removeprefix("torch."), notes=family.notes)
    if model.can_generate():
        report.generation_settings = settings_summary(generation_config)
        report.generation_fields_unread = carried_unread
    if verify:
        # The reference reads the same lazily mapped tensors we converted from: one mapping of the file, not two.
        reference_class = family.reference_class(architecture)
        reference = reference_class.from_pretrained(
            None, config=reference_class.config_class.from_pretrained(folder),
            state_dict={key: weights[key] for key in keys}, attn_implementation="eager",
            dtype=torch.float32,  # transformers 5 would otherwise keep a half-precision source's dtype ("auto")
        ).eval()
        carry_generation_config(reference, generation_config)  # as from_pretrained(folder) would have it
        report.parity = check_parity(reference, model)  # raises ValueError when the outputs differ
        del reference  # before saving, which holds a serialized copy
        gc.collect()
    model.to(written_dtype)  # exact for the source's own dtype: its values were only upcast
    with out.staged(sources=[folder, layout.root] if layout else [folder]) as staging:
        model.save_pretrained(staging)
        report.carried = carry_files(folder, staging)
        _write_model_card(staging, report, config_dict)
        if layout:  # the other modules and files where modules.json expects them; encode() parity
            carried, report.encode_parity, note = complete_folder(layout, staging, verify)
            report.carried += carried
            report.notes = "; ".join(filter(None, (report.notes, note)))
    return report


def text_vocab_size(config) -> Optional[int]:
    """The vocabulary of a config, or of a dual encoder's text tower (CLIP); None for a model without tokens."""
    return getattr(getattr(config, "text_config", config), "vocab_size", None)


def carry_files(source: Path, destination: Path) -> list[str]:
    """Copy the tokenizer and generation-config files the destination does not have yet; returns their names."""
    carried = []
    for name in CARRIED_FILES:
        if (source / name).exists() and not (destination / name).exists():
            shutil.copy2(source / name, destination / name)
            carried.append(name)
    return carried


def _write_model_card(folder: Path, report: ConversionReport, source_config: dict) -> None:
    tag, auto_class = pipeline_tag_and_auto_class(report.target_class)
    parity = report.parity
    figures = ["not verified (converted with --no-verify)"] if parity is None else card_figures(
        parity.checks, parity.rule, "Against the source on random padded inputs, in float32")
    if parity is not None and parity.greedy_identical is not None:
        figures.append(f"greedy tokens identical: {parity.greedy_identical}")
    if parity is not None and parity.own_settings_identical is not None:
        figures.append(f"generate() under the checkpoint's own settings ({parity.generation_settings}) gives "
                       f"identical tokens: {parity.own_settings_identical}")
    notes = [report.notes] if report.notes else []
    if report.generation_fields_unread:
        notes.append(f"generation_config fields transformers does not read, carried unchanged: "
                     f"{', '.join(report.generation_fields_unread)}")
    write_model_card(folder, ModelCardFacts(
        title=f"{report.target_class} converted from {report.architecture}",
        pipeline_tag=tag, base_model=hub_repo_id(report.source), tags=["converted", source_config["model_type"]],
        summary=f"Converted by hf_tformer from `{report.source}` ({source_config['model_type']}, "
                f"{report.architecture}): the same function on hf_tformer's shared Transformer core. Weights stored "
                f"as {report.dtype} safetensors; the modeling code travels with them (remote code).",
        figures=figures, notes=notes,
        usage=f"import transformers\n\nmodel = transformers.{auto_class}.from_pretrained(\"PATH_OR_REPO_ID\", "
              f"trust_remote_code=True)\n# pipeline: transformers.pipeline(\"{tag}\", model=\"PATH_OR_REPO_ID\", "
              f"trust_remote_code=True)",
    ))
