"""The model card of an export: what it was exported from, how it was validated, and how to load it (our ORT
classes on any transformers version; optimum's ORTModel* on 4.57)."""

from pathlib import Path

from hf_tformer_conversion.model_card import ModelCardFacts, card_base_model, hub_repo_id, write_model_card
from hf_tformer_conversion.tolerance import card_figures

from .runtime import ort_class, ort_class_name
from .tasks import CLIP, CLIP_TEXT, CLIP_VISION, VISION, WHISPER


def pipeline_tag(model_type: str, task: str) -> str:
    """The Hub's pipeline tag for an export: an image model's features are `image-feature-extraction`."""
    if model_type in (VISION, CLIP_VISION) and task == "feature-extraction":
        return "image-feature-extraction"
    return task.removesuffix("-with-past")


def write_export_card(folder: Path, checkpoint: Path, report) -> None:
    """folder/README.md for the export described by `report` (an ExportReport) of the hf_tformer `checkpoint`."""
    inputs = {VISION: "random pixel values", CLIP: "padded texts and random pixel values",
              CLIP_TEXT: "padded texts", CLIP_VISION: "random pixel values",
              WHISPER: "random log-mel windows"}.get(report.model_type,
                                                                                 "padded random inputs")
    figures = [line for check in report.validation for line in validation_figures(check, inputs)] or [
        "not validated (exported with --no-validate)"]
    if report.quantization is not None:
        q = report.quantization
        figures.append(f"INT8 (*_quantized.onnx) vs fp32: max |Δ| = {q.max_abs_diff:.2e}, argmax agreement "
                       f"{q.agreement:.1%}")
    fused = sorted({op for counts in report.node_counts.values() for op in counts
                    if op in ("Attention", "MultiHeadAttention", "QAttention")})
    optimum_class = ort_class_name(report.task, report.model_type)
    our_class = ort_class(report.task, report.model_type).__name__
    module = ort_class(report.task, report.model_type).__module__
    write_model_card(folder, ModelCardFacts(
        title=f"{checkpoint.name} for ONNX Runtime ({report.task})",
        pipeline_tag=pipeline_tag(report.model_type, report.task),
        base_model=card_base_model(checkpoint) or hub_repo_id(str(checkpoint)),
        tags=["onnx", "onnxruntime", "optimum"],
        summary=f"The hf_tformer checkpoint `{checkpoint}` exported with hf_tformer_export (torch.onnx, optimum's "
                f"file layout) for `{report.task}` "
                f"({report.attention} attention{': ' + ', '.join(fused) + ' nodes' if fused else ''}). Graphs: "
                f"{', '.join(report.files)}.",
        figures=figures,
        usage=f"# pip install 'hf-tformer[ort]': any transformers version, no optimum\n"
              f"from {module} import {our_class}\n\n"
              f"model = {our_class}.from_pretrained(\"PATH_OR_REPO_ID\")\n"
              "# or: hf_tformer_export.load_ort_model(\"PATH_OR_REPO_ID\", "
              f"\"{report.task}\", device=\"cpu\")\n"
              "# optimum (transformers 4.57): hf_tformer_export.register(); then optimum.onnxruntime."
              f"{optimum_class}.from_pretrained(\"PATH_OR_REPO_ID\", trust_remote_code=True)"
              + _image_pipeline_usage(report)
              + _zero_shot_pipeline_usage(report) + _speech_pipeline_usage(report),
    ))


def validation_figures(check, inputs: str) -> list[str]:
    """Card bullets of one validation (a ValidationReport): the gate actually used, each output's figures, and
    the greedy tokens."""
    figures = card_figures(check.checks, check.rule, f"{check.file_name} against PyTorch on {inputs} (ONNX Runtime, "
                           "CPU)")
    if check.greedy_identical is not None:
        figures.append(f"{check.file_name}: greedy tokens identical: {check.greedy_identical}")
    return figures


def _image_pipeline_usage(report) -> str:
    """For an image export: transformers' pipeline over the model with the image processor saved next to it."""
    if report.model_type != VISION:
        return ""
    return ("\n\nfrom transformers import AutoImageProcessor, pipeline\n\n"
            "processor = AutoImageProcessor.from_pretrained(\"PATH_OR_REPO_ID\")  # its preprocessor_config.json\n"
            f"pipe = pipeline(\"{pipeline_tag(report.model_type, report.task)}\", model=model, "
            "image_processor=processor)")


def _zero_shot_pipeline_usage(report) -> str:
    """For a dual-encoder export: transformers' zero-shot pipeline over the model with the CLIPProcessor saved next
    to it."""
    if report.model_type != CLIP:
        return ""
    return ("\n\nfrom transformers import AutoProcessor, pipeline\n\n"
            "processor = AutoProcessor.from_pretrained(\"PATH_OR_REPO_ID\")  # the tokenizer + image processor\n"
            "pipe = pipeline(\"zero-shot-image-classification\", model=model, tokenizer=processor.tokenizer, "
            "image_processor=processor.image_processor)\n"
            "pipe(image, candidate_labels=[\"a photo of a cat\", \"a photo of a dog\"])")


def _speech_pipeline_usage(report) -> str:
    """For a speech export: the ASR pipeline our speech class builds from the export's own pipeline code."""
    if report.model_type != WHISPER:
        return ""
    return ("\n\nasr = model.speech_pipeline()  # the export's pipeline_tformer_whisper.py, tokenizer, feature extractor\n"
            "asr(waveform_16khz, chunk_length_s=30, batch_size=8, return_timestamps=True)")
