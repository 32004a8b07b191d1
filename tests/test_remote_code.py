"""Checkpoints load the way users hit them: as remote code in a fresh process where hf_tformer is not importable,
from a folder and from a Hub-cache snapshot with HF_HUB_OFFLINE=1, with outputs bit-identical to the in-process model."""

import ast
import json
import re
from pathlib import Path

import pytest
import torch

import hf_tformer as ht
from conftest import VARIANTS, random_ids, run_without_hf_tformer, tiny_config

PACKAGE = Path(ht.__file__).parent
MODELING_FILES = sorted(PACKAGE.glob("modeling_*.py"))
HEADS = {
    "encoder": [ht.TformerEncoderModel, ht.TformerEncoderForMaskedLM, ht.TformerEncoderForSequenceClassification,
                ht.TformerEncoderForTokenClassification, ht.TformerEncoderForQuestionAnswering],
    "decoder": [ht.TformerDecoderModel, ht.TformerDecoderForCausalLM, ht.TformerDecoderForSequenceClassification],
    "encoder_decoder": [ht.TformerEncoderDecoderModel, ht.TformerEncoderDecoderForConditionalGeneration],
}


def _save_every_head(variant: str, root: Path) -> list[tuple[str, str]]:
    """Save one checkpoint per head class with a reference output; return (folder, auto class) pairs."""
    saved = []
    for cls in HEADS[variant]:
        torch.manual_seed(0)
        model = cls(tiny_config(variant, num_key_value_heads=2, position_embedding_type="rotary")).eval()
        ids = random_ids(2, 6)
        kwargs = {"decoder_input_ids": ids[:, :4]} if variant == "encoder_decoder" else {}
        with torch.no_grad():
            reference = model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)[0]
        folder = root / cls.__name__
        model.save_pretrained(folder)
        torch.save({"ids": ids, "kwargs": kwargs, "reference": reference}, folder / "reference.pt")
        auto_name = next(name for name, c in cls.auto_classes.items() if c is cls)
        saved.append((str(folder), auto_name))
    return saved


_LOAD_AND_COMPARE = """
import sys, torch, transformers
checks = {checks!r}
for folder, auto_name in checks:
    model = getattr(transformers, auto_name).from_pretrained(folder, trust_remote_code=True).eval()
    assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
    data = torch.load(folder + "/reference.pt")
    with torch.no_grad():
        out = model(input_ids=data["ids"], attention_mask=torch.ones_like(data["ids"]), **data["kwargs"])[0]
    assert torch.equal(out, data["reference"]), (folder, (out - data["reference"]).abs().max())
    print("OK", auto_name, type(model).__name__)
assert not any(name.startswith("hf_tformer") for name in sys.modules)
"""


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_head_loads_as_remote_code_bit_identical(variant, tmp_path, hf_home):
    checks = _save_every_head(variant, tmp_path)
    stdout = run_without_hf_tformer(_LOAD_AND_COMPARE.format(checks=checks), cwd=tmp_path)
    assert stdout.count("OK") == len(HEADS[variant])


def test_loads_by_repo_id_from_a_hub_cache_snapshot_offline(tmp_path, hf_home):
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder")).eval()
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / "models--hf-tformer--tiny-decoder"
    snapshot = repo / "snapshots" / revision
    model.save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    ids = random_ids(1, 5)
    with torch.no_grad():
        torch.save({"ids": ids, "reference": model(ids).logits}, tmp_path / "reference.pt")
    code = f"""
    import sys, torch
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.from_pretrained("hf-tformer/tiny-decoder", trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained("hf-tformer/tiny-decoder", trust_remote_code=True).eval()
    data = torch.load("{tmp_path}/reference.pt")
    with torch.no_grad():
        assert torch.equal(model(data["ids"]).logits, data["reference"])
    assert not any(name.startswith("hf_tformer") for name in sys.modules)
    print("OK", type(config).__name__)
    """
    stdout = run_without_hf_tformer(code, cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home)})
    assert "OK TformerDecoderConfig" in stdout


def test_save_writes_safetensors_auto_map_and_the_code(tmp_path):
    model = ht.TformerEncoderForMaskedLM(tiny_config("encoder"))
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "hf_tformer_encoder"
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForMaskedLM",
                                       "AutoModelForSequenceClassification", "AutoModelForTokenClassification",
                                       "AutoModelForQuestionAnswering", "AutoTokenizer"}
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    copied = {p.name for p in tmp_path.glob("*.py")}
    assert {"modeling_tformer_encoder.py", "configuration_tformer.py", "attention.py", "masks.py"} <= copied


def test_sharded_save_writes_an_index_and_loads_back_exactly(tmp_path):
    torch.manual_seed(0)
    model = ht.TformerDecoderForCausalLM(tiny_config("decoder")).eval()
    model.save_pretrained(tmp_path, max_shard_size="20KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    reloaded = ht.TformerDecoderForCausalLM.from_pretrained(tmp_path).eval()
    ids = random_ids(1, 4)
    assert torch.equal(reloaded(ids).logits, model(ids).logits)


def _relative_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}


def test_copied_modules_import_only_torch_transformers_stdlib_and_siblings():
    import sys

    allowed_roots = {"torch", "transformers", "__future__"} | set(sys.stdlib_module_names)
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), f"{path.name}: only single-dot relative imports"
                roots = set() if node.level == 1 else {node.module.split(".")[0]}
            else:
                continue
            assert roots <= allowed_roots, f"{path.name} imports {roots - allowed_roots}"
    assert not [p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE], "hf_tformer must stay flat"


@pytest.mark.parametrize("modeling_file", MODELING_FILES, ids=lambda p: p.name)
def test_modeling_files_import_every_needed_module_directly(modeling_file):
    """transformers 4.57 copies only a modeling file's direct relative imports out of a local folder."""
    direct = _relative_imports(modeling_file)
    closure, todo = set(), list(direct)
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo.extend(_relative_imports(PACKAGE / f"{name}.py"))
    assert closure <= direct, f"{modeling_file.name} must import {sorted(closure - direct)} directly"


def test_checkpoint_with_missing_or_unexpected_backbone_weights_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    model = ht.TformerEncoderModel(tiny_config("encoder"))
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    missing = {k: v for k, v in weights.items() if "layers.1.mlp.up_proj.weight" not in k}
    save_file(missing, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="layers.1.mlp.up_proj.weight"):
        ht.TformerEncoderModel.from_pretrained(tmp_path)
    extra = {**weights, "encoder.layers.7.mlp.up_proj.weight": torch.zeros(2, 2)}
    save_file(extra, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="layers.7"):
        ht.TformerEncoderModel.from_pretrained(tmp_path)


def test_missing_task_head_is_a_fine_tuning_start_not_an_error(tmp_path):
    ht.TformerEncoderForMaskedLM(tiny_config("encoder")).save_pretrained(tmp_path)
    model, info = ht.TformerEncoderForSequenceClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert any(key.startswith("classifier") for key in info["missing_keys"])
    assert re.search("lm_head", " ".join(info["unexpected_keys"]))
