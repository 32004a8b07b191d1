"""onnxruntime-genai's C++ loop over our decoder export (export/genai_config.py, export/ort_genai.py): the export
writes genai_config.json, genai generates PyTorch's greedy tokens (MHA and GQA, equal-length and left-padded
batches, the fp32 and the quantized graph), seeded sampling repeats, and what its loop cannot do is refused by
name."""

import json
import shutil

import pytest
import torch

import hf_tformer as ht
from conftest import tiny_config
from ort_helpers import saved_tiny_decoder
from hf_tformer_export.export import export_onnx
from hf_tformer_export.genai_config import GENAI_CONFIG, genai_config, write_genai_config
from hf_tformer_export.ort_genai import TformerGenaiModel
from hf_tformer_export.runtime import load_ort_model

DECODERS = {"mha": {}, "gqa": {"num_key_value_heads": 2}}
TASK = "text-generation-with-past"


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict:
    """name -> (PyTorch model, export folder); the MHA one also has the quantized graph."""
    root = tmp_path_factory.mktemp("genai")
    made = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(root / "hf_home"))
        for name, overrides in DECODERS.items():
            model = saved_tiny_decoder(root / name, **overrides)
            export_onnx(str(root / name), str(root / f"{name}-onnx"), TASK, validate=False, quantize=name == "mha")
            made[name] = (model, root / f"{name}-onnx")
    return made


def prompts(batch: int = 3, length: int = 6) -> torch.Tensor:
    return torch.randint(3, 160, (batch, length), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("name", DECODERS)
def test_genai_generates_pytorchs_greedy_tokens(exports, name):
    pytorch, folder = exports[name]
    ids = prompts()
    expected = pytorch.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, min_new_tokens=12,
                                do_sample=False)
    got = TformerGenaiModel.from_pretrained(folder, intra_op_num_threads=1).generate(
        ids, max_new_tokens=12, min_new_tokens=12)
    assert got.shape == (3, 18) and torch.equal(got, expected)


@pytest.mark.parametrize("name", DECODERS)
def test_a_left_padded_batch_gives_pytorchs_greedy_tokens_row_by_row(exports, name):
    pytorch, folder = exports[name]
    ids, mask = prompts(), torch.ones(3, 6, dtype=torch.long)
    mask[1, :2], mask[2, :4] = 0, 0
    ids[mask == 0] = 0
    expected = pytorch.generate(ids, attention_mask=mask, max_new_tokens=10, min_new_tokens=10, do_sample=False)
    genai = TformerGenaiModel.from_pretrained(folder)
    got = genai.generate(ids, attention_mask=mask, max_new_tokens=10, min_new_tokens=10)
    assert got.shape == (3, 16) and torch.equal(got, expected)
    sampled = [genai.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=True, seed=5) for _ in range(2)]
    assert torch.equal(*sampled) and torch.equal(sampled[0][:, :6], ids)  # the padded prompt kept as given


def test_the_quantized_graph_gives_our_ort_classes_tokens(exports):
    _, folder = exports["mha"]
    ids = prompts(batch=2)
    ours = load_ort_model(folder, TASK, variant="quantized").generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, min_new_tokens=10, do_sample=False)
    genai = TformerGenaiModel.from_pretrained(folder, variant="quantized").generate(ids, max_new_tokens=10,
                                                                                     min_new_tokens=10)
    assert torch.equal(genai, ours)


def test_generation_stops_at_eos_and_pads_as_transformers_does(exports, tmp_path):
    pytorch, folder = exports["mha"]
    ids = prompts(batch=2)
    mask = torch.ones_like(ids)
    free = pytorch.generate(ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    eos = int(free[0, 8])  # the first row's third new token (or an earlier equal one) ends its text
    try:
        pytorch.generation_config.eos_token_id = eos
        expected = pytorch.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    finally:
        pytorch.generation_config.eos_token_id = 2
    stopping = tmp_path / "eos-onnx"
    shutil.copytree(folder, stopping)
    config = json.loads((stopping / GENAI_CONFIG).read_text())
    config["model"]["eos_token_id"] = eos
    (stopping / GENAI_CONFIG).write_text(json.dumps(config))
    got = TformerGenaiModel.from_pretrained(stopping).generate(ids, max_new_tokens=8)
    stop = int((expected[0, 6:] == eos).nonzero()[0]) + 6
    assert stop <= 8 and (expected[0, stop + 1:] == 0).all()  # the row stopped, then padded with pad_token_id
    assert torch.equal(got, expected)


def test_seeded_sampling_repeats_and_the_seed_matters(exports):
    _, folder = exports["gqa"]
    genai = TformerGenaiModel.from_pretrained(folder, intra_op_num_threads=2,
                                              session_config_entries={"session.intra_op.allow_spinning": "0"})
    ids = prompts(batch=2)
    draws = [genai.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=True, top_k=50, temperature=1.5,
                            seed=seed) for seed in (7, 7, 8)]
    assert torch.equal(draws[0], draws[1])
    assert not torch.equal(draws[0], draws[2])
    assert torch.equal(draws[0][:, :6], ids)


def test_genai_config_names_our_graphs_inputs_and_shapes(exports):
    _, folder = exports["gqa"]
    written = json.loads((folder / GENAI_CONFIG).read_text())
    decoder = written["model"]["decoder"]
    assert decoder["num_key_value_heads"] == 2 and decoder["num_attention_heads"] == 4 and decoder["head_size"] == 8
    assert decoder["inputs"]["past_key_names"] % 1 == "past_key_values.1.key"
    assert written["model"]["eos_token_id"] == 2 and written["model"]["context_length"] == 64
    assert written["search"]["past_present_share_buffer"] is False  # our graph returns past + new, not in place


def test_only_the_with_past_decoder_export_gets_a_genai_config(tmp_path, hf_home):
    torch.manual_seed(0)
    ht.TformerDecoderForCausalLM(tiny_config("decoder")).save_pretrained(tmp_path / "ckpt")
    export_onnx(str(tmp_path / "ckpt"), str(tmp_path / "onnx"), "text-generation", validate=False)
    assert not (tmp_path / "onnx" / GENAI_CONFIG).exists()
    with pytest.raises(ValueError, match=f"no {GENAI_CONFIG}"):
        TformerGenaiModel.from_pretrained(tmp_path / "onnx")


def test_eos_and_pad_ids_come_from_the_generation_config_first():
    config = tiny_config("decoder", pad_token_id=None)
    generation = type("Generation", (), {"eos_token_id": [5, 6], "pad_token_id": None, "max_length": 1000})()
    written = genai_config(config, generation)
    assert written["model"]["eos_token_id"] == [5, 6] and written["model"]["pad_token_id"] == 5
    assert written["search"]["max_length"] == config.max_position_embeddings  # capped at the positions there are


def test_a_model_without_eos_gets_no_genai_config_and_a_warning_saying_why(tmp_path):
    config = tiny_config("decoder", eos_token_id=None)
    with pytest.raises(ValueError, match="eos_token_id"):
        genai_config(config)
    with pytest.warns(UserWarning, match="no genai_config.json written"):
        assert write_genai_config(tmp_path, config) is None
    assert not (tmp_path / GENAI_CONFIG).exists()


def test_a_hub_repo_id_loads_from_the_cache_offline(exports, tmp_path):
    pytorch, folder = exports["gqa"]
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--hf-tformer--tiny-genai"
    shutil.copytree(folder, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    genai = TformerGenaiModel.from_pretrained("hf-tformer/tiny-genai", cache_dir=str(tmp_path / "hub"))
    ids = prompts(batch=1)
    expected = pytorch.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, min_new_tokens=6,
                                do_sample=False)
    assert torch.equal(genai.generate(ids, max_new_tokens=6, min_new_tokens=6), expected)
    with pytest.raises(ValueError, match="neither a local folder nor a Hub repo"):
        TformerGenaiModel.from_pretrained("hf-tformer/not-cached", cache_dir=str(tmp_path / "hub"))
    with pytest.raises(TypeError, match="unexpected arguments"):
        TformerGenaiModel.from_pretrained(folder, provider="cuda")


def test_session_config_values_must_be_strings(exports):
    with pytest.raises(TypeError, match="config values are strings"):
        TformerGenaiModel.from_pretrained(exports["mha"][1],
                                          session_config_entries={"session.intra_op.allow_spinning": False})


@pytest.mark.parametrize("kwargs, message", [
    (dict(attention_mask=torch.tensor([[1, 1, 1, 1, 1, 0]] * 3)), "must pad on the left"),
    (dict(attention_mask=torch.tensor([[0, 0, 0, 0, 0, 0]] * 3)), "leave every row a token"),
    (dict(attention_mask=torch.ones(3, 5, dtype=torch.long) - torch.eye(3, 5, dtype=torch.long)), "must match"),
    (dict(num_beams=2), r"\['num_beams'\] are not supported"),
    (dict(max_new_tokens=60), "exceed the model's 64 positions"),
    (dict(max_new_tokens=4, min_new_tokens=5), "min_new_tokens=5"),
])
def test_what_the_loop_cannot_do_is_refused_naming_the_alternative(exports, kwargs, message):
    _, folder = exports["mha"]
    with pytest.raises(ValueError, match=message):
        TformerGenaiModel.from_pretrained(folder).generate(prompts(), **kwargs)


def test_a_missing_genai_package_names_the_install_command(exports, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_genai(name, *args, **kwargs):
        if name == "onnxruntime_genai":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_genai)
    with pytest.raises(ValueError, match="pip install --no-deps onnxruntime-genai"):
        TformerGenaiModel.from_pretrained(exports["mha"][1])
