"""Song path A → B: tracks near evenly spaced points on the great circle from A to B.

Each inner step has a target ``slerp(a, b, t)``. Candidates come from the store (nearest to
every target, both collections); the steps are then filled in order, each with the candidate
closest to its target whose progress along A→B lies past the previous step's and not past the
next target (so the path moves forward, never back, and leaves room for the steps after it).
Progress is the projection on the chord: ``(c - a)·(b - a) / |b - a|²``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from insight.errors import BadRequest, NotFound
from insight.playlists.schemas import PathRequest
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, VectorStore
from insight.taste.rank import artist_key, with_exclusions
from insight.taste.tracks import TrackView, track_views

PER_TARGET = 12


@dataclass(slots=True)
class Step:
    view: TrackView
    progress: float
    target_similarity: float
    line_distance: float


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points at fractions ``t`` of the arc from unit ``a`` to unit ``b`` (rows)."""
    omega = float(np.arccos(np.clip(a @ b, -1.0, 1.0)))
    if np.sin(omega) < 1e-6:
        pts = np.outer(1 - t, a) + np.outer(t, b)
    else:
        pts = (np.outer(np.sin((1 - t) * omega), a) + np.outer(np.sin(t * omega), b)) / np.sin(
            omega
        )
    n = np.linalg.norm(pts, axis=1, keepdims=True)
    return (pts / np.where(n > 0, n, 1.0)).astype(np.float32)


def plan(
    a: TrackView,
    b: TrackView,
    cands: list[TrackView],
    steps: int,
    max_per_artist: int | None,
) -> list[Step]:
    """Choose the inner steps among ``cands`` (pure: no I/O)."""
    ts = np.linspace(0.0, 1.0, steps)
    d = (b.vector - a.vector).astype(np.float64)
    dd = float(d @ d) or 1.0

    def measure(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prog = (m.astype(np.float64) - a.vector) @ d / dd
        off = m - a.vector - np.outer(prog, d)
        return prog, np.linalg.norm(off, axis=1)

    first = Step(a, 0.0, 1.0, 0.0)
    last = Step(b, 1.0, 1.0, 0.0)
    if steps <= 2 or not cands:
        return [first, last] if steps >= 2 else [first]
    targets = slerp(a.vector, b.vector, ts[1:-1])
    m = np.stack([c.vector for c in cands]).astype(np.float32)
    prog, dist = measure(m)
    sims = m @ targets.T  # [cands, inner]
    counts: dict[str, int] = {}
    for v in (a, b):
        if (k := artist_key(v)) is not None:
            counts[k] = counts.get(k, 0) + 1
    used = np.zeros(len(cands), dtype=bool)
    out = [first]
    prev = 0.0
    for i in range(targets.shape[0]):
        ok = ~used & (prog > prev) & (prog < 1.0)
        if max_per_artist is not None:
            ok &= np.array(
                [(k := artist_key(c)) is None or counts.get(k, 0) < max_per_artist for c in cands]
            )
        window = ok & (prog <= ts[i + 2])  # not past the next step's target
        pool = window if window.any() else ok
        if not pool.any():
            continue
        j = int(np.argmax(np.where(pool, sims[:, i], -np.inf)))
        used[j] = True
        prev = float(prog[j])
        if (k := artist_key(cands[j])) is not None:
            counts[k] = counts.get(k, 0) + 1
        out.append(Step(cands[j], prev, float(sims[j, i]), float(dist[j])))
    out.append(last)
    return out


async def song_path(store: VectorStore, req: PathRequest) -> list[Step]:
    ends = await track_views(store, [req.start_id, req.end_id])
    missing = [t for t in (req.start_id, req.end_id) if t not in ends]
    if missing:
        raise NotFound(f"no stored embedding for {', '.join(repr(t) for t in missing)}")
    a, b = ends[req.start_id], ends[req.end_id]
    if float(a.vector @ b.vector) > 0.9999:
        raise BadRequest("start and end sound the same: there is no way to go between them")
    inner = slerp(a.vector, b.vector, np.linspace(0.0, 1.0, req.steps)[1:-1])
    flt = with_exclusions(req.filter, {req.start_id, req.end_id})
    per = PER_TARGET + (4 if req.max_per_artist else 0)
    jobs = [store.search(c, t, per, flt) for t in inner for c in (TRACKS_AUDIO, TRACKS_TEXT)]
    hits = await asyncio.gather(*jobs)
    ids = list(dict.fromkeys(h.key for batch in hits for h in batch))
    views = await track_views(store, ids)
    cands = [views[i] for i in ids if i in views]
    return plan(a, b, cands, req.steps, req.max_per_artist)
