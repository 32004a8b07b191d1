"""Half-precision checkpoints: verified in fp32, written in their own dtype (or the one asked for), both ways."""

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

import hf_tformer as ht
from hf_tformer_conversion import convert, to_native
from hf_tformer_conversion.__main__ import main as cli
from hf_tformer_conversion.dtypes import checkpoint_dtype, majority_dtype
from hf_tformer_conversion.verify import check_parity
from test_convert import BERT, save


@pytest.fixture(params=[torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def half_source(request, tmp_path):
    torch.manual_seed(0)
    return request.param, save(BertForMaskedLM(BertConfig(**BERT)).to(request.param), tmp_path / "half")


def test_a_half_source_is_verified_in_fp32_and_written_in_its_own_dtype(tmp_path, half_source):
    dtype, source = half_source
    report = convert(source, str(tmp_path / "ours"), progress=False)
    assert report.dtype == str(dtype).removeprefix("torch.")
    assert report.parity.max_abs_diff <= 1e-5
    assert checkpoint_dtype(tmp_path / "ours") == dtype
    size = (tmp_path / "ours" / "model.safetensors").stat().st_size
    assert size <= 1.02 * (tmp_path / "half" / "model.safetensors").stat().st_size  # not doubled to fp32
    ours = ht.TformerEncoderForMaskedLM.from_pretrained(tmp_path / "ours", dtype="auto")
    assert ours.dtype == dtype
    # The stored values are the source's own, bit for bit: upcast, both compute the same fp32 function.
    reference = BertForMaskedLM.from_pretrained(source, dtype=torch.float32).eval()
    assert check_parity(reference, ours.float().eval()).max_abs_diff <= 1e-5


def test_the_way_back_keeps_the_dtype_too(tmp_path, half_source):
    dtype, source = half_source
    convert(source, str(tmp_path / "ours"), progress=False)
    back = to_native(str(tmp_path / "ours"), str(tmp_path / "back"), "bert")
    assert back.dtype == str(dtype).removeprefix("torch.") and back.parity.max_abs_diff <= 1e-5
    assert checkpoint_dtype(tmp_path / "back") == dtype
    restored = BertForMaskedLM.from_pretrained(tmp_path / "back", dtype="auto")
    original = BertForMaskedLM.from_pretrained(source, dtype="auto")
    assert restored.dtype == dtype
    for (name, value), (_, expected) in zip(restored.state_dict().items(), original.state_dict().items()):
        assert torch.equal(value, expected), name


def test_an_explicit_dtype_is_written_and_cli_reports_it(tmp_path, half_source, capsys):
    dtype, source = half_source
    assert cli([source, str(tmp_path / "fp32"), "--dtype", "float32", "--no-progress"]) == 0
    assert "(float32)" in capsys.readouterr().out
    assert checkpoint_dtype(tmp_path / "fp32") == torch.float32
    fp32 = save(BertForMaskedLM(BertConfig(**BERT)), tmp_path / "fp32_source")
    assert convert(fp32, str(tmp_path / "bf16"), progress=False, dtype="bfloat16").dtype == "bfloat16"
    assert checkpoint_dtype(tmp_path / "bf16") == torch.bfloat16


def test_an_unknown_dtype_is_refused_before_any_work(tmp_path, half_source):
    _, source = half_source
    with pytest.raises(ValueError, match=r"dtype='int8'.*'auto'"):
        convert(source, str(tmp_path / "out"), progress=False, dtype="int8")
    with pytest.raises(ValueError, match=r"dtype='half'"):
        to_native(source, str(tmp_path / "back"), "bert", dtype="half")
    assert not (tmp_path / "out").exists() and not (tmp_path / "back").exists()


def test_majority_dtype_counts_elements_not_tensors():
    mixed = [torch.zeros(1000, dtype=torch.bfloat16), torch.zeros(3), torch.zeros(4), torch.zeros(2, dtype=torch.long)]
    assert majority_dtype(mixed) == torch.bfloat16
    assert majority_dtype([torch.zeros(2, dtype=torch.long)]) == torch.float32
