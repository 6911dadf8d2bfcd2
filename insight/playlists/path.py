"""Song path A → B: tracks near evenly spaced points on the great circle from A to B.

Each inner step has a target ``slerp(a, b, t)``. Candidates come from the store (nearest to
every target, both collections). Progress is a candidate's projection on the chord,
``(c - a)·(b - a) / |b - a|²``; the steps are filled by the assignment whose progress strictly
increases from step to step (the path moves forward, never back, so no track repeats) and whose
summed closeness to the targets is largest.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from insight.errors import BadRequest, NotFound
from insight.playlists.schemas import PathRequest
from insight.search.filter import store_where
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, VectorStore
from insight.taste.rank import artist_key, with_exclusions
from insight.taste.tracks import TrackView, track_views
from insight.vectors import unit_rows

PER_TARGET = 16


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
    return unit_rows(pts)


def assign(prog: np.ndarray, sims: np.ndarray) -> list[int]:
    """One candidate per step, progress strictly increasing, most total closeness to the
    targets (dynamic programming over candidates sorted by progress: O(steps × candidates)).
    ``sims`` is [candidates, steps]; fewer candidates than steps gives fewer steps."""
    c, m = sims.shape
    m = min(m, c)
    if m == 0:
        return []
    order = np.argsort(prog, kind="stable")
    s = sims[order].astype(np.float64)
    idx = np.arange(c)
    dp = np.full((m, c), -np.inf)
    back = np.zeros((m, c), dtype=np.int64)
    dp[0] = s[:, 0]
    for i in range(1, m):
        best = np.maximum.accumulate(dp[i - 1])
        where = np.maximum.accumulate(np.where(dp[i - 1] >= best, idx, 0))
        dp[i, 1:] = s[1:, i] + best[:-1]
        back[i, 1:] = where[:-1]
    j = int(np.argmax(dp[m - 1]))
    picks = [j]
    for i in range(m - 1, 0, -1):
        j = int(back[i, j])
        picks.append(j)
    return [int(order[k]) for k in reversed(picks)]


def plan(
    a: TrackView,
    b: TrackView,
    cands: list[TrackView],
    steps: int,
    max_per_artist: int | None,
) -> list[Step]:
    """Choose the inner steps among ``cands`` (pure: no I/O). Over an artist cap, the artist's
    weakest picks leave the pool and the assignment is redone (a few rounds at most)."""
    d = (b.vector - a.vector).astype(np.float64)
    dd = float(d @ d) or 1.0
    first, last = Step(a, 0.0, 1.0, 0.0), Step(b, 1.0, 1.0, 0.0)
    if steps <= 2 or not cands:
        return [first, last]
    targets = slerp(a.vector, b.vector, np.linspace(0.0, 1.0, steps)[1:-1])
    m = np.stack([c.vector for c in cands]).astype(np.float32)
    prog = (m.astype(np.float64) - a.vector) @ d / dd
    dist = np.linalg.norm(m - a.vector - np.outer(prog, d), axis=1)
    sims = m @ targets.T
    artists = [artist_key(c) for c in cands]
    ends = [k for k in (artist_key(a), artist_key(b)) if k is not None]
    pool = np.flatnonzero((prog > 0.0) & (prog < 1.0))
    picks: list[int] = []
    for _ in range(8):
        picks = [int(pool[k]) for k in assign(prog[pool], sims[pool])]
        over = _over_cap(picks, artists, ends, sims, max_per_artist)
        if not over:
            break
        pool = np.setdiff1d(pool, over)
    drop = set(_over_cap(picks, artists, ends, sims, max_per_artist))
    inner = [
        Step(cands[j], float(prog[j]), float(sims[j, i]), float(dist[j]))
        for i, j in enumerate(picks)
        if j not in drop
    ]
    return [first, *inner, last]


def _over_cap(
    picks: list[int],
    artists: list[str | None],
    ends: list[str],
    sims: np.ndarray,
    cap: int | None,
) -> list[int]:
    """The picks beyond an artist's cap (its least close ones), counting A's and B's artist."""
    if cap is None:
        return []
    by: dict[str, list[int]] = {}
    for step, j in enumerate(picks):
        if (k := artists[j]) is not None:
            by.setdefault(k, []).append(step)
    out = []
    for k, steps in by.items():
        room = max(cap - ends.count(k), 0)
        if len(steps) > room:
            steps.sort(key=lambda st: -float(sims[picks[st], st]))
            out += [picks[st] for st in steps[room:]]
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
    flt = store_where(with_exclusions(req.filter, {req.start_id, req.end_id}))
    per = PER_TARGET + (4 if req.max_per_artist else 0)
    jobs = [store.search(c, t, per, flt) for t in inner for c in (TRACKS_AUDIO, TRACKS_TEXT)]
    hits = await asyncio.gather(*jobs)
    ids = list(dict.fromkeys(h.key for batch in hits for h in batch))
    views = await track_views(store, ids)
    cands = [views[i] for i in ids if i in views]
    return plan(a, b, cands, req.steps, req.max_per_artist)
