"""What the export supports: model types, their tasks, the opset, the attention modes.

Kept free of optimum imports so the command line can describe the export (`hf-tformer export onnx --help`) in any
environment, including one without optimum-onnx (transformers 5).
"""

ENCODER, DECODER, ENCODER_DECODER = "hf_tformer_encoder", "hf_tformer_decoder", "hf_tformer_encoder_decoder"

# ONNX opset 18: LayerNormalization is a single op and every op our graphs use has a CPU and CUDA kernel in ORT
# 1.20+. Fused attention uses ORT's com.microsoft Attention / MultiHeadAttention contrib ops, which exist at any
# opset. The standard opset-23 `Attention` op takes q, k, v after projection and a (batch, 1, q, kv) mask, so it
# cannot absorb the q/k/v projection GEMM the way com.microsoft.Attention does.
DEFAULT_OPSET = 18

TASKS: dict[str, tuple[str, ...]] = {
    ENCODER: ("feature-extraction", "fill-mask", "text-classification", "token-classification", "question-answering"),
    DECODER: ("feature-extraction", "text-generation", "text-generation-with-past", "text-classification"),
    ENCODER_DECODER: ("feature-extraction", "text2text-generation", "text2text-generation-with-past"),
}

ATTENTION_MODES = ("fused", "plain")


def supported_tasks(model_type: str) -> tuple[str, ...]:
    if model_type not in TASKS:
        raise ValueError(f"model_type={model_type!r} is not an hf_tformer model type; expected one of {sorted(TASKS)}.")
    return TASKS[model_type]
