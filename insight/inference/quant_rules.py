"""Which nodes dynamic int8 leaves in fp32 (measured, BENCHMARKS.md "Session 6").

A ``Conv`` whose dot products are short (input channels per group × kernel area below
``MIN_CONV_K``) runs slower as ``ConvInteger`` than in fp32: HTSAT's patch embedding (1 input
channel, 4×4 kernel, K = 16) took 1.07 ms as ConvInteger against 0.13 ms in fp32 for one 10 s
window on one EPYC thread, and fp32 there is also closer to the fp32 model.
"""

from __future__ import annotations

import onnx

MIN_CONV_K = 32


def short_convs(model: onnx.ModelProto) -> list[str]:
    """Names of the ``Conv`` nodes with a constant weight whose K is below ``MIN_CONV_K``;
    unnamed ones get a name here (the quantizer excludes nodes by name)."""
    weights = {t.name: t for t in model.graph.initializer}
    names: list[str] = []
    for i, node in enumerate(model.graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
            continue
        dims = list(weights[node.input[1]].dims)  # [out, in / group, *kernel]
        if len(dims) < 3:
            continue
        k = 1
        for d in dims[1:]:
            k *= int(d)
        if k < MIN_CONV_K:
            if not node.name:
                node.name = f"insight_short_conv_{i}"
            names.append(node.name)
    return names
