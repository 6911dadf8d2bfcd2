"""Shape arithmetic that never changes, folded into constants.

A legacy export keeps every ``x.shape`` of the Python code as ``Shape`` → ``Gather`` →
``Unsqueeze`` → ``Concat`` chains, and the shifted-window attention mask as ``Range`` /
``GreaterOrEqual`` / window-partition ops computed on every run. The input's only free
dimension is the batch: a tensor computed from shapes alone that has the same value at batch
1, 2 and 3 is taken as a constant (the rewritten graph is then checked at other batch sizes).
"""

from __future__ import annotations

import numpy as np

from insight.inference.graph_rewrite.graph import Graph


def shape_tensors(gr: Graph, dependent: set[str]) -> list[str]:
    """Tensors computed from shapes alone that are not constants yet."""
    return [
        o
        for node in gr.g.node
        if node.op_type != "Constant"
        for o in node.output
        if o and o not in dependent
    ]


def fold(gr: Graph, names: list[str], values: list[dict[str, np.ndarray]]) -> int:
    """Readers of each of ``names`` whose value is the same in every run of ``values`` read an
    initializer instead; returns how many were folded."""
    folded: dict[str, str] = {}
    for name in names:
        vals = [v.get(name) for v in values]
        first = vals[0]
        if first is None or any(
            v is None
            or v.shape != first.shape
            or v.dtype != first.dtype
            or not np.array_equal(v, first)
            for v in vals
        ):
            continue
        folded[name] = gr.add_initializer("folded", first)
    for node in gr.g.node:
        for k, i in enumerate(node.input):
            if i in folded:
                node.input[k] = folded[i]
    return len(folded)
