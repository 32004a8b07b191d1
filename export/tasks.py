"""What the export supports: model types, their tasks, the opset, the attention modes.

Kept free of optimum imports so the command line can describe the export (`hf-tformer export onnx --help`) in any
environment, including one without optimum-onnx (transformers 5).
"""

ENCODER, DECODER, ENCODER_DECODER = "hf_tformer_encoder", "hf_tformer_decoder", "hf_tformer_encoder_decoder"
VISION = "hf_tformer_vit"
# The CLIP-style dual encoder and its towers (saved alone, with or without their projection).
CLIP, CLIP_TEXT, CLIP_VISION = "hf_tformer_clip", "hf_tformer_clip_text", "hf_tformer_clip_vision"
WHISPER = "hf_tformer_whisper"  # the speech encoder-decoder

# ONNX opset 18: LayerNormalization is a single op and every op our graphs use has a CPU and CUDA kernel in ORT
# 1.20+. Fused attention uses ORT's com.microsoft Attention / MultiHeadAttention contrib ops, which exist at any
# opset. The standard opset-23 `Attention` op takes q, k, v after projection and a (batch, 1, q, kv) mask, so it
# cannot absorb the q/k/v projection GEMM the way com.microsoft.Attention does.
DEFAULT_OPSET = 18
# The lowest opset every export works at (measured, torch 2.13): the plain path's aten::scaled_dot_product_attention
# exports from opset 14; below, torch refuses it, and the fused graphs fail in ONNX Runtime (a bool Pad) at 11.
MIN_OPSET = 14

TASKS: dict[str, tuple[str, ...]] = {
    ENCODER: ("feature-extraction", "fill-mask", "text-classification", "token-classification", "question-answering"),
    DECODER: ("feature-extraction", "text-generation", "text-generation-with-past", "text-classification"),
    ENCODER_DECODER: ("feature-extraction", "text2text-generation", "text2text-generation-with-past"),
    VISION: ("feature-extraction", "image-feature-extraction", "image-classification"),
    # As optimum exports native CLIP: one graph (input_ids, pixel_values, attention_mask -> logits_per_image,
    # logits_per_text, text_embeds, image_embeds) for both tasks; the towers as optimum's clip-text / clip_vision_model.
    CLIP: ("zero-shot-image-classification", "feature-extraction"),
    CLIP_TEXT: ("feature-extraction",),
    CLIP_VISION: ("feature-extraction", "image-feature-extraction"),
    # As optimum exports native Whisper: encoder_model.onnx (input_features -> last_hidden_state) and the decoder
    # (decoder_model.onnx; with past also decoder_with_past_model.onnx and the merged one), run by
    # ORTModelForSpeechSeq2Seq with transformers' Whisper generation.
    WHISPER: ("automatic-speech-recognition", "automatic-speech-recognition-with-past"),
}
# Task names optimum's TasksManager maps to another (its _SYNONYM_TASK_MAP): exported as the task they map to.
TASK_SYNONYMS = {"image-feature-extraction": "feature-extraction"}

ATTENTION_MODES = ("fused", "plain")
# Tasks exported as an encoder graph + decoder graphs (optimum's encoder_model / decoder_model / decoder_with_past).
SEQ2SEQ_TASKS = ("text2text-generation", "automatic-speech-recognition")


# The transformers Auto class that loads a checkpoint for each task (the model the export traces and validates).
AUTO_CLASSES = {
    "feature-extraction": "AutoModel", "fill-mask": "AutoModelForMaskedLM",
    "text-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification", "question-answering": "AutoModelForQuestionAnswering",
    "text-generation": "AutoModelForCausalLM", "text-generation-with-past": "AutoModelForCausalLM",
    "text2text-generation": "AutoModelForSeq2SeqLM", "text2text-generation-with-past": "AutoModelForSeq2SeqLM",
    "image-classification": "AutoModelForImageClassification",
    "zero-shot-image-classification": "AutoModelForZeroShotImageClassification",
    "automatic-speech-recognition": "AutoModelForSpeechSeq2Seq",
    "automatic-speech-recognition-with-past": "AutoModelForSpeechSeq2Seq",
}


def auto_class_name(model_type: str, task: str) -> str:
    """The Auto class name that loads `model_type` for `task` (synonyms resolved); ValueError for a task the model
    type does not have."""
    return AUTO_CLASSES[optimum_task(model_type, task)]


def check_opset(opset: int) -> None:
    """A ValueError, before any work, for an opset outside what our graphs export at (MIN_OPSET to torch's max)."""
    from torch.onnx import _constants  # torch's own ceiling (23 in torch 2.13); a newer opset fails in torch

    highest = getattr(_constants, "ONNX_MAX_OPSET", DEFAULT_OPSET)
    if not MIN_OPSET <= opset <= highest:
        raise ValueError(f"--opset {opset} is not supported: hf_tformer graphs export at opsets {MIN_OPSET} to "
                         f"{highest} with this torch; leave --opset out for the default, {DEFAULT_OPSET}.")


def is_seq2seq(task: str) -> bool:
    return task.removesuffix("-with-past") in SEQ2SEQ_TASKS


def is_generative(task: str) -> bool:
    """Tasks validated by greedy generation too (ORT's tokens must equal PyTorch's)."""
    return task.startswith("text-generation") or is_seq2seq(task)


def supported_tasks(model_type: str) -> tuple[str, ...]:
    if model_type not in TASKS:
        raise ValueError(f"model_type={model_type!r} is not an hf_tformer model type; expected one of {sorted(TASKS)}.")
    return TASKS[model_type]


def optimum_task(model_type: str, task: str) -> str:
    """The task name optimum exports `task` under for `model_type` (synonyms resolved); ValueError listing the
    valid tasks when the model type does not support it."""
    if task not in supported_tasks(model_type):
        raise ValueError(f"task={task!r} is not supported for {model_type}; valid tasks: "
                         f"{list(supported_tasks(model_type))}.")
    return TASK_SYNONYMS.get(task, task)


def registered_tasks(model_type: str) -> tuple[str, ...]:
    """The tasks to register with optimum's TasksManager (which knows synonyms by their canonical name only)."""
    return tuple(task for task in supported_tasks(model_type) if task not in TASK_SYNONYMS)
