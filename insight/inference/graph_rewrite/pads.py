"""``Pad`` nodes whose pads are all zero: ONNX Runtime still copies the tensor for each."""

from __future__ import annotations

import numpy as np
import onnx

from insight.inference.graph_rewrite.graph import Graph


def pads_of(gr: Graph, node: onnx.NodeProto, one: dict[str, np.ndarray]) -> np.ndarray | None:
    for a in node.attribute:
        if a.name == "pads":
            return np.array(a.ints, np.int64)
    if len(node.input) < 2 or not node.input[1]:
        return None
    v = gr.constant(node.input[1])
    return v if v is not None else one.get(node.input[1])


def zero_pad_candidates(gr: Graph, dependent: set[str]) -> list[onnx.NodeProto]:
    return [n for n in gr.g.node if n.op_type == "Pad" and n.input[0] in dependent]


def needed_tensors(gr: Graph, nodes: list[onnx.NodeProto]) -> list[str]:
    return [n.input[1] for n in nodes if len(n.input) > 1 and gr.constant(n.input[1]) is None]


def drop_zero_pads(
    gr: Graph, nodes: list[onnx.NodeProto], one: dict[str, np.ndarray], two: dict[str, np.ndarray]
) -> int:
    """Bypass every Pad of ``nodes`` that pads nothing at both batch sizes; returns how many."""
    dropped = 0
    for node in nodes:
        p1, p2 = pads_of(gr, node, one), pads_of(gr, node, two)
        if p1 is None or p2 is None or np.any(p1 != 0) or np.any(p2 != 0):
            continue
        old, new = node.output[0], node.input[0]
        if old in gr.outputs:
            continue
        for other in gr.g.node:
            for k, name in enumerate(other.input):
                if name == old:
                    other.input[k] = new
                    gr.checkpoints.append(other.output[0])
        dropped += 1
    return dropped
