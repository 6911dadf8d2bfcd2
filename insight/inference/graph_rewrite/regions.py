"""Chains of pure data movement (reshape, transpose, slice, concat, zero pad) as one ``Gather``.

A Swin layer of a legacy export moves its tokens around with a dozen such ops each way: the
view to a grid, a zero ``Pad``, ``torch.roll`` as ``Slice`` + ``Concat`` per axis, the window
partition's ``Reshape``/``Transpose``/``Reshape``, and back after attention; patch merging is
four strided ``Slice`` and a ``Concat``. Each op copies the whole activation. Whatever the ops,
a region that only moves data from one tensor ``X`` maps every element of its output to one
element of one sample of ``X``: the map is read off ONNX Runtime by running the region on
``arange`` and becomes a single ``Gather`` of rows (tokens) of ``X``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx

from insight.inference.graph_rewrite.graph import Graph

log = logging.getLogger(__name__)

RunSub = Callable[
    [list[onnx.NodeProto], str, np.ndarray, dict[str, np.ndarray], list[str]], list[np.ndarray]
]

# op -> indexes of its inputs that carry data (the others are shapes, bounds, axes).
MOVEMENT: dict[str, tuple[int, ...] | None] = {
    "Reshape": (0,),
    "Transpose": (0,),
    "Slice": (0,),
    "Split": (0,),
    "Pad": (0,),
    "Squeeze": (0,),
    "Unsqueeze": (0,),
    "Identity": (0,),
    "Flatten": (0,),
    "Concat": None,  # every input
}
# Ops that copy their input (a Reshape or Squeeze only relabels it).
COPYING = frozenset({"Transpose", "Slice", "Split", "Pad", "Concat"})


@dataclass
class Region:
    source: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)  # read by nodes outside the region
    shapes: list[onnx.NodeProto] = field(default_factory=list)  # Shape nodes of region tensors

    @property
    def copies(self) -> int:
        return sum(n.op_type in COPYING for n in self.nodes)

    def side_inputs(self) -> list[str]:
        made = {o for n in self.nodes for o in n.output} | {self.source}
        return [i for n in self.nodes for i in n.input if i and i not in made]


def _data_inputs(node: onnx.NodeProto) -> list[str]:
    idx = MOVEMENT[node.op_type]
    if idx is None:
        return [i for i in node.input if i]
    return [node.input[i] for i in idx if i < len(node.input) and node.input[i]]


def find_regions(gr: Graph, dependent: set[str]) -> list[Region]:
    """Maximal movement regions that start at a data tensor made by a non-movement op and
    copy it at least twice (a lone ``Transpose`` is left for ORT to fuse into a MatMul)."""
    regions = []
    for node in gr.g.node:
        for src in node.output:
            if src not in dependent or node.op_type in MOVEMENT:
                continue
            region = _grow(gr, src, dependent)
            if region is not None and region.copies >= 2:
                regions.append(region)
    return regions


def _grow(gr: Graph, src: str, dependent: set[str]) -> Region | None:
    region = Region(src)
    inside: set[str] = {src}
    frontier = [src]
    members: set[int] = set()
    while frontier:
        t = frontier.pop()
        for c in gr.consumers.get(t, []):
            if id(c) in members or c.op_type not in MOVEMENT:
                continue
            if c.op_type == "Pad" and len(c.input) > 2 and c.input[2]:
                pad_value = gr.constant(c.input[2])
                if pad_value is None or np.any(pad_value != 0):
                    continue
            if c.op_type == "Pad" and any(
                a.name == "mode" and a.s != b"constant" for a in c.attribute
            ):
                continue
            if not all(i in inside for i in _data_inputs(c)):
                continue
            if any(i in dependent and i not in inside for i in c.input if i):
                continue  # a shape or bound computed from data: not a fixed movement
            members.add(id(c))
            region.nodes.append(c)
            for o in c.output:
                inside.add(o)
                frontier.append(o)
    if not region.nodes:
        return None
    order = {id(n): i for i, n in enumerate(gr.g.node)}
    region.nodes.sort(key=lambda n: order[id(n)])
    for n in region.nodes:
        for o in n.output:
            readers = gr.consumers.get(o, [])
            outside = [r for r in readers if id(r) not in members]
            region.shapes += [r for r in outside if r.op_type == "Shape"]
            if any(r.op_type != "Shape" for r in outside) or o in gr.outputs:
                region.outputs.append(o)
    return region if region.outputs else None


def row_map(perm: np.ndarray, row: int) -> np.ndarray | None:
    """Source row of each output row when ``perm`` (flat element indexes, -1 = zero) moves
    whole rows of ``row`` elements; None when it does not."""
    if perm.size % row:
        return None
    p = perm.reshape(-1, row)
    first = p[:, 0]
    pad = first < 0
    if np.any(p[pad] >= 0):
        return None
    real = p[~pad]
    if np.any(real[:, 0] % row) or np.any(real != real[:, :1] + np.arange(row)):
        return None
    return np.where(pad, -1, first // row)


def needed_tensors(gr: Graph, regions: list[Region]) -> list[str]:
    """What the rewrite must know per batch size: sources, outputs, shape-read tensors and
    every side input that is not a constant."""
    names: list[str] = []
    for r in regions:
        names.append(r.source)
        names += r.outputs
        names += [s.input[0] for s in r.shapes]
        names += [i for i in r.side_inputs() if gr.constant(i) is None]
    return names


def rewrite_region(
    gr: Graph,
    r: Region,
    one: dict[str, np.ndarray],
    two: dict[str, np.ndarray],
    run: RunSub,
) -> str | None:
    """Replace ``r`` by gathers from its source; None when done, else why not."""
    if any(o in gr.outputs for o in r.outputs) or any(s.attribute for s in r.shapes):
        return "region ends in a graph output or a sliced Shape"
    x1, x2 = one[r.source].shape, two[r.source].shape
    if x2[0] != 2 * x1[0] or x2[1:] != x1[1:]:
        return f"source {r.source} is not batch-major ({x1} / {x2})"
    consts: dict[str, np.ndarray] = {}
    for i in r.side_inputs():
        v = gr.constant(i)
        consts[i] = one[i] if v is None else v
    probe = (np.arange(int(np.prod(x1)), dtype=np.float64) + 1).reshape(x1)
    if probe.size >= 2**24:
        return "source too large to index exactly in float32"
    outs = run(r.nodes, r.source, probe.astype(np.float32), consts, r.outputs)
    shapes_read = {s.input[0] for s in r.shapes}
    for t in shapes_read:
        s1, s2 = one[t].shape, two[t].shape
        if s2[0] != 2 * s1[0] or s2[1:] != s1[1:]:
            return f"tensor {t} read by Shape is not batch-major ({s1} / {s2})"
    channels = int(x1[-1]) if len(x1) > 1 else 1
    tokens = int(np.prod(x1)) // channels
    flat = gr.make_node(
        "Reshape",
        [r.source, gr.add_initializer("shape", np.array([-1, tokens, channels], np.int64))],
        "tokens",
    )
    padded: str | None = None
    replaced: dict[str, str] = {}
    for name, got in zip(r.outputs, outs, strict=True):
        y1, y2 = one[name].shape, two[name].shape
        if y2[0] != 2 * y1[0] or y2[1:] != y1[1:] or got.shape != y1:
            return f"output {name} is not batch-major ({y1} / {y2})"
        perm = np.rint(got.reshape(-1)).astype(np.int64) - 1
        rows = row_map(perm, channels)
        if rows is None:
            return f"output {name} does not move whole rows of {channels}"
        src = flat
        if rows.size == tokens and np.array_equal(rows, np.arange(tokens)):
            shape = np.array([-1, *y1[1:]], np.int64)
            replaced[name] = gr.make_node(
                "Reshape", [flat, gr.add_initializer("shape", shape)], "out"
            )
            continue
        if np.any(rows < 0):
            if padded is None:
                pads = np.array([0, 0, 0, 0, 1, 0], np.int64)
                padded = gr.make_node("Pad", [flat, gr.add_initializer("pads", pads)], "zero_row")
            src, rows = padded, np.where(rows < 0, tokens, rows)
        idx = gr.add_initializer("order", rows.astype(np.int64))
        gathered = gr.make_node("Gather", [src, idx], "gather", axis=1)
        shape = np.array([-1, *y1[1:]], np.int64)
        replaced[name] = gr.make_node(
            "Reshape", [gathered, gr.add_initializer("shape", shape)], "out"
        )
    for node in r.shapes:
        t = node.input[0]
        dims = np.array(one[t].shape, np.int64)
        batch = gr.make_node(
            "Slice",
            [
                gr.make_node("Shape", [flat], "shape"),
                gr.add_initializer("start", np.array([0], np.int64)),
                gr.add_initializer("end", np.array([1], np.int64)),
            ],
            "batch",
        )
        lead = gr.make_node("Mul", [batch, gr.add_initializer("dim0", dims[:1])], "lead")
        rest = gr.add_initializer("rest", dims[1:])
        node.op_type = "Concat"
        del node.input[:]
        node.input.extend([lead, rest])
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("axis", 0))
    for old, new in replaced.items():
        for node in gr.g.node:
            if any(id(node) == id(m) for m in r.nodes):
                continue
            for k, name in enumerate(node.input):
                if name == old:
                    node.input[k] = new
                    gr.checkpoints.append(node.output[0])
    return None
