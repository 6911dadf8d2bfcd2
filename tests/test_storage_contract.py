"""One contract, both backends: the file store (usearch + SQLite in tmp_path) and Qdrant through
qdrant-client's local mode. Filter semantics: ``test_storage_filters.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from insight.errors import BadRequest
from insight.storage.base import (
    TASTE_PROFILES,
    TRACKS_AUDIO,
    TRACKS_TEXT,
    Point,
    VectorStore,
    point_id,
    profile_key,
)
from insight.storage.file import FileStore
from insight.storage.qdrant import QdrantStore
from insight.storage.where import where

DIM = 16
BACKENDS = ["file", "qdrant"]


def make(kind: str, tmp: Path, prefix: str = "") -> VectorStore:
    if kind == "file":
        return FileStore(tmp / "data", DIM, prefix, save_interval_s=0.2)
    return QdrantStore(DIM, prefix=prefix, location=":memory:")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s = make(request.param, tmp_path)
    await s.open()
    yield s
    await s.close()


def unit(rng: np.random.Generator, n: int = 1) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# A small library with every filterable field exercised (and some values missing).
LIBRARY: list[dict[str, Any]] = [
    {"track_id": "t0", "artists": ["Daft Punk"], "genres": ["House", "Electronic"],
     "album": "Discovery", "moods": ["happy", "energetic"], "primary_mood": "happy",
     "valence": 0.9, "arousal": 0.8, "bpm": 124, "key": "A minor"},
    {"track_id": "t1", "artists": ["daft punk", "Pharrell"], "genres": ["Disco"],
     "album": "Random Access Memories", "moods": ["happy"], "primary_mood": "happy",
     "valence": 0.7, "arousal": 0.5, "bpm": 110.0, "key": "C major"},
    {"track_id": "t2", "artists": ["Radiohead"], "genres": ["Rock", "alternative"],
     "album": "OK Computer", "moods": ["sad", "calm"], "primary_mood": "sad",
     "valence": 0.2, "arousal": 0.3, "bpm": 80.5, "key": "a minor"},
    {"track_id": "t3", "artists": ["Björk"], "genres": ["electronic"], "album": "Homogenic",
     "moods": ["dark"], "primary_mood": "dark", "valence": 0.3, "arousal": 0.6},
    {"track_id": "t4", "artists": ["Nobody"], "genres": [], "album": None},
    {"track_id": "t5", "artists": ["RADIOHEAD"], "genres": ["ROCK"], "album": "ok computer",
     "moods": ["calm"], "primary_mood": "angry", "valence": 0.5, "arousal": 0.5},
    {"track_id": "t6", "artists": ["Miles Davis"], "genres": ["Jazz"], "album": "Kind of Blue",
     "moods": ["calm", "romantic"], "primary_mood": "calm", "valence": 0.5, "arousal": 0.1},
    {"track_id": "t7", "artists": ["Björk", "Thom Yorke"], "genres": ["Electronic", "Rock"],
     "album": "Selma Songs", "moods": [], "valence": 0.0, "arousal": 1.0},
]  # fmt: skip


async def fill(store: VectorStore, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vecs = unit(rng, len(LIBRARY))
    await store.upsert(
        TRACKS_TEXT,
        [Point(p["track_id"], vecs[i], dict(p)) for i, p in enumerate(LIBRARY)],
    )
    return {p["track_id"]: vecs[i] for i, p in enumerate(LIBRARY)}


# --- basic CRUD --------------------------------------------------------------------------------


async def test_upsert_get_exists_count_delete(store: VectorStore) -> None:
    assert isinstance(store, VectorStore)
    vecs = await fill(store)
    assert await store.count(TRACKS_TEXT) == len(LIBRARY)
    assert await store.count(TRACKS_AUDIO) == 0
    assert await store.exists(TRACKS_TEXT, "t3")
    assert not await store.exists(TRACKS_TEXT, "nope")
    assert not await store.exists(TRACKS_AUDIO, "t3")

    got = await store.get(TRACKS_TEXT, ["t2", "missing", "t0"])
    assert [p.key for p in got] == ["t2", "t0"]
    assert got[0].vector is None
    assert got[0].payload == LIBRARY[2]
    assert got[1].payload == LIBRARY[0]

    with_vec = await store.get(TRACKS_TEXT, ["t5"], with_vectors=True)
    assert with_vec[0].vector is not None
    np.testing.assert_allclose(with_vec[0].vector, vecs["t5"], atol=1e-6)

    assert await store.delete(TRACKS_TEXT, ["t1", "nope", "t1"]) == ["t1"]
    assert await store.count(TRACKS_TEXT) == len(LIBRARY) - 1
    assert not await store.exists(TRACKS_TEXT, "t1")
    assert await store.get(TRACKS_TEXT, ["t1"]) == []
    assert await store.delete(TRACKS_TEXT, ["t1"]) == []
    assert await store.delete(TRACKS_AUDIO, ["t1"]) == []


async def test_reupsert_is_idempotent_and_replaces_payload(store: VectorStore) -> None:
    rng = np.random.default_rng(2)
    v = unit(rng, 2)
    await store.upsert(TRACKS_AUDIO, [Point("a", v[0], {"track_id": "a", "name": "one"})])
    await store.upsert(TRACKS_AUDIO, [Point("a", v[0], {"track_id": "a", "name": "one"})])
    assert await store.count(TRACKS_AUDIO) == 1
    await store.upsert(TRACKS_AUDIO, [Point("a", v[1], {"track_id": "a", "name": "two"})])
    assert await store.count(TRACKS_AUDIO) == 1
    [p] = await store.get(TRACKS_AUDIO, ["a"], with_vectors=True)
    assert p.payload == {"track_id": "a", "name": "two"}
    assert p.vector is not None
    np.testing.assert_allclose(p.vector, v[1], atol=1e-6)
    hits = await store.search(TRACKS_AUDIO, v[1], 5)
    assert [h.key for h in hits] == ["a"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    # The same key twice in one batch: the last one wins.
    await store.upsert(TRACKS_AUDIO, [Point("b", v[0], {"n": 1}), Point("b", v[1], {"n": 2})])
    assert await store.count(TRACKS_AUDIO) == 2
    assert (await store.get(TRACKS_AUDIO, ["b"]))[0].payload == {"n": 2}


@pytest.mark.parametrize(
    "key",
    [
        "Ünïcødé/トラック/🎵",
        "x" * 1000,
        "library://track/123/with/slashes?and=query#frag",
        "  spaces  ",
        "track_123",
    ],
)
async def test_odd_keys(store: VectorStore, key: str) -> None:
    v = unit(np.random.default_rng(3))[0]
    await store.upsert(TRACKS_TEXT, [Point(key, v, {"track_id": key})])
    assert await store.exists(TRACKS_TEXT, key)
    [p] = await store.get(TRACKS_TEXT, [key])
    assert p.key == key and p.payload == {"track_id": key}
    [hit] = await store.search(TRACKS_TEXT, v, 3)
    assert hit.key == key
    assert await store.delete(TRACKS_TEXT, [key]) == [key]
    assert await store.count(TRACKS_TEXT) == 0


def test_point_id_matches_original_sidecar() -> None:
    assert point_id("track_123") == "2b377459-540f-5145-bf97-ff6447ed8545"


async def test_dimension_mismatch_is_a_clear_error(store: VectorStore) -> None:
    with pytest.raises(BadRequest, match=f"dimension mismatch: expected {DIM}, got 7"):
        await store.upsert(TRACKS_TEXT, [Point("a", np.ones(7, np.float32), {})])
    with pytest.raises(BadRequest, match=f"dimension mismatch: expected {DIM}, got {DIM + 1}"):
        await store.search(TRACKS_TEXT, np.ones(DIM + 1, np.float32), 3)
    with pytest.raises(BadRequest, match="NaN"):
        await store.upsert(TRACKS_TEXT, [Point("a", np.full(DIM, np.nan, np.float32), {})])
    with pytest.raises(BadRequest, match="zeros"):
        await store.upsert(TRACKS_TEXT, [Point("a", np.zeros(DIM, np.float32), {})])
    assert await store.count(TRACKS_TEXT) == 0


async def test_search_orders_by_cosine_and_honours_limit(store: VectorStore) -> None:
    rng = np.random.default_rng(4)
    vecs = unit(rng, 50)
    await store.upsert(
        TRACKS_AUDIO, [Point(f"k{i}", vecs[i], {"track_id": f"k{i}"}) for i in range(50)]
    )
    q = unit(rng)[0]
    want = sorted(((cos(vecs[i], q), f"k{i}") for i in range(50)), reverse=True)
    hits = await store.search(TRACKS_AUDIO, q, 10)
    assert [h.key for h in hits] == [k for _, k in want[:10]]
    for h, (s, _) in zip(hits, want, strict=False):
        assert h.score == pytest.approx(s, abs=1e-5)
    assert len(await store.search(TRACKS_AUDIO, q, 100)) == 50
    assert await store.search(TRACKS_AUDIO, q, 0) == []
    # unnormalised queries score the same (cosine)
    hits2 = await store.search(TRACKS_AUDIO, q * 7.5, 3)
    assert [h.key for h in hits2] == [k for _, k in want[:3]]


async def test_search_after_delete_excludes_point(store: VectorStore) -> None:
    vecs = await fill(store)
    [top] = await store.search(TRACKS_TEXT, vecs["t3"], 1)
    assert top.key == "t3"
    await store.delete(TRACKS_TEXT, ["t3"])
    hits = await store.search(TRACKS_TEXT, vecs["t3"], 100)
    assert "t3" not in {h.key for h in hits}
    assert len(hits) == len(LIBRARY) - 1


async def test_count_with_where(store: VectorStore) -> None:
    """``count`` answers from the store's own indexes: every point, or those passing a filter;
    it follows upserts that change a field and deletes."""
    vecs = unit(np.random.default_rng(11), 12)
    models = ["m1"] * 5 + ["m2"] * 4 + [None] * 3
    points = [
        Point(f"c{i}", vecs[i], {"model_id": m, "genres": ["Rock" if i % 2 else "jazz"]})
        for i, m in enumerate(models)
    ]
    for p in points:
        if p.payload["model_id"] is None:
            del p.payload["model_id"]
    await store.upsert(TRACKS_TEXT, points)
    assert await store.count(TRACKS_TEXT) == 12
    assert await store.count(TRACKS_TEXT, None) == 12
    assert await store.count(TRACKS_TEXT, where(model_id="m1")) == 5
    assert await store.count(TRACKS_TEXT, where(model_id="m2")) == 4
    assert await store.count(TRACKS_TEXT, where(model_id="m3")) == 0
    assert await store.count(TRACKS_TEXT, where(model_id="m1", genres=["ROCK"])) == 2  # c1, c3
    assert await store.count(TRACKS_TEXT, where(model_id="m2", exclude_ids=["c5", "x"])) == 3
    assert await store.count(TRACKS_AUDIO, where(model_id="m1")) == 0
    await store.upsert(TRACKS_TEXT, [Point("c5", vecs[5], {"model_id": "m1"})])  # m2 -> m1
    await store.delete(TRACKS_TEXT, ["c0", "c11"])
    assert await store.count(TRACKS_TEXT) == 10
    assert await store.count(TRACKS_TEXT, where(model_id="m1")) == 5  # -c0 +c5
    assert await store.count(TRACKS_TEXT, where(model_id="m2")) == 3


# --- scroll and profiles -------------------------------------------------------------------------


async def test_scroll_pages_through_everything_once(store: VectorStore) -> None:
    rng = np.random.default_rng(6)
    vecs = unit(rng, 23)
    await store.upsert(
        TRACKS_AUDIO,
        [Point(f"k{i:02d}", vecs[i], {"track_id": f"k{i:02d}", "g": i % 2}) for i in range(23)],
    )
    seen: list[str] = []
    offset: str | None = None
    pages = 0
    while True:
        page, offset = await store.scroll(TRACKS_AUDIO, offset, limit=5, with_vectors=True)
        pages += 1
        assert len(page) <= 5
        for p in page:
            assert p.vector is not None
            np.testing.assert_allclose(p.vector, vecs[int(p.key[1:])], atol=1e-6)
        seen += [p.key for p in page]
        if offset is None:
            break
    assert pages == 5
    assert sorted(seen) == [f"k{i:02d}" for i in range(23)]
    odd, nxt = await store.scroll(TRACKS_AUDIO, where={"g": 1}, limit=100)
    assert nxt is None
    assert sorted(p.key for p in odd) == [f"k{i:02d}" for i in range(1, 23, 2)]
    assert all(p.vector is None for p in odd)
    assert await store.scroll(TRACKS_TEXT) == ([], None)


async def test_taste_profiles_by_user(store: VectorStore) -> None:
    rng = np.random.default_rng(7)
    vecs = unit(rng, 3)
    rows = [("alice", "global"), ("alice", "recent"), ("bob", "global")]
    await store.upsert(
        TASTE_PROFILES,
        [
            Point(
                profile_key(u, k),
                vecs[i],
                {"user_id": u, "profile_type": k, "track_count": 10 + i, "confidence": 0.5},
            )
            for i, (u, k) in enumerate(rows)
        ],
    )
    mine, _ = await store.scroll(TASTE_PROFILES, where={"user_id": "alice"})
    assert sorted(p.key for p in mine) == ["alice::global", "alice::recent"]
    [p] = await store.get(TASTE_PROFILES, ["bob::global"], with_vectors=True)
    assert p.payload["track_count"] == 12
    assert p.vector is not None
    np.testing.assert_allclose(p.vector, vecs[2], atol=1e-6)


# --- prefix and stats ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", BACKENDS)
async def test_prefix_separates_collections(kind: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    v = unit(rng, 2)
    if kind == "file":
        a: VectorStore = make(kind, tmp_path, "alpha")
        b: VectorStore = make(kind, tmp_path, "beta")
    else:  # one local Qdrant shared by two prefixes
        a = QdrantStore(DIM, prefix="alpha", location=":memory:")
        await a.open()
        b = QdrantStore(DIM, prefix="beta", location=":memory:")
        b._client = a._client  # same server, different prefix
    await a.open()
    await b.open()
    await a.upsert(TRACKS_TEXT, [Point("x", v[0], {"who": "a"})])
    await b.upsert(TRACKS_TEXT, [Point("x", v[1], {"who": "b"}), Point("y", v[1], {})])
    assert await a.count(TRACKS_TEXT) == 1
    assert await b.count(TRACKS_TEXT) == 2
    assert (await a.get(TRACKS_TEXT, ["x"]))[0].payload == {"who": "a"}
    assert (await b.get(TRACKS_TEXT, ["x"]))[0].payload == {"who": "b"}
    if isinstance(a, FileStore):
        await a.close()
        await b.close()
        assert (tmp_path / "data" / "alpha_tracks_text.usearch").exists()
        assert (tmp_path / "data" / "beta_tracks_text.usearch").exists()
        a = make(kind, tmp_path, "alpha")
        await a.open()
        assert await a.count(TRACKS_TEXT) == 1
        await a.close()
    else:
        assert isinstance(a, QdrantStore)
        names = {c.name for c in (await a._client.get_collections()).collections}
        assert {"alpha_tracks_text", "beta_tracks_text", "alpha_taste_profiles"} <= names
        await a.close()


async def test_stats(store: VectorStore) -> None:
    await fill(store)
    st_ = await store.stats()
    assert st_.connected
    assert st_.mode == store.mode
    assert st_.collections == {TRACKS_TEXT: len(LIBRARY), TRACKS_AUDIO: 0, TASTE_PROFILES: 0}
    if store.mode == "file":
        assert st_.index_size_bytes is not None and st_.index_size_bytes > 0
