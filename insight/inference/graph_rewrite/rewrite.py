"""The rewrite pass: find the patterns, read their numbers at batch 1 and 2, replace them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto

from insight.inference.graph_rewrite import fold, layernorm, pads, regions, resize
from insight.inference.graph_rewrite.graph import Graph, prune, topological_sort
from insight.inference.graph_rewrite.probe import data_dependent, elem_types, record, run_subgraph

log = logging.getLogger(__name__)

# Bumped whenever the rewritten graphs change (cached rewrites of older versions are redone).
REWRITER_VERSION = 3


@dataclass
class RewriteReport:
    regions: int = 0
    resizes: int = 0
    zero_pads: int = 0
    folded: int = 0
    layer_norms: int = 0
    checkpoints: list[str] = field(default_factory=list)
    nodes_before: int = 0
    nodes_after: int = 0
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "checkpoints"}


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def rewrite_graph(
    model: onnx.ModelProto,
    feed_one: dict[str, np.ndarray],
    feed_two: dict[str, np.ndarray],
    feed_three: dict[str, np.ndarray],
) -> tuple[onnx.ModelProto, RewriteReport]:
    """A rewritten copy of ``model``; the feeds are inputs of batch 1, 2 and 3."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    report = RewriteReport(nodes_before=len(g.node))
    dependent = data_dependent(g)
    gr = Graph(g)
    found = regions.find_regions(gr, dependent)
    cubic = resize.cubic_resizes(gr, dependent)
    in_region = {id(n) for r in found for n in r.nodes}
    pad_nodes = [n for n in pads.zero_pad_candidates(gr, dependent) if id(n) not in in_region]
    names = [
        *regions.needed_tensors(gr, found),
        *resize.needed_tensors(cubic),
        *pads.needed_tensors(gr, pad_nodes),
    ]
    types = elem_types(model)
    one = record(model, names, types, feed_one)
    two = record(model, names, types, feed_two)
    opset, ir = _opset(model), int(model.ir_version)

    def run(nodes: list[onnx.NodeProto], x: str, v: np.ndarray, c: dict, outs: list[str]) -> list:
        return run_subgraph(nodes, x, v, c, outs, types, list(model.opset_import), ir)

    for r in found:
        why = regions.rewrite_region(gr, r, one, two, run)
        if why is None:
            report.regions += 1
        else:
            report.skipped.append(why)
    for node in cubic:
        why = resize.rewrite_resize(gr, node, one, two, opset, ir)
        if why is None:
            report.resizes += 1
        else:
            report.skipped.append(why)
    report.zero_pads = pads.drop_zero_pads(gr, pad_nodes, one, two)
    topological_sort(g)
    prune(g)
    made = {o for n in g.node for o in n.output}
    report.checkpoints = [
        c for c in dict.fromkeys(gr.checkpoints) if c in made and types.get(c) == TensorProto.FLOAT
    ]
    gr = Graph(g)
    shaped = fold.shape_tensors(gr, data_dependent(g))
    types = elem_types(out)
    runs = [record(out, shaped, types, f) for f in (feed_one, feed_two, feed_three)]
    report.folded = fold.fold(gr, shaped, runs)
    prune(g)
    out, report.layer_norms, norms, why = layernorm.fuse_checked(out, feed_one)
    g = out.graph
    if why:
        report.skipped.append(why)
    made = {o for n in g.node for o in n.output}  # a fused norm's inner tensors are gone
    report.checkpoints = [c for c in [*report.checkpoints, *norms] if c in made]
    report.nodes_after = len(g.node)
    for why in report.skipped:
        log.info("graph_rewrite_skipped reason=%s", why)
    return out, report
