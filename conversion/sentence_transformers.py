"""sentence-transformers folders: the Transformer module is converted, every other module is carried unchanged.

A sentence-transformers folder (`modules.json`) is a pipeline: a Transformer module (a transformers checkpoint at
the folder root, modules.json path "", or in a subfolder such as `0_Transformer/` in older folders) followed by
stock modules (Pooling, Dense, Normalize, ...) that work on its token embeddings. Only the Transformer's weights
change; so the converted folder keeps modules.json, config_sentence_transformers.json, sentence_bert_config.json and
the other modules' folders as they were, and `encode()` of the whole pipeline is checked against the source's.

How sentence-transformers (5.7 and 6.2) loads a remote-code Transformer module, and so what the folder must hold:
- `trust_remote_code` cannot be recorded in the folder: Transformer.load_config drops it from the model / config /
  processor kwargs of sentence_bert_config.json. The caller's `SentenceTransformer(path, trust_remote_code=True)`
  reaches AutoConfig, AutoModel and AutoProcessor, and config.json's `auto_map` names our modeling code.
- The module is loaded as `from_pretrained(root, subfolder=path)`, but transformers fetches remote code from the
  repository root whatever the subfolder: for a subfolder layout, the modeling .py files are also put at the root.
Detecting a folder reads JSON only; sentence-transformers itself is imported only to check encode() parity.
"""

import fnmatch
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import torch

from .clients import require_client
from .tolerance import Compared, check_finite

MODULES_FILE = "modules.json"
MODULE_CONFIG_FILE = "sentence_bert_config.json"
PIPELINE_CONFIG_FILE = "config_sentence_transformers.json"
# Stock modules that read only the previous module's output (token or sentence embeddings), carried unchanged.
CARRIED_MODULES = ("Pooling", "Dense", "Normalize", "LayerNorm", "Dropout")
# Transformer-module model kwargs that from_pretrained itself takes; any other would reach our model's constructor.
LOAD_KWARGS = ("dtype", "torch_dtype", "attn_implementation", "low_cpu_mem_usage", "device_map", "trust_remote_code")
# The source model's own files in the Transformer module's folder: replaced by the converted model's, not carried.
MODEL_FILES = ("config.json", "*.safetensors", "*.safetensors.index.json", "*.bin", "*.bin.index.json", "*.h5",
               "*.msgpack", "*.py")
COSINE_GATE = 0.99999
SENTENCES = ("the quick brown fox jumps over the lazy dog", "a",
             "Paris is the capital of France, and Berlin is the capital of Germany.",
             "hugging face pipelines run models on text with a single call")


@dataclass(frozen=True)
class Layout:
    root: Path
    transformer_path: str  # "" when the Transformer module sits at the root
    module_paths: tuple[str, ...]  # the other modules' folders

    @property
    def transformer_folder(self) -> Path:
        return self.root / self.transformer_path


@dataclass
class EncodeParity:
    """SentenceTransformer.encode() of the converted folder against the source's, on SENTENCES (fp32)."""
    min_cosine: float
    max_abs_diff: float
    sentences: int


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not readable JSON ({error}); is this a complete sentence-transformers folder?"
                         ) from error


def _module_class(module: dict) -> str:
    """`sentence_transformers.models.Pooling` (any version's path) -> "Pooling"; "" for a custom module."""
    kind = str(module.get("type", ""))
    return kind.rsplit(".", 1)[-1] if kind.startswith("sentence_transformers.") else ""


def read_layout(folder: Path, model_types: Iterable[str]) -> Optional[Layout]:
    """None for a plain checkpoint; else the layout of the sentence-transformers folder, after refusing by name what
    the conversion cannot carry (custom modules, a second Transformer, a task or kwargs our model cannot take, a
    Transformer module whose config.json model_type is not among `model_types`)."""
    if not (folder / MODULES_FILE).exists():
        return None
    pipeline = _read_json(folder / PIPELINE_CONFIG_FILE) if (folder / PIPELINE_CONFIG_FILE).exists() else {}
    kind = pipeline.get("model_type", "SentenceTransformer")
    if kind != "SentenceTransformer":
        raise ValueError(f"{folder} is a sentence-transformers {kind} folder; only SentenceTransformer folders "
                         "convert (a Transformer module followed by stock modules).")
    modules = _read_json(folder / MODULES_FILE)
    if not isinstance(modules, list) or not all(isinstance(m, dict) and "path" in m for m in modules):
        raise ValueError(f"{folder / MODULES_FILE} is not a list of modules with a `path` each.")
    transformers_ = [m for m in modules if _module_class(m) == "Transformer"]
    others = [m for m in modules if _module_class(m) != "Transformer"]
    for module in others:
        if _module_class(module) not in CARRIED_MODULES:
            raise ValueError(f"module {module.get('name')!r} in {MODULES_FILE} has type {module.get('type')!r}, which "
                             f"hf_tformer cannot carry through conversion (custom or remote-code modules, and stock "
                             f"modules that hold or read a model of their own, are not supported). Supported: one "
                             f"sentence_transformers Transformer module plus {', '.join(CARRIED_MODULES)}.")
    if len(transformers_) != 1:
        raise ValueError(f"{folder / MODULES_FILE} has {len(transformers_)} Transformer modules; exactly one converts.")
    layout = Layout(folder, transformers_[0]["path"], tuple(m["path"] for m in others))
    _check_transformer_module(layout, tuple(model_types))
    return layout


def _check_transformer_module(layout: Layout, model_types: tuple[str, ...]) -> None:
    where = f"the sentence-transformers Transformer module ({layout.transformer_path or 'at the folder root'})"
    config_path = layout.transformer_folder / "config.json"
    model_type = _read_json(config_path).get("model_type") if config_path.exists() else None
    if model_type not in model_types:
        raise ValueError(f"{where} holds model_type={model_type!r}, which this conversion does not take; "
                         f"supported: {sorted(model_types)}.")
    settings_path = layout.transformer_folder / MODULE_CONFIG_FILE
    settings = _read_json(settings_path) if settings_path.exists() else {}
    task = settings.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise ValueError(f"{where} has transformer_task={task!r} in {MODULE_CONFIG_FILE}; only 'feature-extraction' "
                         "(token embeddings from the base model) is supported.")
    for name in ("config_kwargs", "config_args"):
        kwargs = {k: v for k, v in (settings.get(name) or {}).items() if k != "trust_remote_code"}
        if kwargs:
            raise ValueError(f"{where} sets {name}={kwargs} in {MODULE_CONFIG_FILE}: they name {model_type} config "
                             "fields, which mean nothing (or something else) to the converted config. Fold them into "
                             "config.json first, or remove them.")
    for name in ("model_kwargs", "model_args"):
        unknown = sorted(set(settings.get(name) or {}) - set(LOAD_KWARGS))
        if unknown:
            raise ValueError(f"{where} sets {name} {unknown} in {MODULE_CONFIG_FILE}, which the converted model does "
                             f"not take; supported: {list(LOAD_KWARGS)}.")
    methods = sorted({str(entry.get("method", "forward")) for entry in (settings.get("modality_config") or {}).values()
                      if isinstance(entry, dict)} - {"forward"})
    if methods:
        raise ValueError(f"{where} calls {methods} (modality_config in {MODULE_CONFIG_FILE}); the converted model "
                         "offers forward() only.")


def _is_model_file(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in MODEL_FILES)


def _carry_files(source: Path, destination: Path) -> list[str]:
    """Files of `source` that `destination` lacks, except the source model's own (weights, config, code)."""
    carried = []
    for path in sorted(source.iterdir()):
        if path.is_file() and not (destination / path.name).exists() and not _is_model_file(path.name):
            shutil.copy2(path, destination / path.name)  # follows Hub-cache symlinks: a real file
            carried.append(path.name)
    return carried


def sentence_transformers_installed() -> bool:
    return importlib.util.find_spec("sentence_transformers") is not None


def complete_folder(layout: Layout, staging: Path, verify: bool) -> tuple[list[str], Optional[EncodeParity], str]:
    """`staging` holds the converted Transformer module (saved at its root): put it where modules.json expects it,
    carry the other modules and the sentence-transformers files, then check encode() parity when verifying and
    sentence-transformers is installed. Returns (names carried, parity or None, a note or "")."""
    module_folder = staging / layout.transformer_path
    if layout.transformer_path:
        written = list(staging.iterdir())
        module_folder.mkdir(parents=True)
        for path in written:
            path.rename(module_folder / path.name)
        for code in module_folder.glob("*.py"):  # transformers reads remote code from the root only
            shutil.copy2(code, staging / code.name)
    carried = [str(Path(layout.transformer_path, name)) for name in _carry_files(layout.transformer_folder,
                                                                                  module_folder)]
    if layout.transformer_path:  # the root's own files: modules.json, config_sentence_transformers.json, the card
        carried += _carry_files(layout.root, staging)
    for path in layout.module_paths:
        if (layout.root / path).is_dir():  # a Hub repo has no empty folders: a Normalize module may have none
            shutil.copytree(layout.root / path, staging / path)  # follows Hub-cache symlinks
            carried.append(f"{path}/")
    skipped = sorted(p.name + "/" for p in layout.root.iterdir() if p.is_dir() and not p.name.startswith(".")
                     and p.name not in {layout.transformer_path, *layout.module_paths})
    notes = [f"not carried (no module of modules.json; e.g. the source model's exports, stale after conversion): "
             f"{', '.join(skipped)}"] if skipped else []
    parity = None
    if verify and not sentence_transformers_installed():
        notes.append("sentence-transformers is not installed: encode() of the whole pipeline was not checked")
    elif verify:
        parity = encode_parity(layout.root, staging)
    return carried, parity, "; ".join(notes)


def encode_parity(reference: Path, converted: Path) -> EncodeParity:
    """Both folders through SentenceTransformer in this process, in fp32; ValueError below COSINE_GATE.

    The converted folder loads without trust_remote_code here: importing hf_tformer registered our classes with the
    Auto classes, so the check reads the written files (config, weights, modules) without caching remote code."""
    require_client("sentence-transformers")
    import hf_tformer  # noqa: F401  (registers our configs / models with the Auto classes)
    from sentence_transformers import SentenceTransformer

    embeddings = []
    for folder in (reference, converted):
        model = SentenceTransformer(str(folder), device="cpu").float().eval()
        with torch.no_grad():
            embeddings.append(model.encode(list(SENTENCES), convert_to_tensor=True, batch_size=len(SENTENCES)))
        del model
    expected, actual = embeddings
    if expected.shape != actual.shape:
        raise ValueError(f"sentence-transformers parity failed: embeddings of shape {tuple(actual.shape)}, the source "
                         f"gives {tuple(expected.shape)}; nothing was written.")
    check_finite([Compared("the embeddings", expected, actual)], "sentence-transformers parity failed",
                 ("the source's encode()", "the converted folder's encode()"))
    cosine = float(torch.nn.functional.cosine_similarity(actual, expected, dim=-1).min())
    parity = EncodeParity(cosine, float((actual - expected).abs().max()), len(SENTENCES))
    if not cosine >= COSINE_GATE:
        raise ValueError(f"sentence-transformers parity failed: encode() min cosine {cosine:.7f} < {COSINE_GATE} "
                         f"against the source (max |diff| {parity.max_abs_diff:.2e}); nothing was written.")
    return parity
