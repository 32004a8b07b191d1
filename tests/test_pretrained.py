"""PreTrainedModel citizenship: dtypes, device_map, gradient checkpointing, and a tiny Trainer run."""

import re

import pytest
import torch
from transformers import Trainer, TrainingArguments

import hf_tformer as ht
from conftest import random_ids, tiny_config


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_loads_in_half_precision_and_stays_close_to_fp32(tmp_path, dtype):
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder", num_key_value_heads=2)).eval()
    model.save_pretrained(tmp_path)
    try:
        half = ht.TformerDecoderForCausalLM.from_pretrained(tmp_path, dtype=dtype).eval()
    except TypeError:  # older keyword
        half = ht.TformerDecoderForCausalLM.from_pretrained(tmp_path, torch_dtype=dtype).eval()
    assert half.dtype == dtype
    ids = random_ids(2, 8)
    with torch.no_grad():
        reference, logits = model(ids).logits, half(ids).logits
    assert logits.dtype == dtype and torch.isfinite(logits).all()
    torch.testing.assert_close(logits.float(), reference, atol=5e-2, rtol=5e-2)


def test_device_map_auto_loads_with_the_no_split_blocks(tmp_path):
    torch.manual_seed(0)
    model = ht.TformerEncoderDecoderForConditionalGeneration(tiny_config("encoder_decoder")).eval()
    model.save_pretrained(tmp_path)
    mapped = ht.TformerEncoderDecoderForConditionalGeneration.from_pretrained(tmp_path, device_map="auto").eval()
    # With a budget too small for the whole model, accelerate places whole blocks, never half a block.
    from accelerate import infer_auto_device_map

    placement = infer_auto_device_map(
        model, max_memory={"cpu": 40_000, "disk": 10**9}, no_split_module_classes=model._no_split_modules
    )
    assert "disk" in placement.values()
    assert not [name for name in placement if re.search(r"layers\.\d+\.", name)], placement
    ids = random_ids(1, 5)
    assert torch.equal(mapped.generate(ids, max_new_tokens=4, do_sample=False),
                       model.generate(ids, max_new_tokens=4, do_sample=False))


@pytest.mark.parametrize("variant_cls, variant", [
    (ht.TformerEncoderForMaskedLM, "encoder"),
    (ht.TformerDecoderForCausalLM, "decoder"),
    (ht.TformerEncoderDecoderForConditionalGeneration, "encoder_decoder"),
])
def test_gradient_checkpointing_gives_the_same_gradients(variant_cls, variant):
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = variant_cls(tiny_config(variant)).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert model.is_gradient_checkpointing
        ids = random_ids(2, 6)
        model(input_ids=ids, labels=ids).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1])


class _Copies(torch.utils.data.Dataset):
    """A learnable toy task: classify whether token 5 appears."""

    def __init__(self, size: int = 64) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(6, 97, (size, 8), generator=generator)
        self.labels = torch.arange(size) % 2
        self.ids[self.labels == 1, 3] = 5

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {"input_ids": self.ids[index], "attention_mask": torch.ones(8, dtype=torch.long),
                "labels": self.labels[index]}


def test_trainer_with_gradient_checkpointing_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    model = ht.TformerEncoderForSequenceClassification(tiny_config("encoder", num_labels=2))
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=16, num_train_epochs=6, learning_rate=3e-3,
        warmup_steps=2, lr_scheduler_type="linear", gradient_checkpointing=True, logging_steps=1, report_to=[],
        save_strategy="no", use_cpu=True, seed=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=_Copies())
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert model.is_gradient_checkpointing
    assert sum(losses[-4:]) / 4 < 0.7 * sum(losses[:4]) / 4, losses
