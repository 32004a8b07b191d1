"""Export an hf_tformer checkpoint to ONNX, validate it, and write it atomically.

Steps: check the folder and the task, load the model (fused attention by default), trace its graphs with torch.onnx
into a staging folder next to the destination (torch_onnx.py: our own exporter, no optimum, any transformers
version; optimum's file layout and names), optionally add an INT8 (CPU) and an FP16 (GPU) variant, validate the
fp32 graphs against PyTorch with ONNX Runtime, then rename the staging folder into place. A failed step leaves
nothing.
"""

import collections
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hf_tformer_conversion.staging import check_destination, staged_folder
from hf_tformer_conversion.tolerance import EXPORT_TOLERANCE, ToleranceRule
from hf_tformer_conversion.user_errors import check_folder, read_config_json

from .model_card import write_export_card
from .runtime import variant_name
from .tasks import (ATTENTION_MODES, CLIP, CLIP_VISION, DEFAULT_OPSET, TASKS, VISION, WHISPER, check_opset,
                    optimum_task)
from .tied_head import gemms_to_matmuls
from .genai_config import write_genai_config
from .torch_onnx import export_graphs, load_for_export, save_loading_files
from .validate import ValidationReport, quantization_report, validate_export

FOLDER_FIX = "it is not an hf_tformer checkpoint: export takes a saved hf_tformer checkpoint folder."
QUANTIZED_FILE, FP16_FILE = variant_name("model.onnx", "quantized"), variant_name("model.onnx", "fp16")


class MissingPreprocessorWarning(UserWarning):
    """An image, dual-encoder or speech checkpoint without preprocessor_config.json: optimum copies the checkpoint's
    image processor / feature extractor into the export, and there is none to copy, so pipelines over the export
    find none."""


MissingImageProcessorWarning = MissingPreprocessorWarning  # the earlier name, kept for callers that filter on it
# What each model type's pipelines load from preprocessor_config.json, and how to save one.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
PREPROCESSORS = {VISION: "ViTImageProcessor(...)", CLIP: "CLIPProcessor(image_processor, tokenizer)",
                 CLIP_VISION: "CLIPImageProcessor(...)", WHISPER: "WhisperProcessor(feature_extractor, tokenizer)"}


@dataclass
class ExportReport:
    destination: str
    task: str  # optimum's name for it (image-feature-extraction -> feature-extraction)
    attention: str
    model_type: str = ""
    files: list[str] = field(default_factory=list)
    node_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> {op_type: count}
    validation: list[ValidationReport] = field(default_factory=list)
    quantization: Optional[ValidationReport] = None


def read_model_type(checkpoint: Path) -> str:
    model_type = read_config_json(checkpoint, FOLDER_FIX).get("model_type")
    if model_type not in TASKS:
        raise ValueError(f"{checkpoint} is not an hf_tformer checkpoint (config.json model_type={model_type!r}); "
                         "convert it first with `python -m hf_tformer_conversion`.")
    return model_type


def count_nodes(path: Path) -> dict[str, int]:
    import onnx

    def walk(graph):  # into If / Loop bodies too (optimum's merged decoder keeps both branches in an If)
        for node in graph.node:
            yield node.op_type
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attribute.g)

    model = onnx.load(str(path), load_external_data=False)
    return dict(collections.Counter(walk(model.graph)))


def quantize_int8(source: Path, target: Path) -> None:
    """Dynamic INT8 quantization of the MatMul and packed Attention weights (activations quantized at run time,
    Attention -> QAttention): the CPU path."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    gemms_to_matmuls(model)  # 2-D linears (poolers, classifier heads) export as Gemm: quantize them too
    # DefaultTensorType: shape inference cannot type the outputs of com.microsoft ops (fused attention, layer norms)
    quantize_dynamic(model, str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})


def convert_fp16(source: Path, target: Path) -> None:
    """fp16 weights and activations with fp32 inputs/outputs (keep_io_types): the GPU path."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))


def export_onnx(checkpoint: str, destination: str, task: str, *, attention: str = "fused",
                opset: int = DEFAULT_OPSET, quantize: bool = False, fp16: bool = False, force: bool = False,
                validate: bool = True, tolerance: ToleranceRule = EXPORT_TOLERANCE,
                progress: bool = False) -> ExportReport:
    """Export `checkpoint` (an hf_tformer folder) for `task` into `destination`; raise ValueError on any failure.

    tolerance: the validation's rule per output (hf_tformer_conversion.tolerance); progress: a bar over the steps
    (load, export, variants, validate), for the command line."""
    from tqdm.auto import tqdm

    out, folder = Path(destination), Path(checkpoint)
    check_destination(out, force, sources=[folder])  # never the checkpoint's own folder, the cwd, unrelated files
    check_folder(folder, FOLDER_FIX)
    check_opset(opset)
    model_type = read_model_type(folder)
    task = optimum_task(model_type, task)  # ValueError naming the valid tasks; synonyms -> optimum's name
    # transformers 5 saves a processor's feature extractor / image processor inside processor_config.json
    if model_type in PREPROCESSORS and not any((folder / name).is_file() for name in PROCESSOR_FILES):
        warnings.warn(f"{folder} has no preprocessor_config.json, so the export will have none and pipelines will "
                      f"not find its preprocessor: save the model's (e.g. {PREPROCESSORS[model_type]}"
                      f".save_pretrained('{folder}')) next to the checkpoint and export again.",
                      MissingPreprocessorWarning, stacklevel=2)
    if attention not in ATTENTION_MODES:
        raise ValueError(f"attention={attention!r} is not supported; choose one of {list(ATTENTION_MODES)}.")
    report = ExportReport(str(out), task, attention, model_type)
    steps = 2 + quantize + fp16 + validate + 1  # load, export, the variants, validate, model card
    # Claimed here, before the model loads: a second writer to `out` is refused (staging.py).
    with staged_folder(out, force, sources=[folder]) as staging, \
            tqdm(total=steps, unit="step", disable=not progress) as bar:
        bar.set_description("load the model")
        model = load_for_export(folder, model_type, task, attention)
        bar.update()
        bar.set_description("export with torch.onnx")
        graphs = sorted(export_graphs(model, model_type, task, staging, opset))
        save_loading_files(model, folder, staging)
        if task == "text-generation-with-past":  # the same graph runs in onnxruntime-genai's loop (ort_genai.py)
            write_genai_config(staging, model.config, model.generation_config)
        bar.update()
        del model
        for wanted, variant, make in ((quantize, "quantized", quantize_int8), (fp16, "fp16", convert_fp16)):
            if wanted:
                bar.set_description(f"{variant} copies")
                for graph in graphs:
                    make(staging / graph, staging / variant_name(graph, variant))
                bar.update()
        report.files = sorted(p.name for p in staging.glob("*.onnx"))
        report.node_counts = {name: count_nodes(staging / name) for name in report.files}
        if validate:
            bar.set_description("validate with ONNX Runtime")
            report.validation.append(validate_export(folder, staging, task, tolerance=tolerance))
            if quantize:
                report.quantization = quantization_report(staging, task)
            bar.update()
        bar.set_description("model card")
        write_export_card(staging, folder, report)
        bar.update()
    return report
