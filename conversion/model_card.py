"""Model cards (README.md with Hub metadata) for every checkpoint our tools write: converted, converted back to
the native class, and exported to ONNX.

The metadata block is rendered by huggingface_hub's own ModelCardData, so `ModelCard.load` parses what we write.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

# Class-name endings -> (pipeline tag, the Auto class that loads it). Ours and transformers' follow one convention.
_HEADS = (
    ("ForMaskedLM", "fill-mask", "AutoModelForMaskedLM"),
    ("ForSequenceClassification", "text-classification", "AutoModelForSequenceClassification"),
    ("ForTokenClassification", "token-classification", "AutoModelForTokenClassification"),
    ("ForQuestionAnswering", "question-answering", "AutoModelForQuestionAnswering"),
    ("ForCausalLM", "text-generation", "AutoModelForCausalLM"),
    ("LMHeadModel", "text-generation", "AutoModelForCausalLM"),
    ("WhisperForConditionalGeneration", "automatic-speech-recognition", "AutoModelForSpeechSeq2Seq"),
    ("ForConditionalGeneration", "text2text-generation", "AutoModelForSeq2SeqLM"),
    ("MTModel", "translation", "AutoModelForSeq2SeqLM"),
    ("ForImageClassification", "image-classification", "AutoModelForImageClassification"),
    ("ForImageClassificationWithTeacher", "image-classification", "AutoModelForImageClassification"),
    ("ViTModel", "image-feature-extraction", "AutoModel"),
    ("DeiTModel", "image-feature-extraction", "AutoModel"),
    ("CLIPModel", "zero-shot-image-classification", "AutoModelForZeroShotImageClassification"),
    ("CLIPVisionModel", "image-feature-extraction", "AutoModel"),
    ("CLIPVisionModelWithProjection", "image-feature-extraction", "AutoModel"),
)
_HUB_CACHE_SNAPSHOT = re.compile(r"models--(?P<owner>[^/]+?)--(?P<name>[^/]+)/snapshots/")


def pipeline_tag_and_auto_class(class_name: str) -> tuple[str, str]:
    """`TformerEncoderForMaskedLM` -> ("fill-mask", "AutoModelForMaskedLM"); a base model -> feature-extraction."""
    for ending, tag, auto_class in _HEADS:
        if class_name.endswith(ending):
            return tag, auto_class
    return "feature-extraction", "AutoModel"


def hub_repo_id(source: str) -> Optional[str]:
    """The Hub repo id a source came from: the id itself, or read off a Hub-cache snapshot path; None for a plain
    local folder (the card then names the folder in its text, not as `base_model`, which must be a repo id)."""
    found = _HUB_CACHE_SNAPSHOT.search(str(Path(source).resolve()) + "/") if Path(source).exists() else None
    if found:
        return f"{found['owner']}/{found['name']}"
    if not Path(source).exists() and re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        return source
    return None


@dataclass
class ModelCardFacts:
    title: str
    pipeline_tag: str
    summary: str  # a paragraph: what this checkpoint is and where it came from
    usage: str  # Python that loads and runs it
    base_model: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # parity / validation figures, one bullet each
    notes: list[str] = field(default_factory=list)


def write_model_card(folder: Path, facts: ModelCardFacts) -> None:
    """Write folder/README.md: Hub metadata (library, pipeline tag, base model, tags) + summary, figures, usage."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(library_name="transformers", pipeline_tag=facts.pipeline_tag, base_model=facts.base_model,
                         tags=["hf_tformer", *facts.tags])
    sections = [f"# {facts.title}", facts.summary]
    if facts.figures:
        sections.append("## Parity\n\n" + "\n".join(f"- {line}" for line in facts.figures))
    sections.append(f"## How to load\n\n```python\n{facts.usage.strip()}\n```")
    if facts.notes:
        sections.append("## Notes\n\n" + "\n".join(f"- {line}" for line in facts.notes))
    ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(sections) + "\n").save(folder / "README.md")


def card_base_model(folder: Path) -> Optional[str]:
    """The `base_model` of an existing card in `folder` (an export inherits its checkpoint's), else None."""
    if not (folder / "README.md").exists():
        return None
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(folder / "README.md").data.base_model
    except Exception:  # a hand-written README without metadata
        return None
