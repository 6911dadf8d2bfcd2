"""Spelled-out layer norms (the legacy exporter's ReduceMean/Sub/Pow/.../Add chain) fused into
one ``LayerNormalization``; look-alikes that are not a norm over the last axis are left alone.
Real ONNX graphs, run by ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from insight.inference.graph_rewrite.graph import Graph, prune, topological_sort
from insight.inference.graph_rewrite.layernorm import fuse_checked, fuse_layer_norms, raise_opset
from insight.inference.graph_rewrite.probe import session

C = 24


def spelled_out(
    axis: int = -1, exponent: float = 2.0, extra_reader: bool = False
) -> onnx.ModelProto:
    """x [2, 5, C] → (x - mean) / sqrt(var + eps) * gamma + beta, as torch's opset-14 export
    writes it; ``extra_reader`` also makes the mean a graph output."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(np.array(exponent, np.float32), "two"),
        numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        numpy_helper.from_array(rng.normal(1, 0.2, C).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.normal(0, 0.2, C).astype(np.float32), "beta"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[axis]),
        helper.make_node("Sub", ["x", "mean"], ["d"]),
        helper.make_node("Pow", ["d", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["var"], axes=[axis]),
        helper.make_node("Add", ["var", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["d", "sd"], ["n"]),
        helper.make_node("Mul", ["n", "gamma"], ["scaled"]),
        helper.make_node("Add", ["scaled", "beta"], ["y"]),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [2, 5, C])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("mean", TensorProto.FLOAT, [2, 5, 1]))
    graph = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, C])],
        outputs,
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


def fused(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    n = fuse_layer_norms(Graph(out.graph))
    if n:
        raise_opset(out)
        topological_sort(out.graph)
        prune(out.graph)
    return out, n


def test_a_spelled_out_norm_becomes_one_node_with_the_same_values() -> None:
    model = spelled_out()
    new, n = fused(model)
    assert n == 1
    assert [x.op_type for x in new.graph.node] == ["LayerNormalization", "Relu"]
    assert next(o.version for o in new.opset_import if o.domain == "") == 17
    onnx.checker.check_model(new)
    x = np.random.default_rng(0).normal(3, 2, (2, 5, C)).astype(np.float32)
    want = session(model, optimize=False).run(None, {"x": x})[0]
    got = session(new, optimize=False).run(None, {"x": x})[0]
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    g, b = (numpy_helper.to_array(t) for t in model.graph.initializer[2:])
    by_hand = np.maximum((x - mean) / np.sqrt(var + 1e-5) * g + b, 0)
    assert np.max(np.abs(got - want)) <= 1e-5
    assert np.max(np.abs(got - by_hand)) <= 1e-5


@pytest.mark.parametrize(
    "variant",
    [{"axis": 1}, {"exponent": 3.0}, {"extra_reader": True}],
    ids=["not the last axis", "not a square", "mean read elsewhere"],
)
def test_look_alikes_are_left_alone(variant: dict[str, object]) -> None:
    model = spelled_out(**variant)  # type: ignore[arg-type]
    new, n = fused(model)
    assert n == 0
    assert [x.op_type for x in new.graph.node] == [x.op_type for x in model.graph.node]
    assert next(o.version for o in new.opset_import if o.domain == "") == 14


def test_checked_fusion_hands_back_the_norm_outputs_to_compare() -> None:
    x = np.random.default_rng(1).normal(0, 3, (2, 5, C)).astype(np.float32)
    model = spelled_out()
    new, n, outs, why = fuse_checked(model, {"x": x})
    assert (n, outs, why) == (1, ["y"], None)
    assert "LayerNormalization" in [node.op_type for node in new.graph.node]
    same, n, outs, why = fuse_checked(spelled_out(axis=1), {"x": x})
    assert n == 0 and outs == [] and why is None
    assert "ReduceMean" in [node.op_type for node in same.graph.node]
