"""Layer norms spelled out by the legacy exporter, made one ``LayerNormalization`` node again.

Below opset 17 torch writes ``LayerNorm`` as ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div,
Mul, Add. ONNX Runtime fuses that back, except where its transpose optimizer got there first:
in HTSAT's patch embedding it pushes the token ``Transpose`` into the pattern, the mean then
runs across the channel axis of a [1, 96, 4096] tensor (1.1-3.7 ms for one window on one EPYC
thread, against 0.25 ms for the fused node of our export) and only half of the norm fuses.
The graph's default opset is raised to 17 when a norm is fused (the ops in a CLAP graph mean
the same at 14 and 17; the rewritten graph is checked against the original anyway).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from insight.inference.graph_rewrite.graph import Graph, prune, topological_sort
from insight.inference.graph_rewrite.verify import MAX_ABS_DIFF, max_abs_diff

LAYER_NORM_OPSET = 17


def _axes(gr: Graph, node: onnx.NodeProto) -> list[int] | None:
    for a in node.attribute:
        if a.name == "axes":
            return list(a.ints)
    if len(node.input) > 1 and node.input[1]:
        v = gr.constant(node.input[1])
        return None if v is None else [int(x) for x in np.ravel(v)]
    return None


def _keepdims(node: onnx.NodeProto) -> bool:
    return all(a.i != 0 for a in node.attribute if a.name == "keepdims")


def _only(gr: Graph, tensor: str, op: str) -> onnx.NodeProto | None:
    """The single reader of ``tensor`` when it is an ``op`` and not a graph output."""
    readers = gr.consumers.get(tensor, [])
    if len(readers) != 1 or readers[0].op_type != op or tensor in gr.outputs:
        return None
    return readers[0]


def _other(node: onnx.NodeProto, tensor: str) -> str | None:
    if len(node.input) != 2 or list(node.input).count(tensor) != 1:
        return None
    return node.input[1] if node.input[0] == tensor else node.input[0]


def _scalar(gr: Graph, name: str | None) -> float | None:
    v = None if name is None else gr.constant(name)
    return None if v is None or v.size != 1 else float(v.reshape(()))


def _vector(gr: Graph, name: str | None) -> np.ndarray | None:
    """A constant that broadcasts as a per-channel vector, as 1-D float32."""
    v = None if name is None else gr.constant(name)
    if v is None or v.dtype != np.float32 or v.size < 1 or any(d != 1 for d in v.shape[:-1]):
        return None
    return v.reshape(-1)


def _match(gr: Graph, mean: onnx.NodeProto) -> tuple[str, float, str, str, onnx.NodeProto] | None:
    """(x, epsilon, gamma, beta, last node) of a spelled-out norm starting at ``mean``."""
    if _axes(gr, mean) != [-1] or not _keepdims(mean):
        return None
    x = mean.input[0]
    sub = _only(gr, mean.output[0], "Sub")
    if sub is None or list(sub.input) != [x, mean.output[0]]:
        return None
    readers = gr.consumers.get(sub.output[0], [])
    pow_ = next((n for n in readers if n.op_type == "Pow"), None)
    div = next((n for n in readers if n.op_type == "Div"), None)
    if len(readers) != 2 or pow_ is None or div is None or sub.output[0] in gr.outputs:
        return None
    if pow_.input[0] != sub.output[0] or _scalar(gr, pow_.input[1]) != 2.0:
        return None
    var = _only(gr, pow_.output[0], "ReduceMean")
    if var is None or _axes(gr, var) != [-1] or not _keepdims(var):
        return None
    add = _only(gr, var.output[0], "Add")
    eps = None if add is None else _scalar(gr, _other(add, var.output[0]))
    sqrt = None if add is None else _only(gr, add.output[0], "Sqrt")
    if eps is None or sqrt is None or list(div.input) != [sub.output[0], sqrt.output[0]]:
        return None
    if _only(gr, sqrt.output[0], "Div") is None:
        return None
    mul = _only(gr, div.output[0], "Mul")
    if mul is None:
        return None
    bias = _only(gr, mul.output[0], "Add")
    beta = None if bias is None else _other(bias, mul.output[0])
    g, b = _vector(gr, _other(mul, div.output[0])), _vector(gr, beta)
    if bias is None or g is None or b is None or g.shape != b.shape:
        return None
    return x, eps, gr.add_initializer("ln_gamma", g), gr.add_initializer("ln_beta", b), bias


def fuse_layer_norms(gr: Graph) -> int:
    """Replace every spelled-out layer norm over the last axis; returns how many. The norms'
    old nodes are left for ``prune``; their outputs become checkpoints of the check."""
    fused = 0
    for mean in [n for n in gr.g.node if n.op_type == "ReduceMean"]:
        found = _match(gr, mean)
        if found is None:
            continue
        x, eps, gamma, beta, last = found
        out = last.output[0]
        last.output[0] = gr.fresh("ln_replaced")  # the old chain now feeds nothing
        name = gr.fresh("layer_norm")
        gr.g.node.append(
            helper.make_node(
                "LayerNormalization", [x, gamma, beta], [out], name=name, axis=-1, epsilon=eps
            )
        )
        gr.checkpoints.append(out)
        fused += 1
    return fused


def raise_opset(model: onnx.ModelProto, version: int = LAYER_NORM_OPSET) -> None:
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx") and op.version < version:
            op.version = version


def fuse_checked(
    model: onnx.ModelProto, feed: dict[str, np.ndarray]
) -> tuple[onnx.ModelProto, int, list[str], str | None]:
    """``model`` with its norms fused, how many, the fused nodes' outputs and None; or
    ``model`` itself, 0, [] and why, when the fused graph does not run or differs on ``feed``
    (so a graph this step cannot handle still gets the other rewrites)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    gr = Graph(out.graph)
    fused = fuse_layer_norms(gr)
    if not fused:
        return model, 0, [], None
    raise_opset(out)
    topological_sort(out.graph)
    prune(out.graph)
    try:
        diff = max_abs_diff(model, out, [feed], gr.checkpoints)
    except Exception as exc:  # e.g. a scale ONNX Runtime's kernel does not take
        return model, 0, [], f"layer-norm fusion does not run: {type(exc).__name__}: {exc}"
    if not diff <= MAX_ABS_DIFF:
        return model, 0, [], f"layer-norm fusion differs (max diff {diff:.3g})"
    return out, fused, list(gr.checkpoints), None
