"""A RoBERTa/BERT text tower's last encoder layer on token 0 alone.

The pooler reads only token 0 of the last layer, so in that layer only the key and value
products need every token: the query product, the attention output, the residual adds, the
layer norms and the feed-forward can run on one row. Found structurally (no node names):

- the pooler's token-0 op: a ``Gather`` (axis 1, index 0) or ``Slice`` (0:1 on axis 1) of a
  data tensor ``H``, the only reader of ``H``;
- the last layer's input ``X``: the nearest ancestor of ``H`` read by three or more weight
  ``MatMul``s (query, key and value);
- the attention products: ``MatMul``s between ``X`` and ``H`` with two data inputs; what only
  reaches ``H`` through their second input (keys, values) keeps every token.

Everything else between ``X`` and ``H`` reads ``Slice(X, token 0)`` instead; reshape targets
are read off the original at two batch sizes and sequence lengths and rewritten as
``[batch, 1, …]``; a mask with a query axis is sliced on it. The caller checks the result
against the original (:mod:`.verify`) and keeps the original on any difference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper

from insight.inference.graph_rewrite.graph import Graph, prune, topological_sort
from insight.inference.graph_rewrite.probe import data_dependent, elem_types, session
from insight.inference.graph_rewrite.verify import MAX_ABS_DIFF

Feed = dict[str, np.ndarray]
# (batch, sequence) of the two probe feeds: every number distinct, none a model width.
PROBES = ((2, 5), (3, 7))


class NotApplicable(ValueError):
    """The graph is not a token-0-pooled transformer this rewrite knows."""


@dataclass
class LastTokenReport:
    sliced_nodes: int = 0
    reshapes: int = 0
    masks: int = 0
    pooler: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def text_feed(base: Feed, batch: int, seq: int, pad_id: int = 1) -> Feed:
    """``base`` (``input_ids``, ``attention_mask``) cut or padded to ``[batch, seq]``."""
    ids, mask = base["input_ids"], base["attention_mask"]
    rows = [i % len(ids) for i in range(batch)]
    ids, mask = ids[rows][:, :seq], mask[rows][:, :seq]
    if ids.shape[1] < seq:
        extra = seq - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, extra)), constant_values=pad_id)
        mask = np.pad(mask, ((0, 0), (0, extra)), constant_values=0)
    return {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}


def _const_int(g: Graph, name: str) -> list[int] | None:
    v = g.constant(name)
    return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _is_token0(g: Graph, node: onnx.NodeProto) -> bool:
    if node.op_type == "Gather":
        return _attr(node, "axis", 0) == 1 and _const_int(g, node.input[1]) == [0]
    if node.op_type == "Slice" and len(node.input) >= 4:
        starts, ends, axes = (_const_int(g, n) for n in node.input[1:4])
        steps = _const_int(g, node.input[4]) if len(node.input) > 4 and node.input[4] else [1]
        return starts == [0] and ends == [1] and axes == [1] and steps == [1]
    return False


def _find(g: Graph, dep: set[str]) -> tuple[onnx.NodeProto, str, str]:
    """The pooler's token-0 node, ``H`` and ``X``."""
    pools = [n for n in g.g.node if n.input and n.input[0] in dep and _is_token0(g, n)]
    if len(pools) != 1:
        raise NotApplicable(f"{len(pools)} token-0 gathers of hidden states (need exactly 1)")
    pool, h = pools[0], pools[0].input[0]
    if len(g.consumers[h]) != 1 or h in g.outputs:
        raise NotApplicable("the last hidden state has readers other than the pooler")
    seen, frontier = {h}, [h]
    while frontier:  # breadth first: the nearest ancestor read by >= 3 weight products
        nxt: list[str] = []
        for t in frontier:
            weights = [
                c
                for c in g.consumers[t]
                if c.op_type == "MatMul" and c.input[0] == t and c.input[1] not in dep
            ]
            if t != h and len(weights) >= 3:
                return pool, h, t
            node = g.producer.get(t)
            for i in node.input if node is not None else []:
                if i in dep and i not in seen:
                    seen.add(i)
                    nxt.append(i)
        frontier = nxt
    raise NotApplicable("no layer input read by query, key and value products")


def _reshape_target(a: tuple[int, ...], b: tuple[int, ...]) -> list[int] | None:
    """A target valid on the one-token tensor, from the original's output shapes at the two
    probes: a fixed width stays, the sequence becomes 1, the batch -1."""
    (ba, sa), (bb, sb) = PROBES
    out: list[int] = []
    for x, y in zip(a, b, strict=True):
        if x == y:
            out.append(int(x))
        elif (x, y) == (sa, sb):
            out.append(1)
        elif (x, y) in ((ba, bb), (ba * sa, bb * sb)):
            out.append(-1)
        else:
            return None
    return out if out.count(-1) == 1 else None


def _probe(
    model: onnx.ModelProto, names: list[str], types: dict[str, int], feeds: list[Feed]
) -> list[dict[str, np.ndarray]]:
    """Values of ``names`` at each feed: one session, no copy of the (500 MB) model."""
    keep = len(model.graph.output)
    have = {o.name for o in model.graph.output}
    wanted = [n for n in dict.fromkeys(names) if n not in have and n in types]
    model.graph.output.extend(helper.make_tensor_value_info(n, types[n], None) for n in wanted)
    try:
        sess = session(model)
    finally:
        del model.graph.output[keep:]
    outs = [o.name for o in sess.get_outputs()]
    return [dict(zip(outs, map(np.asarray, sess.run(None, f)), strict=True)) for f in feeds]


def _outputs(model: onnx.ModelProto, feeds: list[Feed]) -> list[list[np.ndarray]]:
    sess = session(model, optimize=True)
    return [[np.asarray(v) for v in sess.run(None, f)] for f in feeds]


def last_token_graph(model: onnx.ModelProto, base: Feed) -> tuple[onnx.ModelProto, LastTokenReport]:
    """A copy of ``model`` with its last layer on token 0; raises :class:`NotApplicable`."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    dep = data_dependent(g)
    gr = Graph(g)
    pool, h, x = _find(gr, dep)
    nodes = list(g.node)
    after_x: set[str] = {x}  # data tensors computed from X
    for n in nodes:
        if n.op_type not in ("Shape", "Size") and any(i in after_x for i in n.input):
            after_x.update(o for o in n.output if o)
    attention = {
        id(n)
        for n in nodes
        if n.op_type == "MatMul" and n.input[0] in after_x and n.input[1] in after_x
    }
    if len(attention) < 2:
        raise NotApplicable("no attention products between the layer input and the pooler")
    query: set[str] = {h}  # tensors that reach H other than as keys or values
    for n in reversed(nodes):
        if any(o in query for o in n.output):
            query.update(n.input[:1] if id(n) in attention else [i for i in n.input if i])
    sliced = [
        n
        for n in nodes
        if n.op_type not in ("Shape", "Size")
        and any(o in query and o in after_x and o != x for o in n.output)
    ]
    rows = {o for n in sliced for o in n.output}
    ids = {id(n) for n in sliced}
    for t in rows - {h}:
        for c in gr.consumers[t]:
            if id(c) not in ids and c.op_type not in ("Shape", "Size"):
                raise NotApplicable(f"{t} is read outside the last layer's query side")
    report = LastTokenReport(sliced_nodes=len(sliced), pooler=pool.output[0])
    types = elem_types(model)
    reshapes = [n for n in sliced if n.op_type == "Reshape"]
    external = {
        i
        for n in sliced
        for k, i in enumerate(n.input)
        if i in dep
        and i not in rows
        and i != x
        and not (id(n) in attention and k == 1)
        and not (n.op_type == "Reshape" and k == 1)
    }
    names = [*(n.output[0] for n in reshapes), *external]
    probes = _probe(out, names, types, [text_feed(base, b, s) for b, s in PROBES])
    if any(t not in p for p in probes for t in names):
        raise NotApplicable("a reshape or mask could not be read off the original")
    seq = PROBES[0][1]
    x0 = gr.make_node(
        "Slice",
        [
            x,
            gr.add_initializer("zero", np.array([0], np.int64)),
            gr.add_initializer("one", np.array([1], np.int64)),
            gr.add_initializer("axis", np.array([1], np.int64)),
        ],
        "token0",
    )
    renamed: dict[str, str] = {x: x0}
    for t in sorted(external):
        shape = probes[0][t].shape
        axis = 2 if len(shape) == 4 else 1 if len(shape) == 3 else -1
        if axis < 0 or shape[axis] == 1:
            continue  # broadcast over the query axis already
        if shape[axis] != seq:
            raise NotApplicable(f"{t} of shape {shape} has no query axis to slice")
        starts, ends = np.array([0], np.int64), np.array([1], np.int64)
        renamed[t] = gr.make_node(
            "Slice",
            [
                t,
                gr.add_initializer("zero", starts),
                gr.add_initializer("one", ends),
                gr.add_initializer("axis", np.array([axis], np.int64)),
            ],
            "mask_token0",
        )
        report.masks += 1
    for n in sliced:
        for k, i in enumerate(n.input):
            if i in renamed and not (id(n) in attention and k == 1):
                n.input[k] = renamed[i]
        if n.op_type == "Reshape":
            target = _reshape_target(*(p[n.output[0]].shape for p in probes))
            if target is None:
                raise NotApplicable(f"reshape {n.name} has no one-token target")
            n.input[1] = gr.add_initializer("target", np.array(target, np.int64))
            report.reshapes += 1
    topological_sort(g)
    prune(g)
    return out, report


def checked(model: onnx.ModelProto, base: Feed) -> tuple[onnx.ModelProto | None, dict[str, Any]]:
    """The rewritten text graph if it gives the original's vectors (batch 1 and a batch of
    mixed lengths), else None; and what happened, for a report."""
    try:
        rewritten, rep = last_token_graph(model, base)
    except NotApplicable as exc:
        return None, {"text_rewritten": False, "text_refused": f"not applicable: {exc}"}
    except Exception as exc:
        return None, {"text_rewritten": False, "text_refused": f"{type(exc).__name__}: {exc}"}
    why = refusal(model, rewritten, base)
    if why is not None:
        return None, {"text_rewritten": False, "text_refused": why}
    return rewritten, {"text_rewritten": True, "text_last_token": rep.as_dict()}


def refusal(original: onnx.ModelProto, rewritten: onnx.ModelProto, base: Feed) -> str | None:
    """Why ``rewritten`` must not replace ``original`` (vectors at batch 1, a padded batch of
    mixed lengths and ``base`` itself more than 1e-5 apart, or it does not run), or None."""
    n = len(base["input_ids"])
    feeds = [text_feed(base, 1, base["input_ids"].shape[1]), text_feed(base, max(n, 3), 9), base]
    try:  # one session at a time: two 500 MB graphs' sessions at once doubled the peak RSS
        want = _outputs(original, feeds)
        got = _outputs(rewritten, feeds)
    except Exception as exc:
        return f"rewritten graph does not run: {exc}"
    diff = max(
        _diff(a, b) for fa, fb in zip(want, got, strict=True) for a, b in zip(fa, fb, strict=True)
    )
    if not diff <= MAX_ABS_DIFF:
        return f"rewritten graph differs from the original (max diff {diff:.3g} > {MAX_ABS_DIFF})"
    return None


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape or not np.all(np.isfinite(b)):
        return float("inf")
    return float(np.max(np.abs(a.astype(np.float64) - b), initial=0.0))
