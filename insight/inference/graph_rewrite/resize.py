"""A cubic ``Resize`` along one axis as a 4-tap gather (the HTSAT 1001 → 1024 frame stretch).

ONNX Runtime's CPU cubic ``Resize`` spends ~5 ms per 10 s window on the stretch, a tenth of
the int8 audio tower. Every output row mixes at most 4 input rows with fixed weights, which
are read off ONNX Runtime's own kernel by resizing an identity matrix with the node's own
attributes. The gather + weighted sum costs a fraction of that.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from insight.inference.graph_rewrite.graph import Graph
from insight.inference.graph_rewrite.probe import session

TAPS = 4


def cubic_resizes(gr: Graph, dependent: set[str]) -> list[onnx.NodeProto]:
    out = []
    for node in gr.g.node:
        if node.op_type != "Resize" or node.input[0] not in dependent:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("mode") == b"cubic" and not attrs.get("antialias"):
            out.append(node)
    return out


def needed_tensors(nodes: list[onnx.NodeProto]) -> list[str]:
    return [n for node in nodes for n in (node.input[0], node.output[0])]


def _matrix(node: onnx.NodeProto, n_in: int, n_out: int, opset: int, ir: int) -> np.ndarray:
    """``[n_out, n_in]``: ONNX Runtime's weights for this node along a resized axis."""
    probe = helper.make_node("Resize", ["x", "roi", "", "sizes"], ["y"])
    probe.attribute.extend(node.attribute)
    graph = helper.make_graph(
        [probe],
        "resize_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, n_in, n_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[
            onnx.numpy_helper.from_array(np.zeros(0, np.float32), "roi"),
            onnx.numpy_helper.from_array(np.array([1, 1, n_out, n_in], np.int64), "sizes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    eye = np.eye(n_in, dtype=np.float32)[None, None]
    (y,) = session(model).run(None, {"x": eye})
    return np.asarray(y)[0, 0]


def rewrite_resize(
    gr: Graph,
    node: onnx.NodeProto,
    one: dict[str, np.ndarray],
    two: dict[str, np.ndarray],
    opset: int,
    ir: int,
) -> str | None:
    """Replace ``node`` by gather + weighted sum; None when done, else why not."""
    x1, y1 = one[node.input[0]].shape, one[node.output[0]].shape
    x2, y2 = two[node.input[0]].shape, two[node.output[0]].shape
    if len(x1) != 4 or x2[1:] != x1[1:] or y2[1:] != y1[1:] or y1[:2] != x1[:2]:
        return f"resize {node.name}: shapes {x1} -> {y1} are not a 4-D stretch"
    axes = [a for a in (2, 3) if x1[a] != y1[a]]
    if len(axes) != 1:
        return f"resize {node.name}: {len(axes)} axes change (only one is handled)"
    axis = axes[0]
    n_in, n_out = int(x1[axis]), int(y1[axis])
    m = _matrix(node, n_in, n_out, opset, ir)
    index = np.argsort(-np.abs(m), axis=1, kind="stable")[:, :TAPS]
    weight = np.take_along_axis(m, index, axis=1)
    rest = m.copy()
    np.put_along_axis(rest, index, 0.0, axis=1)
    if np.any(rest != 0):
        return f"resize {node.name}: more than {TAPS} taps per output row"
    x = node.input[0]
    taps = gr.make_node(
        "Gather",
        [x, gr.add_initializer("taps", index.reshape(-1).astype(np.int64))],
        "taps",
        axis=axis,
    )
    shape = [0, 0, *(int(d) for d in x1[2:])]  # 0: keep batch and channels as they come
    shape[axis : axis + 1] = [n_out, TAPS]
    shaped = gr.make_node(
        "Reshape", [taps, gr.add_initializer("shape", np.array(shape, np.int64))], "taps5"
    )
    wshape = [n_out, TAPS] + [1] * (3 - axis)
    weighted = gr.make_node(
        "Mul",
        [shaped, gr.add_initializer("weights", weight.reshape(wshape).astype(np.float32))],
        "weighted",
    )
    red_axis = np.array([axis + 1], np.int64)
    if opset >= 13:
        summed = gr.make_node(
            "ReduceSum", [weighted, gr.add_initializer("axes", red_axis)], "resized", keepdims=0
        )
    else:
        summed = gr.make_node("ReduceSum", [weighted], "resized", axes=[axis + 1], keepdims=0)
    old = node.output[0]
    for other in gr.g.node:
        for k, name in enumerate(other.input):
            if name == old:
                other.input[k] = summed
                gr.checkpoints.append(other.output[0])
    return None
