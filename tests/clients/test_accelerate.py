"""Big-model loading with accelerate on a remote-code decoder: from_pretrained(device_map="auto") with a memory
budget that offloads blocks to disk, and init_empty_weights + load_checkpoint_and_dispatch, tied LM head included.

The loading runs in one fresh process where hf_tformer is not importable (in a process that imported hf_tformer,
transformers 5 would pick its registered classes over the folder's code); it records device maps, ties, logits and
greedy tokens, which the tests compare against the in-memory model of this process."""

import pytest
import torch

import hf_tformer as ht
from conftest import decoder_facts_from_fresh_process, random_ids, tiny_config
from hf_tformer.pretrained import TformerPreTrainedModel

LAYERS, PROMPT, NEW_TOKENS = 4, 8, 6
# Of the model's bytes: leaves room for the embeddings, the head and some blocks, the rest goes to disk.
CPU_BUDGET = 0.8

_LOAD = """
import torch
from accelerate import init_empty_weights, load_checkpoint_and_dispatch
from transformers import AutoConfig, AutoModelForCausalLM

folder, budget = {folder!r}, {budget!r}
inputs = torch.load(folder + "/inputs.pt")
facts = {{}}

def record(name, model, **extra):
    model.eval()
    with torch.no_grad():
        logits = model(**inputs).logits
    facts[name] = {{
        "module": type(model).__module__,
        "device_map": dict(getattr(model, "hf_device_map", {{}})),
        "lm_head_tied": model.lm_head.weight is model.model.embed_tokens.weight,
        "logits": logits,
        "tokens": model.generate(**inputs, max_new_tokens={new_tokens}, do_sample=False),
        **extra,
    }}

record("from_pretrained", AutoModelForCausalLM.from_pretrained(
    folder, trust_remote_code=True, dtype=torch.float32, device_map="auto", max_memory={{"cpu": budget}},
    offload_folder=folder + "/offload_from_pretrained"))

config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
for name, limits in (("dispatch", {{}}),
                     ("dispatch_offloaded", {{"max_memory": {{"cpu": budget}}, "offload_folder": folder + "/offload"}})):
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=True)
    # init_empty_weights re-creates every parameter it sees registered, the tied head's too: tie again after it.
    tied_in_context = model.lm_head.weight is model.model.embed_tokens.weight
    model.tie_weights()
    tied_after_tie_weights = model.lm_head.weight is model.model.embed_tokens.weight
    model = load_checkpoint_and_dispatch(model, folder + "/model.safetensors", device_map="auto",
                                         no_split_module_classes=model._no_split_modules, **limits)
    record(name, model, tied_in_context=tied_in_context, tied_after_tie_weights=tied_after_tie_weights)
torch.save(facts, folder + "/facts.pt")
"""


def batch() -> dict:
    ids = random_ids(2, PROMPT)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding, as generate() wants
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict:
    """{way of loading: facts} from the fresh process, plus "reference": the in-memory model's logits and tokens."""
    root = tmp_path_factory.mktemp("accelerate")
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder", num_hidden_layers=LAYERS, hidden_act="swiglu")).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    budget = int(CPU_BUDGET * model.get_memory_footprint())
    return decoder_facts_from_fresh_process(root, model, batch(), _LOAD, NEW_TOKENS, budget=budget)


def block_devices(device_map: dict) -> set[str]:
    return {str(device) for name, device in device_map.items() if name.startswith("model.decoder.layers.")}


def check_equal_to_in_memory(facts: dict, reference: dict) -> None:
    assert facts["module"].startswith("transformers_modules")
    # The same weights and code, only stored elsewhere between blocks: bit-identical.
    torch.testing.assert_close(facts["logits"], reference["logits"], rtol=0, atol=0)
    assert torch.equal(facts["tokens"], reference["tokens"])
    assert facts["tokens"].shape[-1] > PROMPT


def test_from_pretrained_offloads_blocks_to_disk_and_computes_the_same(loaded):
    facts = loaded["from_pretrained"]
    assert block_devices(facts["device_map"]) == {"cpu", "disk"}  # whole blocks, some in memory, some on disk
    assert facts["device_map"]["lm_head"] == facts["device_map"]["model.embed_tokens"]  # tied: placed together
    assert facts["lm_head_tied"]
    check_equal_to_in_memory(facts, loaded["reference"])


@pytest.mark.parametrize("way", ["dispatch", "dispatch_offloaded"])
def test_empty_weights_and_load_checkpoint_and_dispatch(loaded, way):
    facts = loaded[way]
    # accelerate's init_empty_weights unties (as for native models); tie_weights() ties the meta tensors again,
    # and the dispatched model keeps one tensor for both.
    assert not facts["tied_in_context"] and facts["tied_after_tie_weights"] and facts["lm_head_tied"]
    if way == "dispatch":  # no budget: everything fits in memory
        assert facts["device_map"] == {"": "cpu"}
    else:
        assert block_devices(facts["device_map"]) == {"cpu", "disk"}
    check_equal_to_in_memory(facts, loaded["reference"])


def test_no_split_modules_names_our_block():
    assert TformerPreTrainedModel._no_split_modules == ["TformerBlock"]
    assert type(ht.TformerDecoderModel(tiny_config("decoder")).decoder.layers[0]).__name__ == "TformerBlock"
