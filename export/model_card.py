"""The model card of an export: what it was exported from, how it was validated, and how to load it with optimum."""

from pathlib import Path

from hf_tformer_conversion.model_card import ModelCardFacts, card_base_model, hub_repo_id, write_model_card

from .runtime import ORT_CLASSES


def write_export_card(folder: Path, checkpoint: Path, report) -> None:
    """folder/README.md for the export described by `report` (an ExportReport) of the hf_tformer `checkpoint`."""
    figures = [f"{check.file_name}: max |Δ| = {check.max_abs_diff:.2e} against PyTorch on padded random inputs "
               "(ONNX Runtime, CPU; gate: 1e-4)" + ("" if check.greedy_identical is None else
                                                      f"; greedy tokens identical: {check.greedy_identical}")
               for check in report.validation] or ["not validated (exported with --no-validate)"]
    if report.quantization is not None:
        q = report.quantization
        figures.append(f"INT8 (*_quantized.onnx) vs fp32: max |Δ| = {q.max_abs_diff:.2e}, argmax agreement "
                       f"{q.agreement:.1%}")
    fused = sorted({op for counts in report.node_counts.values() for op in counts
                    if op in ("Attention", "MultiHeadAttention", "QAttention")})
    ort_class = ORT_CLASSES[report.task]
    write_model_card(folder, ModelCardFacts(
        title=f"{checkpoint.name} for ONNX Runtime ({report.task})",
        pipeline_tag=report.task.removesuffix("-with-past"),
        base_model=card_base_model(checkpoint) or hub_repo_id(str(checkpoint)),
        tags=["onnx", "onnxruntime", "optimum"],
        summary=f"The hf_tformer checkpoint `{checkpoint}` exported through optimum for `{report.task}` "
                f"({report.attention} attention{': ' + ', '.join(fused) + ' nodes' if fused else ''}). Graphs: "
                f"{', '.join(report.files)}.",
        figures=figures,
        usage=f"import hf_tformer_export\nfrom optimum.onnxruntime import {ort_class}\n\n"
              "hf_tformer_export.register()  # teaches optimum our model types\n"
              f"model = {ort_class}.from_pretrained(\"PATH_OR_REPO_ID\", trust_remote_code=True)\n"
              "# or: hf_tformer_export.runtime.load_ort_model(\"PATH_OR_REPO_ID\", "
              f"\"{report.task}\", device=\"cpu\")",
    ))
