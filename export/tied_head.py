"""One copy of a tied embedding / LM-head weight in the exported graph, in the layout the LM head reads fastest.

The TorchScript exporter turns a linear over a 3-D input into MatMul(x, Transpose(W)) and constant-folds the
Transpose into a second, transposed initializer: a tied LM head is then stored twice (for a GPT-2-sized vocabulary,
154 MB more), and optimum warns that it found "different candidate ONNX initializers" for the tied weights. A
Gemm(transB=1) on W itself stores it once, but ONNX Runtime's CPU Gemm with a transposed B runs a single-token LM
head ~2.5x slower than a MatMul over a prepacked W^T (measured: 478 vs ~190 us of a 1.0 ms decoding step, vocab
8192, hidden 256), which made our decoder exports ~5% slower per token than optimum's untied ones.

So the export stores only W^T (hidden, vocab): the head is MatMul(x, W^T), and every embedding lookup of the tied
table gathers columns of W^T (Gather axis 1, then a transpose of the few gathered vectors) instead of rows of W.
"""

from types import MethodType

import torch
from torch import nn

TRANSPOSED = "tied_weight_transposed"  # the parameter's name on the head module, (hidden, vocab)


def _head_forward(self: nn.Linear, hidden_states: torch.Tensor) -> torch.Tensor:
    logits = torch.matmul(hidden_states, getattr(self, TRANSPOSED))  # (..., vocab)
    return logits + self.bias if self.bias is not None else logits


def _embedding_forward(columns: nn.Parameter):
    def forward(self: nn.Embedding, input_ids: torch.Tensor) -> torch.Tensor:
        picked = columns.index_select(1, input_ids.reshape(-1))  # (hidden, tokens): Gather(axis=1)
        return picked.t().reshape(*input_ids.shape, columns.shape[0])  # (..., hidden)
    return forward


def share_tied_lm_head(model: nn.Module) -> bool:
    """Route a tied output embedding and every embedding lookup of its table through one transposed copy for the
    export (the model is the export's own copy, loaded for it); returns whether the model had a tied head."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    embeddings = model.get_input_embeddings()
    if head is None or head.weight is not embeddings.weight:
        return False
    columns = nn.Parameter(head.weight.detach().t().contiguous(), requires_grad=False)  # (hidden, vocab)
    head.register_parameter(TRANSPOSED, columns)
    head.forward = MethodType(_head_forward, head)
    for module in model.modules():  # the encoder's and the decoder's lookups of a shared table, too
        if isinstance(module, nn.Embedding) and module.weight is head.weight:
            module.forward = MethodType(_embedding_forward(columns), module)
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
