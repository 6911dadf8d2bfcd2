"""Is a rewritten graph the same function as the original? Checked on fixed inputs.

The final embedding of a random-weight model barely moves when two early tokens trade places,
so the check also compares, on the first input, every tensor right after a rewrite (the
outputs of the nodes that now read a rewritten tensor) against the original's.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from insight.inference.graph_rewrite.probe import session

MAX_ABS_DIFF = 1e-5  # of the outputs; checkpoints: relative to their largest value


def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    for n in names:
        if n not in have:
            out.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    return out


def _diff(x: np.ndarray, y: np.ndarray, scale: bool) -> float:
    if x.shape != y.shape or not np.all(np.isfinite(y)):
        return float("inf")
    d = float(np.max(np.abs(x.astype(np.float64) - y), initial=0.0))
    return d / max(1.0, float(np.max(np.abs(x), initial=0.0))) if scale else d


def max_abs_diff(
    original: onnx.ModelProto,
    rewritten: onnx.ModelProto,
    feeds: list[dict[str, np.ndarray]],
    checkpoints: list[str] | None = None,
) -> float:
    """Largest difference over ``feeds`` (outputs) and ``checkpoints`` (first feed, scaled)."""
    worst = 0.0
    names = [o.name for o in original.graph.output]
    if checkpoints:
        a = session(_with_outputs(original, checkpoints), optimize=True)
        b = session(_with_outputs(rewritten, checkpoints), optimize=True)
        want = dict(zip([o.name for o in a.get_outputs()], a.run(None, feeds[0]), strict=True))
        got = dict(zip([o.name for o in b.get_outputs()], b.run(None, feeds[0]), strict=True))
        for n in checkpoints:
            worst = max(worst, _diff(np.asarray(want[n]), np.asarray(got[n]), scale=True))
    a, b = session(original, optimize=True), session(rewritten, optimize=True)
    for feed in feeds:
        for x, y in zip(a.run(names, feed), b.run(names, feed), strict=True):
            worst = max(worst, _diff(np.asarray(x), np.asarray(y), scale=False))
    return worst


def refusal(
    original: onnx.ModelProto,
    rewritten: onnx.ModelProto,
    feeds: list[dict[str, np.ndarray]],
    checkpoints: list[str] | None = None,
) -> str | None:
    """Why ``rewritten`` must not replace ``original``, or None when it may."""
    try:
        diff = max_abs_diff(original, rewritten, feeds, checkpoints)
    except Exception as exc:  # a broken rewrite may not even load
        return f"rewritten graph does not run: {exc}"
    if not diff <= MAX_ABS_DIFF:
        return f"rewritten graph differs from the original (max diff {diff:.3g} > {MAX_ABS_DIFF})"
    return None
