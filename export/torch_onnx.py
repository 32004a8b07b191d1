"""Our own ONNX export: load the checkpoint, route its attention through the fused ONNX Runtime ops, trace each graph
of graphs.py with torch.onnx (TorchScript exporter), and copy what loaders need next to the graphs.

No optimum: runs on every transformers version we support (4.57 and 5.x). The files, input and output names match
optimum's exports of the same tasks, so optimum's ORTModel* (4.57) load them as well as our ort_* classes do.
"""

import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from .graphs import graph_specs
from .tasks import auto_class_name
from .tied_head import share_tied_lm_head

# What a pipeline over the export loads from the checkpoint's folder besides config.json (optimum copies the same).
PREPROCESSOR_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                      "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                      "tokenizer.model", "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
                      "processor_config.json", "normalizer.json")


def checkpoint_class(checkpoint: Path, auto_name: str) -> type:
    """The class `auto_name` (e.g. "AutoModel") loads `checkpoint` with: the checkpoint's own code (config.json's
    auto_map), as transformers 4.57 picks it. transformers 5 prefers a class registered in the process over the
    auto_map (hf_tformer registers one AutoModel class per config class), which loads a CLIP tower saved with its
    projection as the tower without it, dropping the projection."""
    import json

    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    auto_map = json.loads((Path(checkpoint) / "config.json").read_text()).get("auto_map", {})
    if isinstance(auto_map.get(auto_name), str):
        return get_class_from_dynamic_module(auto_map[auto_name], str(checkpoint))
    return getattr(transformers, auto_name)


def load_for_export(checkpoint: Path, model_type: str, task: str, attention: str) -> nn.Module:
    """The PyTorch model for `task`, in eval mode, its attention routed to ORT's fused ops when attention='fused'."""
    import transformers

    kwargs = {}
    if attention == "fused":
        from .fused_attention import ATTN_IMPLEMENTATION, register_fused_attention

        register_fused_attention()
        kwargs["attn_implementation"] = ATTN_IMPLEMENTATION
    else:  # the decomposed MatMul / Softmax graph (torch 2.13 cannot export sdpa's enable_gqa, which 4.57 sets)
        kwargs["attn_implementation"] = "eager"
    model_class = checkpoint_class(checkpoint, auto_class_name(model_type, task))
    # fp32 whatever the checkpoint stores (5.x loads its own dtype by default): graphs are fp32, --fp16 converts
    model = model_class.from_pretrained(str(checkpoint), trust_remote_code=True, dtype=torch.float32, **kwargs).eval()
    share_tied_lm_head(model)  # one initializer for a tied embedding / LM head, not two
    if attention == "fused":
        from .packed_attention import pack_self_attention
        from .packed_causal_attention import pack_causal_self_attention

        pack_self_attention(model)  # encoder self attention -> Attention op; the rest stays MultiHeadAttention
        pack_causal_self_attention(model)  # CLIP's text tower (causal, no cache) -> Attention op, unidirectional
    return model


def export_graphs(model: nn.Module, model_type: str, task: str, folder: Path, opset: int) -> list[str]:
    """Trace every graph of `task` into `folder`; returns the file names written."""
    import onnx

    written = []
    for spec in graph_specs(model, model_type, task):
        path = folder / spec.file_name
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic: shapes are dynamic axes here
            torch.onnx.export(spec.module, tuple(spec.inputs.values()), str(path), input_names=list(spec.inputs),
                              output_names=spec.outputs, dynamic_axes=spec.dynamic_axes, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
        onnx.checker.check_model(str(path))  # by path: graphs over 2 GB keep their weights in external data
        written.append(spec.file_name)
    return written


def save_loading_files(model: nn.Module, checkpoint: Path, folder: Path) -> None:
    """config.json (+ its config code, auto_map), generation_config.json for generative models, and the tokenizer /
    processor files of the checkpoint: what AutoConfig, pipelines and our ORT classes read."""
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None and model.can_generate():
        model.generation_config.save_pretrained(folder)
    for name in PREPROCESSOR_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, folder / name)


