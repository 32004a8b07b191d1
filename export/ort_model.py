"""ONNX Runtime behind transformers' model API: an export folder's graphs as a PreTrainedModel without weights.

Following optimum's ORTModel API (`from_pretrained(folder, provider=..., file_name=...)`, `.config`,
`.generation_config`, `generate()`, pipelines), but needing neither optimum nor a particular transformers version:
these classes are what runs our exports on transformers 5.x, where optimum-onnx does not install.

Inputs and outputs are torch tensors on the CPU, as transformers' pipelines and generate() expect; the graphs run
on the execution provider asked for (CPU, or CUDA where it is there; see runtime.resolve_provider).
"""

import json
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from transformers import GenerationConfig, PreTrainedModel

from .config_code import load_config
from .tasks import TASKS

# ONNX element types of our graphs' inputs -> numpy, and the torch dtype that converts to it without a copy
_NUMPY_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32,
                "tensor(float16)": np.float16, "tensor(bool)": np.bool_}
_TORCH_TYPES = {np.int64: torch.int64, np.int32: torch.int32, np.float32: torch.float32, np.float16: torch.float16,
                np.bool_: torch.bool}


class OrtSession:
    """One graph: an InferenceSession plus its input names and types; runs named torch tensors, returns named ones."""

    def __init__(self, path: Path, provider: str, session_options: Any = None,
                 provider_options: Optional[dict] = None) -> None:
        import onnxruntime

        self.path = path
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        options = [provider_options or {}] + ([] if len(providers) == 1 else [{}])
        self.session = onnxruntime.InferenceSession(str(path), sess_options=session_options, providers=providers,
                                                    provider_options=options)
        self.input_types = {i.name: _NUMPY_TYPES.get(i.type, np.float32) for i in self.session.get_inputs()}
        self.input_names = list(self.input_types)
        self.output_names = [o.name for o in self.session.get_outputs()]
        # (name, numpy type, torch type) per input: run() is on every generated token's path, so it does no lookups
        self._feed_plan = [(name, kind, _TORCH_TYPES[kind]) for name, kind in self.input_types.items()]

    def run(self, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Every graph input must be in `inputs` (extra entries are ignored)."""
        feed = {}
        for name, kind, torch_kind in self._feed_plan:
            value = inputs.get(name)
            if value is None:
                missing = [name for name in self.input_names if inputs.get(name) is None]
                raise ValueError(f"{self.path.name} needs the inputs {missing}; pass them to the model.")
            if (type(value) is torch.Tensor and value.dtype is torch_kind and not value.requires_grad
                    and value.device.type == "cpu" and value.is_contiguous()):
                feed[name] = value.numpy()  # shares the tensor's memory: no copy on the per-token path
            else:
                feed[name] = _to_numpy(value, kind)
        return dict(zip(self.output_names, map(torch.from_numpy, self.session.run(self.output_names, feed))))


def _to_numpy(value: Any, dtype: type) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.numpy() if value.dtype != torch.bfloat16 else value.float().numpy()
    return np.ascontiguousarray(value, dtype=dtype)


def graph_file(folder: Path, name: str, variant: Optional[str]) -> Path:
    """`model.onnx` + variant "quantized" -> folder/model_quantized.onnx, which must exist."""
    path = folder / (name if variant is None else name.replace(".onnx", f"_{variant}.onnx"))
    if not path.is_file():
        present = sorted(p.name for p in folder.glob("*.onnx"))
        raise ValueError(f"{path} does not exist (the folder has {present or 'no .onnx files'}); export the "
                         "checkpoint with `hf-tformer export onnx` (--quantize / --fp16 for the variants).")
    return path


class TformerORTModel(PreTrainedModel):
    """Base class: the graphs named in `graph_names` (required) and `optional_graph_names`, loaded from a folder."""

    graph_names: tuple[str, ...] = ("model.onnx",)
    optional_graph_names: tuple[str, ...] = ()
    output_class: Any = None  # the ModelOutput class forward returns (single-graph heads)
    _supports_sdpa = True  # nothing to choose here; keeps transformers from warning about attention backends

    def __init__(self, config, sessions: Optional[dict[str, OrtSession]] = None, folder: Optional[Path] = None,
                 provider: str = "CPUExecutionProvider") -> None:
        super().__init__(config)
        self.sessions = sessions or {}
        self.model_save_dir = folder
        self.provider = provider
        # Parameter-free: transformers' dtype / device queries look for a parameter or buffer; keep one empty one.
        self.register_buffer("_device_anchor", torch.zeros(0), persistent=False)

    @property
    def session(self) -> OrtSession:
        return self.sessions[self.graph_names[0]]

    @classmethod
    def from_pretrained(cls, model_id: str | Path, *args: Any, provider: str = "CPUExecutionProvider",
                        variant: Optional[str] = None, session_options: Any = None,
                        provider_options: Optional[dict] = None, config: Any = None, **kwargs: Any):
        """Load the export in `model_id`: a local folder, or a Hub repo id (downloaded into, or with HF_HUB_OFFLINE=1
        read from, the Hub cache; `revision`, `token`, `cache_dir` go to huggingface_hub.snapshot_download).
        variant: None (fp32 graphs), "quantized" or "fp16".

        Remote config code is the export's own (config.json's auto_map); it is imported under a module named by
        its content, so two exports never share a config module (config_code.py)."""
        from .__main__ import require_onnx_runtime

        require_onnx_runtime(("onnxruntime",))  # a ValueError with the install command, not a ModuleNotFoundError
        folder = Path(model_id)
        if not folder.is_dir():
            folder = snapshot_folder(str(model_id), **{k: kwargs.pop(k) for k in ("revision", "token", "cache_dir")
                                                 if k in kwargs})
        if config is None:
            config = load_config(str(folder), tuple(TASKS), trust_remote_code=True)
        sessions = {}
        for name in cls.graph_names + cls.optional_graph_names:
            if name in cls.optional_graph_names and not (folder / name).is_file():
                continue
            sessions[name] = OrtSession(graph_file(folder, name, variant), provider, session_options,
                                        provider_options)
        model = cls(config, sessions=sessions, folder=folder, provider=provider)
        if (folder / "generation_config.json").is_file():
            model.generation_config = GenerationConfig.from_pretrained(str(folder))
        if getattr(model, "use_cache", None) is False:  # a generative export without past key / value inputs:
            model.generation_config.use_cache = False  # generate() must feed it the whole sequence every step
        model.eval()
        return model

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # outputs come back as CPU tensors whatever the execution provider

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32  # inputs and outputs of every variant (fp16 graphs keep fp32 inputs / outputs)

    def to(self, *args: Any, **kwargs: Any) -> "TformerORTModel":
        return self  # the execution provider, chosen at load time, decides where the graphs run

    def save_pretrained(self, save_directory: str | Path, **kwargs: Any) -> None:
        """Copy the export (graphs, config and code, tokenizer / processor files) into `save_directory`."""
        if self.model_save_dir is None:
            raise ValueError("this model was not loaded from a folder; nothing to save.")
        target = Path(save_directory)
        target.mkdir(parents=True, exist_ok=True)
        if target.resolve() == Path(self.model_save_dir).resolve():
            return  # its own folder: every file is there already (copying a file onto itself raises)
        for path in Path(self.model_save_dir).iterdir():
            if path.is_file():
                shutil.copy2(path, target / path.name)

    def forward(self, **inputs: Any):
        """Single-graph heads: the graph's inputs by name -> `output_class` of its outputs."""
        feed = self.prepare_inputs(inputs)
        return self.output_class(**self.session.run(feed))

    def prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Fill optional text inputs as transformers' models default them (mask: every token; token types: 0)."""
        feed = dict(inputs)
        reference = feed.get("input_ids")
        names = self.session.input_names
        if reference is not None:
            if "attention_mask" in names and feed.get("attention_mask") is None:
                feed["attention_mask"] = torch.ones_like(reference)
            if "token_type_ids" in names and feed.get("token_type_ids") is None:
                feed["token_type_ids"] = torch.zeros_like(reference)
        return feed

    def _init_weights(self, module: Any) -> None:  # nothing to initialise: the weights live in the graphs
        pass


def snapshot_folder(repo_id: str, **hub_kwargs: Any) -> Path:
    """The Hub repo's files in the local cache (no download with HF_HUB_OFFLINE=1); ValueError when neither a folder
    nor a reachable / cached repo."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, **hub_kwargs))
    except Exception as error:  # noqa: BLE001 (huggingface_hub's errors vary by version; the message says it)
        raise ValueError(f"{repo_id!r} is neither a local folder nor a Hub repo found online or in the cache "
                         f"({type(error).__name__}: {error}); pass the folder `hf-tformer export onnx` wrote.") from None


def model_type_of(folder: str | Path) -> Optional[str]:
    config = Path(folder) / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None
