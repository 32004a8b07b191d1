"""PEFT LoRA on every variant, as users fine-tune: adapters on our projections (by name and with "all-linear"), a few
training steps, merge_and_unload, save, and reload as remote code in a fresh process where hf_tformer is not
importable; the saved adapter also loads back over the remote-code base with PeftModel.from_pretrained."""

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model
from torch import nn

import hf_tformer as ht
from hf_tformer.linear import TformerLinear
from hf_tformer.modeling_tformer_encoder_decoder import shift_tokens_right
from conftest import VARIANTS, random_ids, run_without_hf_tformer, tiny_config
from hf_tformer_conversion.clients import require_client

require_client("peft")

# Every projection of the shared core (attention.py, feed_forward.py; gate_proj exists with a gated activation).
OUR_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj", "gate_proj"]
TARGETS = {"all-linear": "all-linear", "by-name": OUR_PROJECTIONS}
# variant -> (model class, auto class a user loads it with, peft task type)
TASKS = {
    "encoder": (ht.TformerEncoderForSequenceClassification, "AutoModelForSequenceClassification", TaskType.SEQ_CLS),
    "decoder": (ht.TformerDecoderForCausalLM, "AutoModelForCausalLM", TaskType.CAUSAL_LM),
    "encoder_decoder": (ht.TformerEncoderDecoderForConditionalGeneration, "AutoModelForSeq2SeqLM",
                        TaskType.SEQ_2_SEQ_LM),
}
# The linear layers "all-linear" leaves alone: the LM head (peft excludes get_output_embeddings()), and for sequence
# classification the head peft trains whole instead (modules_to_save = ["classifier", "score"]).
NOT_WRAPPED = {"encoder": {"classifier.dense", "classifier.out_proj"}, "decoder": {"lm_head"},
               "encoder_decoder": {"lm_head"}}
TRAIN_STEPS = 8
NEW_TOKENS = 6


def base_model(variant: str) -> nn.Module:
    torch.manual_seed(0)
    return TASKS[variant][0](tiny_config(variant, hidden_act="swiglu", num_key_value_heads=2))


def lora(variant: str, targets) -> LoraConfig:
    return LoraConfig(task_type=TASKS[variant][2], r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets)


def fixed_batch(variant: str) -> tuple[dict, torch.Tensor]:
    """(model inputs, labels) of one small padded batch (the decoder's padded on the left, as generate() wants)."""
    ids = random_ids(4, 8)
    mask = torch.ones_like(ids)
    if variant == "decoder":
        mask[0, :2] = 0
    else:
        mask[0, -2:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if variant == "encoder":
        return inputs, torch.tensor([0, 1, 1, 0])
    if variant == "decoder":
        return inputs, ids.masked_fill(mask == 0, -100)
    labels = random_ids(4, 6, seed=1)
    return {**inputs, "decoder_input_ids": shift_tokens_right(labels, 0, 1)}, labels


def wrapped_names(peft_model) -> set[str]:
    """Names (in the base model) of the layers that carry a LoRA adapter."""
    return {name for name, module in peft_model.base_model.model.named_modules() if hasattr(module, "lora_A")}


def train(peft_model, variant: str) -> list[float]:
    inputs, labels = fixed_batch(variant)
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    peft_model.train()
    losses = []
    for _ in range(TRAIN_STEPS):
        loss = peft_model(**inputs, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def outputs(model, variant: str) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(**fixed_batch(variant)[0]).logits


def greedy(model, variant: str) -> torch.Tensor:
    inputs = {key: value for key, value in fixed_batch(variant)[0].items() if key != "decoder_input_ids"}
    return model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)


_RELOAD = """
import torch, transformers
from peft import PeftModel
for run in {runs!r}:
    folder = run["folder"]
    auto = getattr(transformers, run["auto"])
    inputs = torch.load(folder + "/inputs.pt")
    merged = auto.from_pretrained(folder + "/merged", trust_remote_code=True, dtype=torch.float32).eval()
    assert type(merged).__module__.startswith("transformers_modules"), type(merged).__module__
    base = auto.from_pretrained(folder + "/base", trust_remote_code=True, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, folder + "/adapter").eval()
    with torch.no_grad():
        result = {{"merged": merged(**inputs).logits, "adapter": adapted(**inputs).logits}}
    if run["generate"]:
        prompt = {{key: value for key, value in inputs.items() if key != "decoder_input_ids"}}
        result["tokens"] = merged.generate(**prompt, max_new_tokens={new_tokens}, do_sample=False)
    torch.save(result, folder + "/reloaded.pt")
"""


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory) -> dict:
    """Per (variant, targets): train, save the adapter, merge, save; then reload all of them in one fresh process."""
    root = tmp_path_factory.mktemp("peft")
    runs = {}
    for variant in VARIANTS:
        for target_name, targets in TARGETS.items():
            folder = root / f"{variant}-{target_name}"
            model = base_model(variant)
            model.save_pretrained(folder / "base")
            peft_model = get_peft_model(model, lora(variant, targets))
            losses = train(peft_model, variant)
            adapter_outputs = outputs(peft_model, variant)
            peft_model.save_pretrained(folder / "adapter")
            merged = peft_model.merge_and_unload()
            merged.save_pretrained(folder / "merged")
            torch.save(fixed_batch(variant)[0], folder / "inputs.pt")
            runs[variant, target_name] = {
                "folder": str(folder), "auto": TASKS[variant][1], "generate": variant != "encoder",
                "losses": losses, "adapter_outputs": adapter_outputs, "merged_outputs": outputs(merged, variant),
                "merged": merged,
            }
    spec = [{key: run[key] for key in ("folder", "auto", "generate")} for run in runs.values()]
    run_without_hf_tformer(_RELOAD.format(runs=spec, new_tokens=NEW_TOKENS), cwd=root,
                           env={"HF_HOME": str(root / "hf_home")})
    for run in runs.values():
        run["reloaded"] = torch.load(Path(run["folder"]) / "reloaded.pt")
    return runs


RUNS = [pytest.param(variant, target, id=f"{variant}-{target}") for variant in VARIANTS for target in TARGETS]


@pytest.mark.parametrize("variant", VARIANTS)
def test_all_linear_wraps_every_projection_and_leaves_the_heads(variant):
    model = base_model(variant)
    linears = {name for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    by_name = wrapped_names(get_peft_model(base_model(variant), lora(variant, OUR_PROJECTIONS)))
    peft_model = get_peft_model(model, lora(variant, "all-linear"))
    wrapped = wrapped_names(peft_model)
    assert wrapped == by_name  # "all-linear" finds exactly our projections
    assert {name.rsplit(".", 1)[-1] for name in wrapped} == set(OUR_PROJECTIONS)
    assert linears - wrapped == NOT_WRAPPED[variant]
    if variant == "encoder":  # the classification head is trained whole
        assert set(peft_model.peft_config["default"].modules_to_save) >= {"classifier"}
    else:  # the LM head stays our plain linear, tied to the token embeddings
        assert type(model.lm_head) is TformerLinear
        assert model.lm_head.weight is model.get_input_embeddings().weight


@pytest.mark.parametrize("variant, target", RUNS)
def test_lora_training_lowers_the_loss(lora_runs, variant, target):
    losses = lora_runs[variant, target]["losses"]
    # A fixed batch and a small learning rate: Adam lowers the loss at every step (frozen random base, rank-4
    # adapters: the LM losses fall slowly, 2-6 % over the steps).
    assert all(later < earlier for earlier, later in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.99 * losses[0], losses


@pytest.mark.parametrize("variant, target", RUNS)
def test_merged_model_computes_what_the_adapter_did(lora_runs, variant, target):
    run = lora_runs[variant, target]
    assert not any(hasattr(module, "lora_A") for module in run["merged"].modules())
    # Merging folds B @ A into the weights: the same function up to float rounding of the sum.
    torch.testing.assert_close(run["merged_outputs"], run["adapter_outputs"], rtol=1e-5, atol=1e-5)
    assert not torch.equal(run["adapter_outputs"], outputs(base_model(variant), variant))  # training changed it


@pytest.mark.parametrize("variant, target", RUNS)
def test_merged_model_reloads_as_remote_code_with_equal_outputs(lora_runs, variant, target):
    run = lora_runs[variant, target]
    # The same weights through the same code in another process: bit-identical.
    torch.testing.assert_close(run["reloaded"]["merged"], run["merged_outputs"], rtol=0, atol=0)
    if run["generate"]:
        tokens = run["reloaded"]["tokens"]
        assert tokens.shape[-1] > (fixed_batch(variant)[0]["input_ids"].shape[-1] if variant == "decoder" else 1)
        assert torch.equal(tokens, greedy(run["merged"], variant))


@pytest.mark.parametrize("variant, target", RUNS)
def test_saved_adapter_loads_over_the_remote_code_base(lora_runs, variant, target):
    run = lora_runs[variant, target]
    torch.testing.assert_close(run["reloaded"]["adapter"], run["adapter_outputs"], rtol=0, atol=0)
