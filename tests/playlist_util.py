"""Helpers for the playlist/map tests: ARI, a gradient library between two clusters."""

from __future__ import annotations

from typing import Any

import numpy as np
from synthetic_library import Library, unit

from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point


def adjusted_rand_index(a: list[Any], b: list[Any]) -> float:
    """Hubert & Arabie's ARI from the contingency table (numpy only)."""
    _, ia = np.unique(np.asarray(a, dtype=str), return_inverse=True)
    _, ib = np.unique(np.asarray(b, dtype=str), return_inverse=True)
    table = np.zeros((ia.max() + 1, ib.max() + 1), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)

    def pairs(x: np.ndarray) -> float:
        return float((x * (x - 1) / 2).sum())

    n = len(a)
    index = pairs(table)
    rows, cols = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2)
    top = (rows + cols) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def gradient_tracks(lib: Library, count: int, seed: int = 3) -> dict[str, tuple[float, np.ndarray]]:
    """Tracks evenly spread on the way from cluster A's centre to B's: id → (fraction, vector)."""
    rng = np.random.default_rng(seed)
    a, b = lib.centres["A"], lib.centres["B"]
    out = {}
    for i in range(count):
        f = (i + 0.5) / count
        noise = unit(rng.standard_normal(lib.dim).astype(np.float32))
        out[f"G{i:02d}"] = (f, unit((1 - f) * a + f * b + 0.05 * noise))
    return out


async def store_points(app: Any, points: dict[str, np.ndarray], payload: dict[str, Any]) -> None:
    made_by = {"model_id": app.require_pool().model.model_id}
    pts = [
        Point(t, v, {"track_id": t, "name": f"Song {t}", **payload, **made_by})
        for t, v in points.items()
    ]
    await app.require_store().upsert(TRACKS_TEXT, pts)
    await app.require_store().upsert(TRACKS_AUDIO, pts)
