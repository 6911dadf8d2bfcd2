"""Similar tracks (one seed), multi-seed with negatives, and radio ("don't stop the music")."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from insight.errors import BadRequest, NotFound
from insight.library import file_paths_visible
from insight.schemas import (
    MultiSimilarRequest,
    RadioRequest,
    SearchResponse,
    SearchResult,
    SimilarRequest,
)
from insight.search.filter import store_where
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT
from insight.taste.profile import normalise
from insight.taste.rank import Query, artist_key, as_result, find, with_exclusions
from insight.taste.tracks import TrackView, metadata_of, track_views

if TYPE_CHECKING:
    from insight.app import App

RADIO_DIVERSITY = 0.3
RADIO_SEED_SHARE = 0.6  # the rest of the query comes from what was just played
RADIO_RECENT_WINDOW = 10  # recent plays that shape the query
RADIO_ARTIST_WINDOW = 3  # artists of the last few plays are not repeated right away
NEGATIVE_SHARE = 0.5


def _response(results: list[SearchResult]) -> SearchResponse:
    return SearchResponse(results=results, count=len(results))


async def similar(app: App, req: SimilarRequest) -> SearchResponse:
    """Nearest tracks to one track in its own vector space (audio when it has one)."""
    store = app.require_store()
    audio = await store.get(TRACKS_AUDIO, [req.track_id], with_vectors=True)
    text = await store.get(TRACKS_TEXT, [req.track_id], with_vectors=True)
    order = {"auto": (audio, text), "audio": (audio,), "text": (text,)}[req.collection]
    seed = next((p[0] for p in order if p and p[0].vector is not None), None)
    if seed is None:
        where = "" if req.collection == "auto" else f" in the {req.collection} collection"
        raise NotFound(f"track {req.track_id!r} has no stored embedding{where}")
    coll = TRACKS_AUDIO if audio and seed is audio[0] else TRACKS_TEXT
    flt = store_where(with_exclusions(req.filter, {req.track_id}))
    hits = await store.search(coll, np.asarray(seed.vector), req.limit, flt)
    name = (text[0].payload if text else seed.payload).get("name") or req.track_id
    why = f'{"sounds" if coll == TRACKS_AUDIO else "described"} like "{name}"'
    return _response(
        [
            SearchResult(
                track_id=h.key,
                score=h.score,
                metadata=metadata_of(h.key, h.payload, file_paths=file_paths_visible(app)),
                reason=why,
            )
            for h in hits
        ]
    )


async def _seeds(app: App, ids: list[str], what: str) -> list[TrackView]:
    views = await track_views(app.require_store(), ids)
    missing = [t for t in ids if t not in views]
    if missing and what == "seed" and len(missing) == len(ids):
        raise NotFound(f"none of the {what} tracks has a stored embedding: {missing[:5]}")
    return [views[t] for t in ids if t in views]


def _centroid(views: list[TrackView], weights: np.ndarray | None = None) -> np.ndarray | None:
    if not views:
        return None
    m = np.stack([v.vector for v in views]).astype(np.float64)
    w = np.ones(len(views)) if weights is None else weights
    return normalise(np.asarray(w @ m))


async def similar_multi(app: App, req: MultiSimilarRequest) -> SearchResponse:
    """Tracks like all the seeds and unlike the negative ones."""
    seeds = await _seeds(app, req.track_ids, "seed")
    negatives = await _seeds(app, req.negative_ids, "negative")
    centre = _centroid(seeds)
    avoid = _centroid(negatives)
    if centre is None:
        raise BadRequest("the seed tracks cancel out; pick seeds that have something in common")
    vector = centre if avoid is None else normalise(centre - NEGATIVE_SHARE * avoid)
    if vector is None:
        raise BadRequest("the seeds and the negative tracks cancel out")
    q = Query(
        vector=vector,
        anchors=seeds,
        distaste=avoid,
        exclude=set(req.track_ids) | set(req.negative_ids),
        filter=req.filter,
    )
    ranked = await find(app.require_store(), q, req.limit, 1.0, None)
    paths = file_paths_visible(app)
    return _response(
        [as_result(r, f"like {r.anchor.label()}" if r.anchor else "", paths) for r in ranked]
    )


async def radio(app: App, req: RadioRequest) -> SearchResponse:
    """Next tracks for a queue: like the seeds and what was just played, never a repeat.

    ``recent_ids`` are in play order (most recent last). No track of the seeds or of the
    recent plays comes back, the artists of the last few plays are rested, and no artist
    appears more than ``max_per_artist`` times in the answer.
    """
    store = app.require_store()
    seeds = await _seeds(app, req.seed_ids, "seed")
    recent_ids = req.recent_ids[-RADIO_RECENT_WINDOW:]
    recent_views = await track_views(store, recent_ids)
    recent = [recent_views[t] for t in recent_ids if t in recent_views]
    centre = _centroid(seeds)
    if centre is None:
        raise BadRequest("the seed tracks cancel out; pick seeds that have something in common")
    vector = centre
    if recent:
        w = 0.5 ** (np.arange(len(recent))[::-1] / 3.0)  # the latest play counts most
        tail = _centroid(recent, w)
        if tail is not None:
            mixed = normalise(RADIO_SEED_SHARE * centre + (1 - RADIO_SEED_SHARE) * tail)
            vector = centre if mixed is None else mixed
    rested = {a for v in recent[-RADIO_ARTIST_WINDOW:] if (a := artist_key(v)) is not None}
    q = Query(
        vector=vector,
        anchors=seeds + recent[-3:],
        exclude=set(req.seed_ids) | set(req.recent_ids),
        filter=req.filter,
    )
    lam = 1.0 - RADIO_DIVERSITY
    ranked = await find(store, q, req.count, lam, req.max_per_artist, rested)
    if len(ranked) < req.count and rested:  # a small library: repeat an artist, not a track
        ranked = await find(store, q, req.count, lam, req.max_per_artist)
    paths = file_paths_visible(app)
    return _response(
        [as_result(r, f"after {r.anchor.label()}" if r.anchor else "", paths) for r in ranked]
    )
