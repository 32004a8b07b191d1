"""Tiny CLIP checkpoints (random weights), a locally built CLIP tokenizer and processor for the dual-encoder tests."""

from pathlib import Path

import torch
import transformers

from hf_tformer_demo.toy_tokenizer import clip_tokenizer as toy_clip_tokenizer
from vision_helpers import perturbed

SIZE, PATCH = 32, 8
# CLIP's byte-level BPE: every byte as a character (bare and word-final "</w>"), a few merges, the two specials.
_MERGES = ["a t</w>", "c at</w>", "d o", "do g</w>", "o x</w>", "f ox</w>", "p h", "ph o", "o t", "ot o</w>"]
EOS_ID = 2 * 256 + len(_MERGES) + 1  # <|endoftext|>, the last entry of the vocabulary (also the padding token)
TEXT = dict(vocab_size=EOS_ID + 1, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=32, projection_dim=24, bos_token_id=EOS_ID - 1, eos_token_id=EOS_ID,
            pad_token_id=EOS_ID)
VISION = dict(image_size=SIZE, patch_size=PATCH, hidden_size=40, intermediate_size=56, num_hidden_layers=2,
              num_attention_heads=4, projection_dim=24)
# name -> (transformers class, its config)
SOURCES = {
    "clip": ("CLIPModel", lambda: transformers.CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=24,
                                                          logit_scale_init_value=2.0)),
    "text": ("CLIPTextModel", lambda: transformers.CLIPTextConfig(**TEXT)),
    "text-projection": ("CLIPTextModelWithProjection", lambda: transformers.CLIPTextConfig(**TEXT)),
    "vision": ("CLIPVisionModel", lambda: transformers.CLIPVisionConfig(**VISION)),
    "vision-projection": ("CLIPVisionModelWithProjection", lambda: transformers.CLIPVisionConfig(**VISION)),
}


def clip_tokenizer(folder: Path) -> transformers.PreTrainedTokenizerBase:
    """transformers' own CLIP tokenizer over a vocabulary written here (no download)."""
    tokenizer = toy_clip_tokenizer(folder, _MERGES)
    assert len(tokenizer) == EOS_ID + 1
    return tokenizer


def clip_processor(folder: Path) -> transformers.CLIPProcessor:
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": SIZE},
                                                      crop_size={"height": SIZE, "width": SIZE})
    return transformers.CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer(folder / "vocab"))


def source_model(name: str) -> torch.nn.Module:
    class_name, config = SOURCES[name]
    torch.manual_seed(0)
    return perturbed(getattr(transformers, class_name)(config()))


def save_source(name: str, folder: Path) -> str:
    """A source checkpoint with its processor files, as on the Hub."""
    source_model(name).save_pretrained(folder)
    clip_processor(folder.parent / f"{folder.name}-processor").save_pretrained(folder)
    return str(folder)


def padded_texts(lengths: tuple[int, ...], seed: int = 0) -> dict[str, torch.Tensor]:
    """Right-padded token ids ending in the end-of-text token (which also pads), as CLIP's tokenizer makes them."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), max(lengths)), EOS_ID)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, : length - 1] = torch.randint(0, EOS_ID - 1, (length - 1,), generator=generator)
        mask[row, :length] = 1
    return {"input_ids": ids, "attention_mask": mask}
