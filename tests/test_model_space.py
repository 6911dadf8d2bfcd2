"""Vectors of two models never mix: every search is pinned to the loaded model's space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point
from insight.storage.where import where
from tests.conftest import Running
from tests.test_storage_contract import BACKENDS, DIM, make


def unit(seed: int, dim: int = 512) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("kind", BACKENDS)
async def test_model_id_filter_in_both_backends(kind: str, tmp_path: Path) -> None:
    store = make(kind, tmp_path)
    await store.open()
    try:
        q = unit(1, DIM)
        await store.upsert(
            TRACKS_TEXT,
            [
                Point("old", q, {"track_id": "old", "model_id": "org/old"}),
                Point("new", unit(2, DIM), {"track_id": "new", "model_id": "org/new"}),
                Point("unknown", unit(3, DIM), {"track_id": "unknown"}),
            ],
        )
        hits = await store.search(TRACKS_TEXT, q, 10, where(model_id="org/new"))
        assert [h.key for h in hits] == ["new"]
        hits = await store.search(TRACKS_TEXT, q, 10, None)
        assert {h.key for h in hits} == {"old", "new", "unknown"}
    finally:
        await store.close()


async def test_searches_ignore_vectors_of_another_model(running: Running) -> None:
    app = running.app
    store = app.require_store()
    current = app.require_pool().model.model_id
    twin = unit(7)
    # the same vector stored by an earlier model and by the current one
    for key, model in (("stale", "org/earlier-model"), ("fresh", current)):
        payload = {"track_id": key, "name": key, "artists": ["A"], "model_id": model}
        await store.upsert(TRACKS_TEXT, [Point(key, twin, payload)])
        await store.upsert(TRACKS_AUDIO, [Point(key, twin, payload)])

    status, found = await running.api.call(
        "POST", "/tracks/search", {"embedding": twin.tolist(), "collection": "audio"}
    )
    assert status == 200 and [r["track_id"] for r in found["results"]] == ["fresh"]
    status, found = await running.api.call("POST", "/tracks/search-text", {"query": "fresh"})
    assert status == 200 and "stale" not in [r["track_id"] for r in found["results"]]
    status, found = await running.api.call("GET", "/tracks/fresh/similar")
    assert status == 200 and "stale" not in [r["track_id"] for r in found["results"]]
    # an explicit model_id is honoured (to inspect what an older model stored)
    status, found = await running.api.call(
        "POST",
        "/tracks/search",
        {
            "embedding": twin.tolist(),
            "collection": "text",
            "filter": {"model_id": "org/earlier-model"},
        },
    )
    assert [r["track_id"] for r in found["results"]] == ["stale"]
    status, stats = await running.api.call("GET", "/storage/stats")
    assert stats["stats"]["stale_vectors"] == 2


async def test_status_counts_stale_vectors_of_every_other_model(running: Running) -> None:
    """/status and /storage/stats count, per collection, the vectors not made by the loaded
    model: another model's, and those with no model_id at all (the original sidecar's)."""
    app = running.app
    store = app.require_store()
    current = app.require_pool().model.model_id
    layout = {  # collection: (fresh, of "org/a", of "org/b", without a model_id)
        TRACKS_TEXT: (4, 3, 2, 1),
        TRACKS_AUDIO: (2, 0, 1, 2),
    }
    for coll, sizes in layout.items():
        points = []
        for model, n in zip((current, "org/a", "org/b", None), sizes, strict=True):
            for i in range(n):
                key = f"{coll}-{model}-{i}"
                payload = {"track_id": key, "name": key}
                if model is not None:
                    payload["model_id"] = model
                points.append(Point(key, unit(len(points) + 100), payload))
        await store.upsert(coll, points)
    assert await store.count(TRACKS_TEXT, where(model_id=current)) == 4
    assert await store.count(TRACKS_AUDIO, where(model_id="org/b")) == 1
    status, body = await running.api.call("GET", "/status")
    assert status == 200
    storage = body["storage"]
    assert storage["stale_vectors"] == (3 + 2 + 1) + (0 + 1 + 2)
    assert (storage["text_collection_count"], storage["audio_collection_count"]) == (10, 5)
    status, stats = await running.api.call("GET", "/storage/stats")
    assert stats["stats"]["stale_vectors"] == 9


@pytest.mark.parametrize("kind", BACKENDS)
async def test_model_space_filter_returns_limit_when_enough_match(
    kind: str, tmp_path: Path
) -> None:
    """Filtered by model, search still fills ``limit`` (not filtered away after the fact)."""
    store = make(kind, tmp_path)
    await store.open()
    try:
        points = [
            Point(f"k{i}", unit(i, DIM), {"track_id": f"k{i}", "model_id": f"m{i % 2}"})
            for i in range(60)
        ]
        await store.upsert(TRACKS_TEXT, points)
        q = unit(0, DIM)  # identical to k0 (model m0)
        hits = await store.search(TRACKS_TEXT, q, 20, where(model_id="m1"))
        assert len(hits) == 20
        assert all(int(h.key[1:]) % 2 == 1 for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
    finally:
        await store.close()


def test_a_model_constraint_every_row_meets_is_dropped() -> None:
    """One model in the store (the usual case): pinning costs nothing, search stays unfiltered."""
    from insight.storage.memtable import MemTable

    table = MemTable(DIM)
    for slot in range(3):
        table.put(slot, f"k{slot}", {"model_id": "m", "genres": ["rock"]}, unit(slot, DIM))
    assert table.simplify(where(model_id="m")) is None
    kept = table.simplify(where(model_id="m", genres=["Rock"]))
    assert kept is not None and kept.model_id is None and kept.genres == frozenset({"rock"})
    table.put(3, "k3", {"model_id": "other"}, unit(3, DIM))
    narrowed = table.simplify(where(model_id="m"))
    assert narrowed is not None and narrowed.model_id == "m"
