"""export/ort_model.py's OrtSession: named torch tensors in, named torch tensors out, whatever form the inputs come
in (generate() passes expanded, non-contiguous position ids; users pass int32 ids, bf16 features or numpy arrays),
and without a copy of the inputs that are already what the graph takes (the per-token path of generation)."""

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from hf_tformer_export.ort_model import OrtSession  # noqa: E402


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> OrtSession:
    """ids (int64) and features (float) -> doubled, each a (batch, n) graph input."""
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "n"])
    features = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", "n"])
    outputs = [helper.make_tensor_value_info(name, kind, ["batch", "n"])
               for name, kind in (("ids_twice", TensorProto.INT64), ("features_twice", TensorProto.FLOAT))]
    graph = helper.make_graph([helper.make_node("Add", ["ids", "ids"], ["ids_twice"]),
                               helper.make_node("Add", ["features", "features"], ["features_twice"])],
                              "double", [ids, features], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("graph") / "model.onnx"
    onnx.save(model, path)
    return OrtSession(path, "CPUExecutionProvider")


IDS = torch.tensor([[1, 2, 3], [4, 5, 6]])
FEATURES = torch.tensor([[0.5, 1.5, -2.0], [3.0, 0.25, 1.0]])


@pytest.mark.parametrize("ids, features", [
    (IDS, FEATURES),
    (torch.tensor([1, 2, 3]).expand(2, 3), FEATURES.t().contiguous().t()),  # non-contiguous views
    (IDS.to(torch.int32), FEATURES.to(torch.bfloat16)),  # other dtypes: converted to the graph's
    (IDS, FEATURES.clone().requires_grad_()),
    (IDS.numpy(), FEATURES.tolist()),
], ids=["as-the-graph-takes", "non-contiguous", "other-dtypes", "requires-grad", "numpy-and-lists"])
def test_every_input_form_gives_the_graphs_outputs_as_torch_tensors(session, ids, features):
    outputs = session.run({"ids": ids, "features": features, "unused": torch.zeros(1)})
    assert list(outputs) == ["ids_twice", "features_twice"]
    expected_ids = 2 * torch.as_tensor(np.asarray(ids), dtype=torch.int64)
    expected_features = 2 * torch.as_tensor(features).detach().float()
    torch.testing.assert_close(outputs["ids_twice"], expected_ids)
    torch.testing.assert_close(outputs["features_twice"], expected_features)


def test_inputs_the_graph_takes_as_they_are_reach_it_without_a_copy(session, monkeypatch):
    fed = {}
    run = session.session.run

    def recording_run(names, feed, *args):
        fed.update(feed)
        return run(names, feed, *args)

    monkeypatch.setattr(session.session, "run", recording_run)
    session.run({"ids": IDS, "features": FEATURES})
    assert np.shares_memory(fed["ids"], IDS.numpy()) and np.shares_memory(fed["features"], FEATURES.numpy())


def test_a_missing_input_is_named(session):
    with pytest.raises(ValueError, match=r"model.onnx needs the inputs \['features'\]"):
        session.run({"ids": IDS, "features": None})
