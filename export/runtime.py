"""Loading an export into ONNX Runtime model classes, on the execution provider the user asked for: ours (ort_*.py,
any transformers version) by default, optimum's ORTModel* (transformers 4.57 with optimum-onnx) on request.

onnxruntime-gpu lists the CUDA provider even on a machine without a GPU, and a session asked for it silently runs
on CPU. We check first and say so: a user who asked for CUDA learns that they got CPU.
"""

import functools
import json
import warnings
from pathlib import Path
from typing import Any, Optional

from .tasks import TASK_SYNONYMS, is_seq2seq

ORT_CLASSES = {
    "feature-extraction": "ORTModelForFeatureExtraction",
    "fill-mask": "ORTModelForMaskedLM",
    "text-classification": "ORTModelForSequenceClassification",
    "token-classification": "ORTModelForTokenClassification",
    "question-answering": "ORTModelForQuestionAnswering",
    "text-generation": "ORTModelForCausalLM",
    "text-generation-with-past": "ORTModelForCausalLM",
    "text2text-generation": "ORTModelForSeq2SeqLM",
    "text2text-generation-with-past": "ORTModelForSeq2SeqLM",
    "image-classification": "ORTModelForImageClassification",
    "zero-shot-image-classification": "ORTModelForZeroShotImageClassification",
    # our speech model is routed to optimum's ORTModelForWhisper (Whisper's generate) by onnx_configs.register()
    "automatic-speech-recognition": "ORTModelForSpeechSeq2Seq",
    "automatic-speech-recognition-with-past": "ORTModelForSpeechSeq2Seq",
}
# Our classes, by the same task names: (module, class).
OUR_CLASSES = {
    "feature-extraction": ("ort_heads", "TformerORTModelForFeatureExtraction"),
    "fill-mask": ("ort_heads", "TformerORTModelForMaskedLM"),
    "text-classification": ("ort_heads", "TformerORTModelForSequenceClassification"),
    "token-classification": ("ort_heads", "TformerORTModelForTokenClassification"),
    "question-answering": ("ort_heads", "TformerORTModelForQuestionAnswering"),
    "text-generation": ("ort_causal_lm", "TformerORTModelForCausalLM"),
    "text-generation-with-past": ("ort_causal_lm", "TformerORTModelForCausalLM"),
    "text2text-generation": ("ort_seq2seq", "TformerORTModelForSeq2SeqLM"),
    "text2text-generation-with-past": ("ort_seq2seq", "TformerORTModelForSeq2SeqLM"),
    "image-classification": ("ort_heads", "TformerORTModelForImageClassification"),
    "zero-shot-image-classification": ("ort_heads", "TformerORTModelForZeroShotImageClassification"),
    "automatic-speech-recognition": ("ort_seq2seq", "TformerORTModelForSpeechSeq2Seq"),
    "automatic-speech-recognition-with-past": ("ort_seq2seq", "TformerORTModelForSpeechSeq2Seq"),
}
BACKENDS = ("hf_tformer", "optimum")
# Where the class depends on the model type too: the dual encoder's feature-extraction graph is its zero-shot graph
# (as optimum exports native CLIP), which ORTModelForFeatureExtraction cannot run (it returns last_hidden_state only).
ORT_CLASSES_BY_MODEL_TYPE = {("hf_tformer_clip", "feature-extraction"): "ORTModelForZeroShotImageClassification"}


# Word-level timestamps are read from the decoder's cross-attention weights of the checkpoint's alignment heads;
# the exported decoder (optimum's Whisper outputs: logits and present key/values, attention fused into one op) has
# none, and transformers' Whisper generation fails deep inside on optimum's stand-in model (AttributeError).
TOKEN_TIMESTAMPS_REFUSED = (
    "token-level timestamps (generate(return_token_timestamps=True), or the pipeline's return_timestamps='word') are "
    "not available from the ONNX export: Whisper reads them from the decoder's cross-attention weights of its "
    "alignment heads, which the exported decoder does not output. Use the PyTorch model for them "
    "(transformers.AutoModelForSpeechSeq2Seq.from_pretrained(<the hf_tformer checkpoint>, trust_remote_code=True)), "
    "or return_timestamps=True for segment-level timestamps, which the export gives.")


@functools.cache
def speech_ort_class() -> type:
    """optimum's ORTModelForWhisper (transformers' Whisper generation over the ONNX graphs) for our speech model,
    refusing token-level timestamps with a ValueError that says what to do (register() routes loading here)."""
    from optimum.onnxruntime.modeling_seq2seq import ORTModelForWhisper

    class TformerORTModelForWhisper(ORTModelForWhisper):
        def generate(self, *args: Any, **kwargs: Any):
            if kwargs.get("return_token_timestamps"):
                raise ValueError(TOKEN_TIMESTAMPS_REFUSED)
            return super().generate(*args, **kwargs)

    return TformerORTModelForWhisper


def ort_class_name(task: str, model_type: Optional[str] = None) -> str:
    """The optimum ORTModel class name that loads an export of `model_type` for `task`."""
    task = TASK_SYNONYMS.get(task, task)
    if (model_type, task) in ORT_CLASSES_BY_MODEL_TYPE:
        return ORT_CLASSES_BY_MODEL_TYPE[model_type, task]
    if task not in ORT_CLASSES:
        raise ValueError(f"task={task!r} has no ONNX Runtime model class; expected one of {sorted(ORT_CLASSES)}.")
    return ORT_CLASSES[task]


class CudaUnavailableWarning(UserWarning):
    """CUDA was requested but ONNX Runtime will run on CPU."""


def cuda_unavailable_reason() -> Optional[str]:
    """None when ONNX Runtime can run on CUDA here; otherwise why not."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return f"this onnxruntime build has no CUDA provider ({onnxruntime.get_available_providers()})"
    try:
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device is visible (torch.cuda.is_available() is False)"
    except ImportError:
        pass
    return None


def resolve_provider(device: str) -> str:
    """'cpu' | 'cuda' -> an ORT provider; CUDA without a GPU warns (CudaUnavailableWarning) and falls back to CPU."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; use 'cpu' or 'cuda'.")
    if device == "cuda":
        reason = cuda_unavailable_reason()
        if reason is None:
            return "CUDAExecutionProvider"
        warnings.warn(f"CUDA was requested but {reason}; running on the CPU execution provider instead.",
                      CudaUnavailableWarning, stacklevel=2)
    return "CPUExecutionProvider"


def variant_name(graph: str, variant: Optional[str]) -> str:
    """`decoder_model.onnx` + "quantized" -> `decoder_model_quantized.onnx` (optimum's naming); None keeps it."""
    return graph if variant is None else graph.replace(".onnx", f"_{variant}.onnx")


def _file_names(folder: Path, task: str, variant: Optional[str]) -> dict[str, str]:
    """The file-name arguments that point an ORTModel at one variant of every graph in the folder."""
    if variant is None:
        return {}
    if not is_seq2seq(task):
        return {"file_name": variant_name("model.onnx", variant)}
    names = {"encoder_file_name": "encoder_model.onnx", "decoder_file_name": "decoder_model.onnx",
             "decoder_with_past_file_name": "decoder_with_past_model.onnx"}
    return {argument: variant_name(graph, variant) for argument, graph in names.items()
            if (folder / variant_name(graph, variant)).exists()}


def _model_type(folder: Path) -> Optional[str]:
    config = folder / "config.json"
    return json.loads(config.read_text()).get("model_type") if config.is_file() else None


def ort_class(task: str, model_type: Optional[str] = None) -> type:
    """Our ONNX Runtime model class for `task` (the dual encoder's feature extraction runs its zero-shot graph)."""
    import importlib

    task = TASK_SYNONYMS.get(task, task)
    if (model_type, task) in ORT_CLASSES_BY_MODEL_TYPE:
        task = "zero-shot-image-classification"
    if task not in OUR_CLASSES:
        raise ValueError(f"task={task!r} has no ONNX Runtime model class; expected one of {sorted(OUR_CLASSES)}.")
    module, name = OUR_CLASSES[task]
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def load_ort_model(folder: str | Path, task: str, device: str = "cpu", variant: Optional[str] = None,
                   backend: str = "hf_tformer", **kwargs):
    """The ONNX Runtime model for `task` over an export folder (remote config code trusted).

    variant: None for the fp32 graphs, "quantized" or "fp16" for the `*_quantized.onnx` / `*_fp16.onnx` ones.
    backend: "hf_tformer" (our classes, ort_*.py, any transformers version) or "optimum" (optimum's ORTModel*,
    which needs optimum-onnx and so transformers 4.57)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not supported; choose one of {list(BACKENDS)}.")
    if backend == "hf_tformer":  # ort_class resolves synonyms and refuses an unknown task
        return ort_class(task, _model_type(Path(folder))).from_pretrained(
            folder, provider=resolve_provider(device), variant=variant, **kwargs)
    from .__main__ import require_optimum_onnx

    require_optimum_onnx()  # a ValueError saying where optimum runs, not a ModuleNotFoundError
    import optimum.onnxruntime as ort_models

    from .onnx_configs import register

    register()
    task = TASK_SYNONYMS.get(task, task)  # image-feature-extraction runs as feature-extraction
    if task not in ORT_CLASSES:
        raise ValueError(f"task={task!r} has no ONNX Runtime model class; expected one of {sorted(ORT_CLASSES)}.")
    provider = resolve_provider(device)
    extra = _file_names(Path(folder), task, variant)
    if provider == "CUDAExecutionProvider":
        extra["use_io_binding"] = True
    if task in ("text-generation", "text2text-generation", "automatic-speech-recognition"):  # no past: no cache
        extra["use_cache"] = False
    model_class = getattr(ort_models, ort_class_name(task, _model_type(Path(folder))))
    return model_class.from_pretrained(str(folder), provider=provider, trust_remote_code=True, **extra, **kwargs)
