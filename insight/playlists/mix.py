"""Trait mixes: "pick traits → playlist".

The traits become one query vector and one filter. The vector adds up what the traits sound
like: the prompt's embedding, the mood prompts of the chosen moods (or, with only a V/A region,
of the moods whose V/A hints fall in it), the genres as a sentence, and the user's taste
profile (pushed away from their distaste). The filter makes the traits hard: every track has
one of the moods, one of the genres, V/A inside the region, and a tempo in range where the
tempo is known. Diversity is the recommender's MMR with an artist cap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from insight.errors import BadRequest, NotFound
from insight.mood import mood_ids
from insight.playlists.schemas import MixRequest
from insight.playlists.vectors import number
from insight.schemas import SearchFilter
from insight.taste import store as profiles
from insight.taste.profile import normalise
from insight.taste.rank import Query, Ranked, find

if TYPE_CHECKING:
    from insight.app import App

TASTE_WEIGHT = 1.0
GENRE_WEIGHT = 0.5
REGION_WEIGHT = 0.5


def check(req: MixRequest) -> None:
    known = set(mood_ids())
    bad = [m for m in req.moods if m not in known]
    if bad:
        raise BadRequest(f"unknown moods {bad[:5]}: see GET /api/v1/mood/list")
    for lo, hi, what in (
        (req.min_valence, req.max_valence, "valence"),
        (req.min_arousal, req.max_arousal, "arousal"),
        (req.min_tempo, req.max_tempo, "tempo"),
    ):
        if lo is not None and hi is not None and lo > hi:
            raise BadRequest(f"min_{what} {lo} is above max_{what} {hi}")


def mix_filter(req: MixRequest) -> SearchFilter:
    return SearchFilter(
        moods=req.moods or None,
        genres=req.genres or None,
        min_valence=req.min_valence,
        max_valence=req.max_valence,
        min_arousal=req.min_arousal,
        max_arousal=req.max_arousal,
    )


def in_tempo(payload: dict[str, Any], lo: float | None, hi: float | None) -> bool:
    """Inside [lo, hi] where the track's tempo is known; unknown tempo passes."""
    bpm = number(payload, "tempo")
    bpm = number(payload, "bpm") if bpm is None else bpm
    if bpm is None:
        return True
    return (lo is None or bpm >= lo) and (hi is None or bpm <= hi)


def region_moods(bank_hints: np.ndarray, req: MixRequest) -> np.ndarray:
    """Indexes of the moods whose V/A hints lie in the requested region (nearest one if none)."""
    v, a = bank_hints[:, 0], bank_hints[:, 1]
    lo_v, hi_v = req.min_valence or -1.0, req.max_valence if req.max_valence is not None else 1.0
    lo_a, hi_a = req.min_arousal or -1.0, req.max_arousal if req.max_arousal is not None else 1.0
    inside = np.flatnonzero((v >= lo_v) & (v <= hi_v) & (a >= lo_a) & (a <= hi_a))
    if inside.size:
        return inside
    centre = np.array([(lo_v + hi_v) / 2, (lo_a + hi_a) / 2])
    return np.array([int(np.argmin(np.linalg.norm(bank_hints - centre, axis=1)))])


async def query_vector(app: App, req: MixRequest) -> tuple[np.ndarray, np.ndarray | None]:
    parts: list[np.ndarray] = []
    distaste: np.ndarray | None = None
    has_region = any(
        x is not None for x in (req.min_valence, req.max_valence, req.min_arousal, req.max_arousal)
    )
    if req.prompt or req.moods or req.genres or has_region:
        pool = app.require_pool()
        if req.prompt:
            parts.append((await pool.embed_texts([req.prompt]))[0])
        if req.moods or has_region:
            bank = await app.services.mood.bank()
            if req.moods:
                order = [label.id for label in bank.labels]
                idx = np.array([order.index(m) for m in req.moods])
                parts.append(bank.moods[idx].mean(axis=0))
            else:
                parts.append(REGION_WEIGHT * bank.moods[region_moods(bank.hints, req)].mean(0))
        if req.genres:
            sentence = f"{', '.join(req.genres)} music"
            parts.append(GENRE_WEIGHT * (await pool.embed_texts([sentence]))[0])
    if req.user_id is not None:
        store = app.require_store()
        loaded = await profiles.load(store, req.user_id, [profiles.GLOBAL, profiles.DISTASTE])
        prof = loaded.get(profiles.GLOBAL)
        if prof is None:
            raise NotFound(
                f"no taste profile for user {req.user_id!r}: compute one with "
                f"POST /api/v1/users/{req.user_id}/profile/compute"
            )
        parts.append(TASTE_WEIGHT * prof.vector)
        dis = loaded.get(profiles.DISTASTE)
        distaste = dis.vector if dis is not None else None
    if not parts:
        raise BadRequest(
            "pick at least one trait: moods, a valence/arousal region, genres, a prompt or a user"
        )
    vector = normalise(np.sum([np.asarray(p, dtype=np.float64) for p in parts], axis=0))
    if vector is None:
        raise BadRequest("the traits cancel out; pick traits that go together")
    return vector.astype(np.float32), distaste


async def build_mix(app: App, req: MixRequest) -> list[Ranked]:
    check(req)
    vector, distaste = await query_vector(app, req)
    flt = app.in_model_space(mix_filter(req))
    q = Query(vector=vector, distaste=distaste, filter=flt)
    tempo = req.min_tempo is not None or req.max_tempo is not None
    want = req.size * 3 if tempo else req.size
    ranked = await find(app.require_store(), q, want, 1.0 - req.diversity, req.max_per_artist)
    if tempo:
        ranked = [r for r in ranked if in_tempo(r.view.payload, req.min_tempo, req.max_tempo)]
    return ranked[: req.size]
