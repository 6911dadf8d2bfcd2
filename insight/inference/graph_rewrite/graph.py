"""Small helpers over an ONNX ``GraphProto``: who makes and who reads a tensor, fresh names,
dropping nodes nothing reads any more."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Graph:
    """Indexes of one graph; rebuild (``Graph(g)``) after editing its nodes."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.g = graph
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in graph.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.initializers = {t.name: t for t in graph.initializer}
        self.outputs = {o.name for o in graph.output}
        self.checkpoints: list[str] = []  # outputs of nodes that now read a rewritten tensor
        self._n = 0

    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is an initializer or a ``Constant`` node's output."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def fresh(self, hint: str) -> str:
        self._n += 1
        return f"insight_rw/{hint}_{self._n}"

    def add_initializer(self, hint: str, value: np.ndarray) -> str:
        name = self.fresh(hint)
        self.g.initializer.append(numpy_helper.from_array(value, name))
        return name

    def make_node(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.g.node.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def topological_sort(graph: onnx.GraphProto) -> None:
    """Nodes in an order where each tensor is made before it is read (ONNX requires it)."""
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if all(i in known for i in node.input):
                ordered.append(node)
                known.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input at {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def prune(graph: onnx.GraphProto) -> int:
    """Drop nodes and initializers that no graph output depends on; returns nodes dropped."""
    needed = {o.name for o in graph.output}
    keep: list[onnx.NodeProto] = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    dropped = len(graph.node) - len(keep)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.value_info[:]  # shape hints of removed tensors would be stale
    return dropped
