"""Conversion from transformers' own classes (random weights), gated on parity, reloaded as remote code."""

import json
import re

import pytest
import torch
import transformers
from transformers import (BartConfig, BartForConditionalGeneration, BertConfig, BertForMaskedLM,
                          BertForQuestionAnswering, BertForSequenceClassification, BertForTokenClassification,
                          BertModel, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM,
                          LlamaForSequenceClassification, MarianConfig, MarianMTModel, RobertaConfig,
                          RobertaForMaskedLM, RobertaForSequenceClassification, RobertaModel, T5Config,
                          T5ForConditionalGeneration, T5Model, XLMRobertaConfig, XLMRobertaForTokenClassification)

from conftest import run_without_hf_tformer
from hf_tformer_conversion import convert
from hf_tformer_conversion.__main__ import main as cli

BERT = dict(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
            max_position_embeddings=64)


def save(model, folder):
    torch.manual_seed(0)
    model.save_pretrained(folder)
    return str(folder)


def sources():
    torch.manual_seed(0)
    bart = BartForConditionalGeneration(BartConfig(
        vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64))
    marian = MarianMTModel(MarianConfig(
        vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        scale_embedding=True, activation_function="swish", pad_token_id=119, decoder_start_token_id=119))
    with torch.no_grad():
        bart.final_logits_bias.normal_()
        marian.final_logits_bias.normal_()
    roberta = dict(BERT, max_position_embeddings=66, type_vocab_size=1, pad_token_id=1)
    llama = dict(vocab_size=120, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64, rope_theta=500.0, pad_token_id=0)
    # sparse MoE: 4 experts, top-2; Mixtral with a sliding window shorter than the gate's inputs; Qwen2-MoE with a
    # dense first layer, a shared expert and un-renormalised top-k
    moe = dict(llama, intermediate_size=24, num_experts_per_tok=2)
    mixtral = dict(moe, num_local_experts=4, sliding_window=8)
    qwen2_moe = dict(moe, num_experts=4, moe_intermediate_size=24, shared_expert_intermediate_size=40,
                     mlp_only_layers=[0], norm_topk_prob=False)
    # sliding window 8 < the parity gate's 12-token inputs; Qwen: layer 0 full, layer 1 sliding
    qwen = dict(llama, use_sliding_window=True, sliding_window=8, max_window_layers=1)
    neox = dict(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=64, rotary_pct=0.25, rope_theta=500.0, pad_token_id=0)
    t5 = dict(vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
              relative_attention_num_buckets=8, relative_attention_max_distance=12, decoder_start_token_id=0)
    t5_v11 = T5ForConditionalGeneration(T5Config(**dict(t5, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                                                         num_decoder_layers=1)))
    # transformers 5 ties T5's head at construction whatever the config says; a real v1.1 checkpoint has its own
    t5_v11.lm_head.weight = torch.nn.Parameter(torch.randn_like(t5_v11.shared.weight))
    return {
        "bert-model": BertModel(BertConfig(**BERT)),
        "bert-mlm": BertForMaskedLM(BertConfig(**BERT)),
        "bert-cls": BertForSequenceClassification(BertConfig(**BERT, num_labels=3,
                                                             id2label={0: "a", 1: "b", 2: "c"})),
        "bert-token": BertForTokenClassification(BertConfig(**BERT, num_labels=4)),
        "bert-qa": BertForQuestionAnswering(BertConfig(**BERT)),
        "gpt2": GPT2LMHeadModel(GPT2Config(vocab_size=120, n_positions=64, n_embd=32, n_layer=2, n_head=4)),
        "bart": bart,
        "roberta-model": RobertaModel(RobertaConfig(**roberta)),
        "roberta-mlm": RobertaForMaskedLM(RobertaConfig(**roberta)),
        "roberta-cls": RobertaForSequenceClassification(RobertaConfig(**roberta, num_labels=2,
                                                                      id2label={0: "neg", 1: "pos"})),
        "xlmr-token": XLMRobertaForTokenClassification(XLMRobertaConfig(**roberta, num_labels=3)),
        "marian": marian,
        "llama": LlamaForCausalLM(LlamaConfig(**llama)),
        "llama-mqa-cls": LlamaForSequenceClassification(LlamaConfig(**dict(llama, num_key_value_heads=1),
                                                                    num_labels=3)),
        # T5 v1.0 (ReLU, tied: the LM-head input is rescaled) and v1.1 / Flan (gated GELU, untied head);
        # few buckets and a short max distance so the test inputs reach the log-spaced buckets
        "t5": T5ForConditionalGeneration(T5Config(**t5)),
        "t5-v1.1": t5_v11,
        "t5-model": T5Model(T5Config(**t5)),
        "mixtral": transformers.MixtralForCausalLM(transformers.MixtralConfig(**mixtral)),
        "qwen2-moe": transformers.Qwen2MoeForCausalLM(transformers.Qwen2MoeConfig(**qwen2_moe)),
        "mistral": transformers.MistralForCausalLM(transformers.MistralConfig(**llama, sliding_window=8, head_dim=8)),
        "qwen2": transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**qwen)),
        "qwen3": transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**dict(qwen, max_window_layers=0), head_dim=8)),
        "gpt-neox": transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**neox)),
        "gpt-neox-sequential": transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
            **neox, use_parallel_residual=False)),
    }


# sliding window, QK-norm, partial rotary: two reload as remote code here, every one is in test_mistral_qwen.py
LOCAL = ("mistral", "gpt-neox")
AUTO_CLASS = {"bert-model": "AutoModel", "bert-mlm": "AutoModelForMaskedLM",
              "bert-cls": "AutoModelForSequenceClassification", "bert-token": "AutoModelForTokenClassification",
              "bert-qa": "AutoModelForQuestionAnswering", "gpt2": "AutoModelForCausalLM", "bart": "AutoModelForSeq2SeqLM",
              "roberta-model": "AutoModel", "roberta-mlm": "AutoModelForMaskedLM",
              "roberta-cls": "AutoModelForSequenceClassification", "xlmr-token": "AutoModelForTokenClassification",
              "marian": "AutoModelForSeq2SeqLM", "llama": "AutoModelForCausalLM",
              "llama-mqa-cls": "AutoModelForSequenceClassification", "t5": "AutoModelForSeq2SeqLM",
              "t5-v1.1": "AutoModelForSeq2SeqLM", "t5-model": "AutoModel", "mixtral": "AutoModelForCausalLM",
              "qwen2-moe": "AutoModelForCausalLM", **dict.fromkeys(LOCAL, "AutoModelForCausalLM")}
GENERATIVE = ("gpt2", "bart", "marian", "llama", "t5", "t5-v1.1", "mixtral", "qwen2-moe", *LOCAL)
SEQ2SEQ = ("bart", "marian", "t5", "t5-v1.1", "t5-model")


RELOAD_EVERY_OUTPUT = """
import json, traceback
import torch, transformers
results = {}
for name, (auto, folder, reference) in json.load(open("cases.json")).items():
    try:
        model = getattr(transformers, auto).from_pretrained(folder, trust_remote_code=True).eval()
        data = torch.load(reference)
        with torch.no_grad():
            out = model(input_ids=data["ids"], **data["extra"])[0]
        results[name] = {"class": type(model).__name__, "diff": float((out - data["reference"]).abs().max())}
    except Exception:
        results[name] = {"error": traceback.format_exc()[-3000:]}
json.dump(results, open("reloads.json", "w"))
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    """name -> (conversion report or the error it raised, output folder, reload result) for every AUTO_CLASS case.
    The reload result comes from ONE fresh process without hf_tformer that loads every output as remote code with
    its Auto class and compares its first output with the source model's (a process per case spent ~3 s each
    starting torch and transformers)."""
    root = tmp_path_factory.mktemp("convert")
    models, made, cases = sources(), {}, {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HOME", str(root / "hf_home"))
        for name, auto in AUTO_CLASS.items():
            source = models[name].eval()
            folder = save(source, root / "sources" / name)
            out = root / "converted" / re.sub(r"\W", "_", name)  # one dynamic module per folder name
            try:
                made[name] = (convert(folder, str(out), progress=False), out)
            except Exception as error:  # noqa: BLE001 (raised again by this case's test, not by every case's)
                made[name] = (error, out)
                continue
            ids = torch.randint(3, 120, (2, 7))
            extra = {"decoder_input_ids": ids[:, :3]} if name in SEQ2SEQ else {}
            with torch.no_grad():
                reference = source(input_ids=ids, **extra)[0]
            torch.save({"ids": ids, "extra": extra, "reference": reference}, root / f"{out.name}.pt")
            cases[name] = (auto, str(out), str(root / f"{out.name}.pt"))
        (root / "cases.json").write_text(json.dumps(cases))
        run_without_hf_tformer(RELOAD_EVERY_OUTPUT, cwd=root)
    reloads = json.loads((root / "reloads.json").read_text())
    return {name: (report, out, reloads.get(name)) for name, (report, out) in made.items()}


@pytest.mark.parametrize("name", list(AUTO_CLASS))
def test_converts_with_parity_and_reloads_as_remote_code(converted, name):
    report, out, reload = converted[name]
    if isinstance(report, Exception):
        raise report
    assert report.parity.max_abs_diff <= 1e-5
    if name in GENERATIVE:
        assert report.parity.greedy_identical
    assert (out / "model.safetensors").exists() and (out / "README.md").exists()
    assert "pipeline_tag" in (out / "README.md").read_text()
    config = json.loads((out / "config.json").read_text())
    if name == "bert-cls":
        assert config["id2label"] == {"0": "a", "1": "b", "2": "c"}
    assert "error" not in reload, reload["error"]
    assert reload["class"].startswith("Tformer") and reload["diff"] <= 1e-5, reload


def test_tokenizer_and_generation_config_are_carried_over(tmp_path):
    from hf_tformer_demo.toy_tokenizer import train_tokenizer

    tokenizer = train_tokenizer("bpe")
    source = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=4))
    folder = save(source, tmp_path / "source")
    tokenizer.save_pretrained(folder)
    report = convert(folder, str(tmp_path / "out"), progress=False)
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(report.carried)
    pipe = transformers.pipeline("text-generation", model=str(tmp_path / "out"), trust_remote_code=True)
    assert pipe("the quick", max_new_tokens=3, do_sample=False)[0]["generated_text"].startswith("the quick")


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    from transformers import DistilBertConfig, DistilBertModel

    folder = save(DistilBertModel(DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=4, hidden_dim=32)),
                  tmp_path / "distilbert")
    from hf_tformer_conversion.sources import SOURCES

    assert {"bart", "bert", "gpt2", "gpt_neox", "llama", "mistral", "qwen2", "qwen3", "t5", "vit", "clip",
            "clip_text_model", "clip_vision_model", "whisper"} <= set(SOURCES)
    with pytest.raises(ValueError, match=r"'distilbert' is not supported; supported: "
                                         + re.escape(str(sorted(SOURCES)))):
        convert(folder, str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def _tamper(folder, edit):
    from safetensors.torch import load_file, save_file

    weights = load_file(f"{folder}/model.safetensors")
    save_file(edit(weights), f"{folder}/model.safetensors", metadata={"format": "pt"})


def test_missing_and_extra_keys_are_named(tmp_path):
    folder = save(BertModel(BertConfig(**BERT)), tmp_path / "source")
    _tamper(folder, lambda w: {k: v for k, v in w.items() if k != "encoder.layer.1.output.dense.weight"})
    with pytest.raises(ValueError, match=r"target keys missing: \['model.encoder.layers.1.mlp.down_proj.weight'\]"):
        convert(folder, str(tmp_path / "out"), progress=False)
    _tamper(folder, lambda w: {**w, "encoder.layer.1.output.dense.weight": torch.zeros(32, 64),
                               "mystery.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"source keys no rule consumes: \['mystery.weight'\]"):
        convert(folder, str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_corrupted_safetensors_is_refused(tmp_path):
    folder = save(BertModel(BertConfig(**BERT)), tmp_path / "source")
    (tmp_path / "source" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        convert(folder, str(tmp_path / "out"), progress=False)


def test_pickles_need_the_flag(tmp_path):
    model = BertModel(BertConfig(**BERT)).eval()
    model.save_pretrained(tmp_path / "source")  # then swap the weights for a pickle (5.x no longer writes .bin)
    (tmp_path / "source" / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "source" / "pytorch_model.bin")
    with pytest.raises(ValueError, match="--allow-pickle"):
        convert(str(tmp_path / "source"), str(tmp_path / "out"), progress=False)
    report = convert(str(tmp_path / "source"), str(tmp_path / "out"), allow_pickle=True, progress=False)
    assert report.parity.max_abs_diff <= 1e-5


def test_failed_parity_writes_nothing(tmp_path):
    folder = save(BertModel(BertConfig(**BERT)), tmp_path / "source")
    config = json.loads((tmp_path / "source" / "config.json").read_text())
    config["layer_norm_eps"] = 0.5  # the converted model would compute something else than the weights' source
    (tmp_path / "source" / "config.json").write_text(json.dumps(config))
    from hf_tformer_conversion import sources

    original = sources.BERT.translate_config

    def wrong(config_dict):
        translated = original(config_dict)
        translated.layer_norm_eps = 1e-12 if config_dict["layer_norm_eps"] == 0.5 else 0.5
        return translated

    object.__setattr__(sources.BERT, "translate_config", wrong)
    try:
        with pytest.raises(ValueError, match="parity check failed"):
            convert(folder, str(tmp_path / "out"), progress=False)
    finally:
        object.__setattr__(sources.BERT, "translate_config", original)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_existing_destination_needs_force_and_cli_reports(tmp_path, capsys):
    folder = save(BertModel(BertConfig(**BERT)), tmp_path / "source")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "config.json").write_text("{}")  # an earlier checkpoint: what --force may replace
    (tmp_path / "out" / "keep.txt").write_text("user data")
    assert cli([folder, str(tmp_path / "out")]) == 1
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "out" / "keep.txt").exists()
    assert cli([folder, str(tmp_path / "out"), "--force"]) == 0
    assert "parity: max |diff|" in capsys.readouterr().out
    assert not (tmp_path / "out" / "keep.txt").exists()


def test_converts_by_repo_id_from_the_hub_cache_offline(tmp_path, hf_home):
    import subprocess
    import sys

    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = hf_home / "hub" / "models--someone--tiny-bert"
    save(BertForMaskedLM(BertConfig(**BERT)), repo / "snapshots" / revision)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    env = {**__import__("os").environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "hf_tformer_conversion", "someone/tiny-bert", str(tmp_path / "out"),
                             "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "parity: max |diff|" in result.stdout
    assert "base_model: someone/tiny-bert" in (tmp_path / "out" / "README.md").read_text()


@pytest.mark.parametrize("config, match", [
    (LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=4,
                 rope_scaling={"rope_type": "linear", "factor": 2.0}), "rope_type='linear' is not supported"),
    (LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=4,
                 head_dim=8), "head_dim=8 differs"),
    (MarianConfig(vocab_size=50, decoder_vocab_size=40, share_encoder_decoder_embeddings=False, d_model=16,
                  encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                  encoder_ffn_dim=32, decoder_ffn_dim=32, pad_token_id=49, decoder_start_token_id=49),
     "separate source and target vocabularies"),
    (BartConfig(vocab_size=50, d_model=16, encoder_attention_heads=2, decoder_attention_heads=4),
     "encoder_attention_heads=2, decoder_attention_heads=4 is not supported"),
])
def test_configs_we_cannot_represent_are_refused_by_name(config, match):
    from hf_tformer_conversion.sources import SOURCES

    with pytest.raises(ValueError, match=match):
        SOURCES[config.model_type].translate_config(config.to_dict())
