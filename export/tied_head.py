"""One copy of a tied embedding / LM-head weight in the exported graph.

The TorchScript exporter turns a linear over a 3-D input into MatMul(x, Transpose(W)) and constant-folds the
Transpose into a second, transposed initializer: a tied LM head is then stored twice (for a GPT-2-sized vocabulary,
154 MB more), and optimum warns that it found "different candidate ONNX initializers" for the tied weights. Over a
2-D input *with a bias* the same linear exports as Gemm(transB=1) on the weight itself, which the embedding's
Gather shares (without a bias it is MatMul + a folded Transpose again), so a bias-less head gets a zero bias.
"""

from types import MethodType

import torch
from torch import nn
from torch.nn import functional as F


def _two_dimensional_forward(self: nn.Linear, hidden_states: torch.Tensor) -> torch.Tensor:
    leading = hidden_states.shape[:-1]
    flat = hidden_states.reshape(-1, hidden_states.shape[-1])  # (batch * seq, hidden)
    bias = self.bias if self.bias is not None else self.weight.new_zeros(self.weight.shape[0])
    return F.linear(flat, self.weight, bias).reshape(*leading, -1)  # (batch, seq, vocab)


def share_tied_lm_head(model: nn.Module) -> bool:
    """Route a tied output embedding through a 2-D linear for the export; returns whether one was patched."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embeddings = model.get_input_embeddings()
    if head is None or head.weight is not embeddings.weight:
        return False
    head.forward = MethodType(_two_dimensional_forward, head)
    return True


def gemms_to_matmuls(model) -> int:
    """For INT8: ORT's dynamic quantization handles MatMul but not Gemm, so rewrite each Gemm(A, W, C) with
    transB=1 over an initializer W as MatMul(A, W^T) + Add(C), W^T a new initializer (quantized to a quarter of
    its size next). Works on an onnx.ModelProto in place; returns how many Gemms were rewritten."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    rewritten, nodes = 0, []
    for node in graph.node:
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attributes.get("alpha", 1.0) == 1.0 and attributes.get("beta", 1.0) == 1.0
        if node.op_type != "Gemm" or not plain or attributes.get("transA", 0) or attributes.get("transB", 0) != 1 \
                or node.input[1] not in initializers:
            nodes.append(node)
            continue
        transposed = f"{node.input[1]}_transposed_for_matmul"
        if transposed not in initializers:
            array = numpy_helper.to_array(initializers[node.input[1]]).T.copy()
            initializers[transposed] = numpy_helper.from_array(array, transposed)
            graph.initializer.append(initializers[transposed])
        product = f"{node.output[0]}_matmul"
        nodes.append(helper.make_node("MatMul", [node.input[0], transposed], [product if len(node.input) > 2 else
                                                                              node.output[0]]))
        if len(node.input) > 2:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]]))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return rewritten
