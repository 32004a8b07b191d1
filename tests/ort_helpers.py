"""Checks shared by the ONNX export tests."""

from pathlib import Path

import torch

import hf_tformer as ht
from conftest import tiny_config


def assert_ort_greedy_equals_pytorch(ort, pytorch, prompt_length: int, left_pads: tuple[int, int]) -> None:
    """Three prompts, the second and third left-padded by `left_pads`: ONNX Runtime's greedy tokens (with past)
    equal PyTorch's, 12 new tokens each."""
    ids = torch.randint(3, 90, (3, prompt_length))
    mask = torch.ones_like(ids)
    mask[1, :left_pads[0]], mask[2, :left_pads[1]] = 0, 0
    ids[mask == 0] = 0
    kwargs = dict(attention_mask=mask, max_new_tokens=12, min_new_tokens=12, do_sample=False)
    assert torch.equal(ort.generate(ids, **kwargs), pytorch.generate(ids, **kwargs))


def padded_text_inputs(left_padded: bool) -> dict[str, torch.Tensor]:
    """Two rows of 7 tokens, the second padded by 3: on the left as generation pads (decoders), else on the right."""
    ids = torch.randint(3, 90, (2, 7), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if left_padded:
        mask[1, :3] = 0
    else:
        mask[1, -3:] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def saved_tiny_decoder(folder: Path, **overrides):
    """A tiny causal LM (seed 0, the toy BPE tokenizer's 160 ids) saved in `folder`; returns it in eval mode."""
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder", vocab_size=160, **overrides)).eval()
    model.save_pretrained(folder)
    return model
