"""Filters, both backends: every field of the store's ``Where`` on a small library, and
(hypothesis) search results against the reference predicate
``file_match.matches`` at several limits."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from insight.storage.base import TRACKS_TEXT, Point, VectorStore
from insight.storage.file_match import matches
from insight.storage.where import Where, where
from tests.test_storage_contract import BACKENDS, LIBRARY, cos, fill, make, store, unit

__all__ = ["store"]  # the contract's fixture: both backends, opened in tmp_path


async def keys_of(store: VectorStore, flt: Where | None, q: np.ndarray) -> set[str]:
    return {r.key for r in await store.search(TRACKS_TEXT, q, 100, flt)}


# --- filters -------------------------------------------------------------------------------------


FILTER_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"artists": ["DAFT PUNK"]}, {"t0", "t1"}),
    ({"artists": ["radiohead", "björk"]}, {"t2", "t3", "t5", "t7"}),
    ({"artists": ["BJÖRK"]}, {"t3", "t7"}),
    ({"genres": ["electronic"]}, {"t0", "t3", "t7"}),
    ({"genres": ["rock", "jazz"]}, {"t2", "t5", "t6", "t7"}),
    ({"album": "OK COMPUTER"}, {"t2", "t5"}),
    ({"album": "ok"}, set()),
    ({"exclude_ids": ["t0", "t1", "t2"]}, {"t3", "t4", "t5", "t6", "t7"}),
    ({"moods": ["calm", "dark"]}, {"t2", "t3", "t5", "t6"}),
    ({"moods": ["angry"]}, set()),  # primary_mood alone does not match ``moods``
    ({"exclude_moods": ["happy"]}, {"t2", "t3", "t4", "t5", "t6", "t7"}),
    ({"exclude_moods": ["angry", "calm"]}, {"t0", "t1", "t3", "t4", "t7"}),
    ({"min_valence": 0.5}, {"t0", "t1", "t5", "t6"}),
    ({"max_valence": 0.3}, {"t2", "t3", "t7"}),
    ({"min_valence": 0.3, "max_valence": 0.5}, {"t3", "t5", "t6"}),
    ({"min_arousal": 0.5, "max_arousal": 0.8}, {"t0", "t1", "t3", "t5"}),
    ({"max_arousal": 1.0}, {"t0", "t1", "t2", "t3", "t5", "t6", "t7"}),
    ({"artists": ["Björk"], "genres": ["rock"]}, {"t7"}),
    ({"genres": ["rock"], "moods": ["calm"], "min_valence": 0.3}, {"t5"}),
    ({"artists": [], "genres": [], "moods": []}, {f"t{i}" for i in range(8)}),
    ({"genres": ["electronic"], "exclude_ids": ["t7"], "max_arousal": 0.7}, {"t3"}),
    ({"min_bpm": 120}, {"t0"}),  # a track without a bpm never matches a bpm bound
    ({"min_bpm": 80.5, "max_bpm": 110}, {"t1", "t2"}),
    ({"keys": ["A MINOR"]}, {"t0", "t2"}),
    ({"keys": ["c major", "f minor"], "max_bpm": 200}, {"t1"}),
]


@pytest.mark.parametrize(("fields", "expected"), FILTER_CASES)
async def test_filter_fields(
    store: VectorStore, fields: dict[str, Any], expected: set[str]
) -> None:
    vecs = await fill(store)
    flt = where(**fields)
    assert {p["track_id"] for p in LIBRARY if matches(p["track_id"], p, flt)} == expected
    assert await keys_of(store, flt, vecs["t0"]) == expected


async def test_filtered_search_returns_limit_when_enough_match(store: VectorStore) -> None:
    rng = np.random.default_rng(5)
    vecs = unit(rng, 300)
    genres = ["a", "b", "c"]
    await store.upsert(
        TRACKS_TEXT,
        [Point(f"k{i}", vecs[i], {"genres": [genres[i % 3]]}) for i in range(300)],
    )
    q = unit(rng)[0]
    hits = await store.search(TRACKS_TEXT, q, 25, where(genres=["B"]))
    want = sorted(((cos(vecs[i], q), f"k{i}") for i in range(1, 300, 3)), reverse=True)[:25]
    assert [h.key for h in hits] == [k for _, k in want]
    assert all(h.payload["genres"] == ["b"] for h in hits)


async def test_returned_payload_has_no_internal_fields(store: VectorStore) -> None:
    vecs = await fill(store)
    for h in await store.search(TRACKS_TEXT, vecs["t0"], 3, where(artists=["daft punk"])):
        assert h.payload == next(p for p in LIBRARY if p["track_id"] == h.key)


# --- filter semantics vs the reference predicate (hypothesis) ----------------------------------

ARTISTS = ["Abba", "abba", "Björk", "BJÖRK", "Can", "Dälek", "Eno"]
GENRES = ["rock", "Rock", "jazz", "Electronic", "pop"]
MOODS = ["happy", "sad", "calm", "dark", "energetic"]
ALBUMS = ["One", "one", "Two", "Ünï"]
MUSICAL_KEYS = ["A minor", "a MINOR", "C major", "F# minor"]


def random_payload(r: random.Random) -> dict[str, Any]:
    p: dict[str, Any] = {
        "artists": r.sample(ARTISTS, r.randint(0, 2)),
        "genres": r.sample(GENRES, r.randint(0, 2)),
        "moods": r.sample(MOODS, r.randint(0, 2)),
    }
    for field, choices in (
        ("album", [None, *ALBUMS]),
        ("primary_mood", MOODS),
        ("valence", [None, 0.0, 0.25, 0.5, 0.75, 1.0]),
        ("arousal", [None, 0.0, 0.25, 0.5, 0.75, 1.0]),
        ("bpm", [None, 80, 99.5, 120.0, 128]),
        ("key", [None, *MUSICAL_KEYS]),
        ("model_id", [None, "m1", "m2"]),
    ):
        if r.random() < 0.7:
            p[field] = r.choice(choices)
    return p


bound = st.one_of(st.none(), st.sampled_from([0.0, 0.25, 0.5, 0.6, 1.0]))
filters = st.builds(
    where,
    artists=st.one_of(st.none(), st.lists(st.sampled_from(ARTISTS), max_size=2)),
    genres=st.one_of(st.none(), st.lists(st.sampled_from(GENRES), max_size=2)),
    album=st.one_of(st.none(), st.sampled_from(ALBUMS)),
    exclude_ids=st.one_of(st.none(), st.lists(st.sampled_from([f"p{i}" for i in range(40)]))),
    moods=st.one_of(st.none(), st.lists(st.sampled_from(MOODS), max_size=2)),
    exclude_moods=st.one_of(st.none(), st.lists(st.sampled_from(MOODS), max_size=2)),
    min_valence=bound,
    max_valence=bound,
    min_arousal=bound,
    max_arousal=bound,
    min_bpm=st.one_of(st.none(), st.sampled_from([80.0, 100.0, 128.0])),
    max_bpm=st.one_of(st.none(), st.sampled_from([99.5, 120.0, 200.0])),
    keys=st.one_of(st.none(), st.lists(st.sampled_from(MUSICAL_KEYS), max_size=2)),
    model_id=st.one_of(st.none(), st.sampled_from(["m1", "m2"])),
)


@pytest.mark.parametrize("kind", BACKENDS)
def test_filters_match_reference_predicate(kind: str, tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    try:
        store = make(kind, tmp_path)
        loop.run_until_complete(store.open())
        r = random.Random(9)
        data = [random_payload(r) for _ in range(40)]
        rng = np.random.default_rng(9)
        vecs = unit(rng, 40)
        keys = [f"p{i}" for i in range(40)]
        points = [Point(k, vecs[i], data[i]) for i, k in enumerate(keys)]
        loop.run_until_complete(store.upsert(TRACKS_TEXT, points))
        q = unit(rng)[0]
        ranked = sorted(keys, key=lambda k: -cos(vecs[int(k[1:])], q))

        @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
        @given(flt=filters, limit=st.sampled_from([1, 3, 10, 100]))
        def check(flt: Where | None, limit: int) -> None:
            want = [k for k in ranked if matches(k, data[int(k[1:])], flt)][:limit]
            hits = loop.run_until_complete(store.search(TRACKS_TEXT, q, limit, flt))
            assert [h.key for h in hits] == want
            assert all(math.isfinite(h.score) for h in hits)

        check()
        loop.run_until_complete(store.close())
    finally:
        loop.close()
