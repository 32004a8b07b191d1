"""sentence-transformers folders (random BERT / RoBERTa + stock modules, a locally trained tokenizer) convert into
sentence-transformers folders that encode() like the source in a fresh process without hf_tformer; what cannot be
carried is refused by name with nothing written; the way back gives a native sentence-transformers folder."""

import contextlib
import filecmp
import io
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, LayerNorm, Normalize, Pooling, Transformer
from transformers import (BertConfig, BertModel, DistilBertConfig, DistilBertModel, LlamaConfig, LlamaModel,
                          RobertaConfig, RobertaModel)

from conftest import run_without_hf_tformer
from hf_tformer_conversion import clients, convert, to_native
from hf_tformer_conversion import sentence_transformers as st_folders
from hf_tformer_conversion.__main__ import main as cli
from hf_tformer_demo.toy_tokenizer import train_tokenizer

SENTENCES = ["the quick brown fox jumps over the lazy dog", "paris", "a transformer maps a sequence of tokens to "
             "a sequence of vectors and attention lets every position look at every other position", "Berlin!"]
ALL_POOLING = ("mean", "cls", "max", "lasttoken", "weightedmean", "mean_sqrt_len_tokens")
PIPELINES = {"bert": "TformerEncoderModel", "roberta": "TformerEncoderModel", "llama": "TformerDecoderModel"}
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


def st_source(folder: Path, kind: str = "bert", pooling=ALL_POOLING, subfolder: bool = False) -> Path:
    """A random `kind` model + tokenizer saved by sentence-transformers' own modules; `subfolder` moves the
    Transformer module into 0_Transformer/ as older folders have it."""
    tokenizer = train_tokenizer("bpe" if kind == "llama" else "wordpiece")
    torch.manual_seed(0)
    if kind == "bert":
        model = BertModel(BertConfig(vocab_size=len(tokenizer), max_position_embeddings=64, **SIZES))
    elif kind == "roberta":
        model = RobertaModel(RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=66, type_vocab_size=1,
                                           pad_token_id=tokenizer.pad_token_id, **SIZES))
    elif kind == "llama":  # a decoder embedding model (last-token pooling); its tokenizer gives no token types
        model = LlamaModel(LlamaConfig(vocab_size=len(tokenizer), num_key_value_heads=2,
                                       max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                                       **{**SIZES, "intermediate_size": 48}))
        tokenizer.model_input_names = tokenizer.init_kwargs["model_input_names"] = ["input_ids", "attention_mask"]
    else:
        model = DistilBertModel(DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=1, n_heads=4,
                                                 hidden_dim=64))
    hf = folder.parent / f"{folder.name}-hf"
    model.save_pretrained(hf)
    tokenizer.save_pretrained(hf)
    pool = Pooling(32, pooling_mode=pooling)
    width = pool.get_sentence_embedding_dimension()
    modules = [Transformer(str(hf)), pool, Dense(width, 16), Normalize()] if not subfolder else [
        Transformer(str(hf)), pool, LayerNorm(width), Dense(width, 24)]
    SentenceTransformer(modules=modules, device="cpu").save(str(folder))
    if subfolder:
        inner = folder / "0_Transformer"
        inner.mkdir()
        for path in [p for p in folder.iterdir() if p.is_file()]:
            if path.name not in ("modules.json", "config_sentence_transformers.json", "README.md"):
                path.rename(inner / path.name)
        modules = json.loads((folder / "modules.json").read_text())
        modules[0]["path"] = "0_Transformer"
        (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    return folder


def encode(folder: Path) -> torch.Tensor:
    return SentenceTransformer(str(folder), device="cpu").encode(SENTENCES, convert_to_tensor=True)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """bert: root layout, every pooling mode + Dense + Normalize, through convert(); llama: last-token pooling;
    roberta: 0_Transformer/ layout, mean pooling + LayerNorm + Dense, through the CLI (its output kept)."""
    tmp = tmp_path_factory.mktemp("st")
    bert, roberta = st_source(tmp / "bert"), st_source(tmp / "roberta", "roberta", "mean", subfolder=True)
    report = convert(str(bert), str(tmp / "bert-out"), progress=False)
    convert(str(st_source(tmp / "llama", "llama", "lasttoken")), str(tmp / "llama-out"), progress=False)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli([str(roberta), str(tmp / "roberta-out"), "--no-progress"]) == 0
    return tmp, report, printed.getvalue()


def test_converted_folders_encode_like_the_source_without_hf_tformer(converted):
    tmp, _, _ = converted
    torch.save({name: encode(tmp / name) for name in PIPELINES}, tmp / "reference.pt")
    code = f"""
    import torch
    from sentence_transformers import SentenceTransformer
    reference = torch.load("{tmp}/reference.pt")
    for name, ours in {PIPELINES!r}.items():
        model = SentenceTransformer("{tmp}/" + name + "-out", device="cpu", trust_remote_code=True)
        inner = model[0].model
        assert type(inner).__name__ == ours, type(inner)
        assert type(inner).__module__.startswith("transformers_modules"), type(inner).__module__
        out = model.encode({SENTENCES!r}, convert_to_tensor=True)
        cosine = torch.nn.functional.cosine_similarity(out, reference[name], dim=-1).min()
        difference = (out - reference[name]).abs().max()
        assert out.shape == reference[name].shape and cosine >= 0.99999 and difference <= 1e-5, (cosine, difference)
        print("OK", name, float(cosine), float(difference))
    """
    output = run_without_hf_tformer(code, cwd=tmp, env={"HF_HOME": str(tmp / "hf_home"), "HF_HUB_OFFLINE": "1"})
    assert output.count("OK") == len(PIPELINES), output


def test_modules_and_files_are_carried_where_modules_json_expects_them(converted):
    tmp, report, _ = converted
    assert report.target_class == "TformerEncoderModel" and report.parity.max_abs_diff <= 1e-5
    assert report.encode_parity.min_cosine >= 0.99999 and report.encode_parity.max_abs_diff <= 1e-5
    assert {"modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "1_Pooling/",
            "2_Dense/", "3_Normalize/"} <= set(report.carried)
    for name, transformer in (("bert", ""), ("roberta", "0_Transformer")):
        source, out = tmp / name, tmp / f"{name}-out"
        module_settings = Path(transformer, "sentence_bert_config.json")
        for file in ("modules.json", "config_sentence_transformers.json", module_settings):
            assert filecmp.cmp(source / file, out / file, shallow=False), file
        for module in json.loads((source / "modules.json").read_text())[1:]:
            assert not filecmp.dircmp(source / module["path"], out / module["path"]).diff_files
        assert json.loads((out / transformer / "config.json").read_text())["model_type"] == "hf_tformer_encoder"
        assert (out / transformer / "model.safetensors").exists() and (out / "modeling_tformer_encoder.py").exists()
    assert not (tmp / "roberta-out" / "config.json").exists()  # the root holds only the remote code besides modules


def test_cli_prints_the_encode_parity(converted):
    _, _, printed = converted
    assert "converted RobertaModel -> TformerEncoderModel" in printed
    assert re.search(r"sentence-transformers encode\(\) parity: min cosine (1\.0000000|0\.99999\d\d), max \|diff\| "
                     rf"\S+ over {len(st_folders.SENTENCES)} sentences", printed), printed


def test_the_way_back_gives_a_native_sentence_transformers_folder(converted):
    tmp, _, _ = converted
    for name, model_type in (("bert", "bert"), ("roberta", "roberta")):
        back = to_native(str(tmp / f"{name}-out"), str(tmp / f"{name}-back"), model_type)
        assert back.encode_parity.min_cosine >= 0.99999
        assert not list((tmp / f"{name}-back").rglob("*.py"))  # a plain checkpoint: no remote code anywhere
        torch.testing.assert_close(encode(tmp / f"{name}-back"), encode(tmp / name), atol=1e-5, rtol=0)


def _edit_json(path: Path, edit) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def _with_module(kind: str):
    return lambda modules: modules + [{"idx": len(modules), "name": "9", "path": "9_Extra", "type": kind}]


REFUSED = {
    "custom module": ("modules.json", _with_module("my_package.custom.MyModule"),
                      r"'my_package.custom.MyModule', which hf_tformer cannot carry.*Supported: one sentence_transf"),
    "model-holding stock module": ("modules.json", _with_module("sentence_transformers.models.Asym"),
                                   r"'sentence_transformers.models.Asym', which hf_tformer cannot carry"),
    "second Transformer": ("modules.json", _with_module("sentence_transformers.models.Transformer"),
                           r"has 2 Transformer modules; exactly one converts"),
    "sparse encoder": ("config_sentence_transformers.json", lambda c: {**c, "model_type": "SparseEncoder"},
                       r"is a sentence-transformers SparseEncoder folder"),
    "task": ("sentence_bert_config.json", lambda c: {**c, "transformer_task": "sequence-classification"},
             r"transformer_task='sequence-classification'.*only 'feature-extraction'"),
    "config kwargs": ("sentence_bert_config.json", lambda c: {**c, "config_kwargs": {"hidden_dropout_prob": 0.2}},
                      r"config_kwargs=\{'hidden_dropout_prob': 0.2\}"),
    "model kwargs": ("sentence_bert_config.json", lambda c: {**c, "model_args": {"add_pooling_layer": False}},
                     r"model_args \['add_pooling_layer'\].*supported: \['dtype'"),
}


@pytest.fixture(scope="module")
def plain_source(tmp_path_factory):
    return st_source(tmp_path_factory.mktemp("plain") / "st", pooling="mean")


def _nothing_written(out: Path) -> bool:
    return not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_cannot_be_carried_is_refused_by_name_and_nothing_is_written(tmp_path, plain_source, case):
    source = tmp_path / "st"
    shutil.copytree(plain_source, source)
    file, edit, message = REFUSED[case]
    _edit_json(source / file, edit)
    with pytest.raises(ValueError, match=message):
        convert(str(source), str(tmp_path / "out"), progress=False)
    assert _nothing_written(tmp_path / "out")


def test_a_transformer_module_of_another_model_type_is_refused_by_name(tmp_path):
    source = st_source(tmp_path / "st", "distilbert", "cls")
    with pytest.raises(ValueError, match=r"Transformer module \(at the folder root\) holds model_type='distilbert'.*"
                                         r"supported: \['bart', 'bert'"):
        convert(str(source), str(tmp_path / "out"), progress=False)
    assert _nothing_written(tmp_path / "out")


def test_a_pipeline_that_encodes_differently_is_refused_and_nothing_is_written(tmp_path, plain_source, monkeypatch):
    """The Transformer module converts with parity, but a module carried wrongly changes encode(): the gate sees it."""
    copytree = shutil.copytree

    def carry_and_change_pooling(source, destination, **kwargs):
        copytree(source, destination, **kwargs)
        if Path(destination).name == "1_Pooling":
            _edit_json(Path(destination) / "config.json", lambda c: {**c, "pooling_mode": "cls"})

    monkeypatch.setattr(st_folders.shutil, "copytree", carry_and_change_pooling)
    with pytest.raises(ValueError, match=r"sentence-transformers parity failed: encode\(\) min cosine"):
        convert(str(plain_source), str(tmp_path / "out"), progress=False)
    assert _nothing_written(tmp_path / "out")


def test_sentence_transformers_outside_the_tested_range_is_named(tmp_path, plain_source, monkeypatch):
    monkeypatch.setattr(clients, "installed_version", lambda name: "4.1.0" if name == "sentence-transformers" else None)
    with pytest.raises(clients.ClientVersionError, match=r"sentence-transformers 4.1.0 is outside the range"):
        convert(str(plain_source), str(tmp_path / "out"), progress=False)
    assert _nothing_written(tmp_path / "out")


def test_without_sentence_transformers_the_folder_converts_and_says_encode_was_not_checked(tmp_path, plain_source,
                                                                                          monkeypatch):
    monkeypatch.setattr(st_folders, "sentence_transformers_installed", lambda: False)
    report = convert(str(plain_source), str(tmp_path / "out"), progress=False)
    assert report.encode_parity is None and report.parity.max_abs_diff <= 1e-5
    assert "encode() of the whole pipeline was not checked" in report.notes
    assert (tmp_path / "out" / "1_Pooling" / "config.json").exists()


def test_a_module_folder_missing_as_on_the_hub_is_fine(tmp_path, plain_source):
    """Git stores no empty folders: Hub repos list a Normalize module in modules.json without its folder."""
    source = tmp_path / "st"
    shutil.copytree(plain_source, source)
    shutil.rmtree(source / "3_Normalize")
    report = convert(str(source), str(tmp_path / "out"), progress=False)
    assert report.encode_parity.min_cosine >= 0.99999 and "3_Normalize/" not in report.carried
    assert torch.linalg.vector_norm(encode(tmp_path / "out"), dim=-1).sub(1).abs().max() < 1e-5  # still normalized
