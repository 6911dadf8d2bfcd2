"""Is a rewritten graph the same function as the original? Checked on fixed inputs."""

from __future__ import annotations

import numpy as np
import onnx

from insight.inference.graph_rewrite.probe import session

MAX_ABS_DIFF = 1e-5


def max_abs_diff(
    original: onnx.ModelProto, rewritten: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]
) -> float:
    """Largest difference of any output over ``feeds``, both graphs optimised as at run time."""
    a, b = session(original, optimize=True), session(rewritten, optimize=True)
    worst = 0.0
    for feed in feeds:
        for x, y in zip(a.run(None, feed), b.run(None, feed), strict=True):
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape or not np.all(np.isfinite(y)):
                return float("inf")
            worst = max(worst, float(np.max(np.abs(x.astype(np.float64) - y))))
    return worst


def refusal(
    original: onnx.ModelProto, rewritten: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]
) -> str | None:
    """Why ``rewritten`` must not replace ``original``, or None when it may."""
    try:
        diff = max_abs_diff(original, rewritten, feeds)
    except Exception as exc:  # a broken rewrite may not even load
        return f"rewritten graph does not run: {exc}"
    if not diff <= MAX_ABS_DIFF:
        return (
            f"rewritten graph differs from the original (max abs diff {diff:.3g} > {MAX_ABS_DIFF})"
        )
    return None
