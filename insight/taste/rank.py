"""Candidate recall and ranking shared by recommendations, similar tracks and radio.

``recall`` asks the store for the nearest tracks to a few query vectors (the profile, plus its
anchors: liked tracks / seeds) in both collections. ``rank`` scores every candidate against
the query and the anchors, pushes it away from a distaste direction, and picks the result with
MMR (``lam`` = 1 is pure relevance) under a per-artist cap.

relevance = (1 - ANCHOR_SHARE)·cos(c, query) + ANCHOR_SHARE·max_j cos(c, anchor_j)
            - DISTASTE_PENALTY·max(0, cos(c, distaste))
A candidate closer to the distaste direction than to the query is dropped outright: it sounds
more like what the user skips than like what they play.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from insight.schemas import SearchFilter, SearchResult
from insight.search.filter import store_where
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, VectorStore
from insight.taste.tracks import TrackView, metadata_of, track_views

ANCHOR_SHARE = 0.3
DISTASTE_PENALTY = 0.5
MAX_RECALL = 500
RELEVANCE_FLOOR = 0.75  # MMR stays among candidates within 75 % of the best relevance


@dataclass
class Query:
    vector: np.ndarray  # unit
    anchors: list[TrackView] = field(default_factory=list)
    distaste: np.ndarray | None = None
    exclude: set[str] = field(default_factory=set)
    filter: SearchFilter | None = None


@dataclass(slots=True)
class Ranked:
    view: TrackView
    score: float
    anchor: TrackView | None  # the anchor it is closest to


def as_result(r: Ranked, why: str, paths: bool = False) -> SearchResult:
    """A ranked track as a search result with its reason."""
    return SearchResult(
        track_id=r.view.track_id,
        score=r.score,
        metadata=metadata_of(r.view.track_id, r.view.payload, file_paths=paths),
        reason=why,
    )


def with_exclusions(f: SearchFilter | None, exclude: set[str]) -> SearchFilter | None:
    if not exclude:
        return f
    base = f.model_copy() if f is not None else SearchFilter()
    base.exclude_ids = sorted(set(base.exclude_ids or ()) | exclude)
    return base


async def recall(store: VectorStore, q: Query, pool: int, per_anchor: int) -> dict[str, TrackView]:
    """Candidate tracks (excluded ones and filter misses never come back)."""
    flt = store_where(with_exclusions(q.filter, q.exclude))
    jobs = [store.search(c, q.vector, pool, flt) for c in (TRACKS_AUDIO, TRACKS_TEXT)]
    for a in q.anchors[:3]:
        coll = TRACKS_AUDIO if a.space == "audio" else TRACKS_TEXT
        jobs.append(store.search(coll, a.vector, per_anchor, flt))
    hits = await asyncio.gather(*jobs)
    ids = list(dict.fromkeys(p.key for batch in hits for p in batch))[:MAX_RECALL]
    views = await track_views(store, ids)
    return {k: v for k, v in views.items() if k not in q.exclude}


def artist_key(view: TrackView) -> str | None:
    a = view.artists
    return a[0].casefold() if a else None


def mmr(
    vectors: np.ndarray,
    relevance: np.ndarray,
    lam: float,
    k: int,
    groups: np.ndarray | None = None,
    cap: int | None = None,
    floor: float = RELEVANCE_FLOOR,
) -> list[int]:
    """Maximal marginal relevance: ``lam·rel - (1-lam)·max sim to picked``, ``cap`` per group.

    ``groups`` holds an int per row (-1: no group, never capped). Plain MMR happily trades a
    relevant-but-similar track for an unrelated one (its redundancy is 0); here rows whose
    relevance is under ``floor`` × the best one are only taken once the relevant rows run
    out, so diversity works *inside* the neighbourhood the user asked for.
    """
    n = relevance.shape[0]
    top = float(relevance.max()) if n else 0.0
    demoted = relevance < floor * top if top > 0 else np.zeros(n, dtype=bool)
    avail = np.ones(n, dtype=bool)
    redundancy = np.zeros(n, dtype=np.float64)
    picked: list[int] = []
    counts: dict[int, int] = {}
    while len(picked) < k and avail.any():
        s = lam * relevance - (1.0 - lam) * redundancy if picked else relevance.copy()
        s = np.where(demoted, s - 10.0, s)
        s = np.where(avail, s, -np.inf)
        i = int(np.argmax(s))
        picked.append(i)
        avail[i] = False
        if groups is not None and cap is not None and groups[i] >= 0:
            g = int(groups[i])
            counts[g] = counts.get(g, 0) + 1
            if counts[g] >= cap:
                avail &= groups != g
        sims = vectors @ vectors[i]
        redundancy = sims if len(picked) == 1 else np.maximum(redundancy, sims)
    return picked


def rank(
    q: Query,
    cands: dict[str, TrackView],
    k: int,
    lam: float,
    max_per_artist: int | None,
    avoid_artists: set[str] | None = None,
) -> list[Ranked]:
    if not cands:
        return []
    views = list(cands.values())
    m = np.stack([v.vector for v in views]).astype(np.float32)
    base = m @ q.vector
    rel = base.astype(np.float64)
    nearest: np.ndarray | None = None
    if q.anchors:
        sims = m @ np.stack([a.vector for a in q.anchors]).T
        nearest = sims.argmax(axis=1)
        rel = (1.0 - ANCHOR_SHARE) * rel + ANCHOR_SHARE * sims.max(axis=1)
    keep = np.ones(len(views), dtype=bool)
    if q.distaste is not None:
        d = m @ q.distaste
        keep = d <= base
        rel = rel - DISTASTE_PENALTY * np.maximum(d, 0.0)
    if avoid_artists:
        keep &= np.array([artist_key(v) not in avoid_artists for v in views])
    idx = np.flatnonzero(keep)
    if idx.size == 0:
        return []
    names: dict[str, int] = {}
    groups = np.array(
        [
            -1 if (a := artist_key(views[i])) is None else names.setdefault(a, len(names))
            for i in idx
        ]
    )
    order = mmr(m[idx], rel[idx], lam, k, groups, max_per_artist)
    return [
        Ranked(
            view=views[idx[j]],
            score=float(np.clip(rel[idx[j]], -1.0, 1.0)),
            anchor=q.anchors[int(nearest[idx[j]])] if nearest is not None else None,
        )
        for j in order
    ]


async def find(
    store: VectorStore,
    q: Query,
    k: int,
    lam: float,
    max_per_artist: int | None,
    avoid_artists: set[str] | None = None,
) -> list[Ranked]:
    """Recall then rank; the recall pool grows with ``k`` and with how much MMR wants."""
    pool = min(max(4 * k, 40), MAX_RECALL)
    cands = await recall(store, q, pool, per_anchor=max(k, 10))
    return rank(q, cands, k, lam, max_per_artist, avoid_artists)
