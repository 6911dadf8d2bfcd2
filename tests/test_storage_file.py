"""File store specifics: persistence, snapshot replay, rebuild, the ANN path, locking."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from insight.config import StorageSettings
from insight.errors import StorageNotReady
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point
from insight.storage.factory import make_store, open_store
from insight.storage.file import DB_NAME, FileStore
from insight.storage.qdrant import QdrantStore
from insight.storage.where import where

DIM = 16


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute(vecs: np.ndarray, keys: list[str], q: np.ndarray, k: int) -> list[str]:
    s = vecs @ (q / np.linalg.norm(q))
    return [keys[i] for i in np.argsort(-s, kind="stable")[:k]]


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    v = unit(rng, 100)
    s = FileStore(tmp_path, DIM)
    await s.open()
    await s.upsert(TRACKS_TEXT, [Point(f"k{i}", v[i], {"i": i}) for i in range(100)])
    await s.delete(TRACKS_TEXT, [f"k{i}" for i in range(0, 100, 10)])
    await s.upsert(TRACKS_TEXT, [Point("k7", v[7], {"i": 7, "genres": ["Jazz"], "valence": 0.4})])
    await s.close()
    s = FileStore(tmp_path, DIM)
    await s.open()
    assert await s.count(TRACKS_TEXT) == 90
    assert await s.verify() == []
    flt = where(genres=["jazz"], min_valence=0.4, max_valence=0.4)
    assert [h.key for h in await s.search(TRACKS_TEXT, v[0], 10, flt)] == ["k7"]
    await s.upsert(TRACKS_TEXT, [Point("new", v[0], {})])  # takes a freed label
    assert [h.key for h in await s.search(TRACKS_TEXT, v[0], 1)] == ["new"]
    assert await s.count(TRACKS_TEXT) == 91
    await s.delete(TRACKS_TEXT, ["new"])
    [p] = await s.get(TRACKS_TEXT, ["k5"], with_vectors=True)
    assert p.payload == {"i": 5}
    assert p.vector is not None
    assert np.array_equal(p.vector, v[5])
    hits = await s.search(TRACKS_TEXT, v[10], 100)
    assert "k10" not in {h.key for h in hits} and len(hits) == 90
    await s.close()


async def test_stale_snapshot_is_replayed(tmp_path: Path) -> None:
    """Writes after the last snapshot (and deletes, and label reuse) survive a reopen."""
    rng = np.random.default_rng(2)
    v = unit(rng, 60)
    s = FileStore(tmp_path, DIM, save_interval_s=3600)
    await s.open()
    await s.upsert(TRACKS_TEXT, [Point(f"k{i}", v[i], {}) for i in range(30)])
    s.save()
    await s.delete(TRACKS_TEXT, ["k0", "k1"])
    await s.upsert(TRACKS_TEXT, [Point(f"k{i}", v[i], {}) for i in range(30, 60)])  # reuses 0, 1
    await s.upsert(TRACKS_TEXT, [Point("k5", v[59], {"moved": True})])
    # simulate a crash: drop the store without closing (no final save)
    assert s._db is not None
    s._stop.set()
    s._db.close()
    s._db = None
    assert s._lock_fd is not None
    import os

    os.close(s._lock_fd)
    s2 = FileStore(tmp_path, DIM)
    await s2.open()
    assert await s2.count(TRACKS_TEXT) == 58
    assert await s2.verify() == []
    [hit, *_] = await s2.search(TRACKS_TEXT, v[0], 5)
    assert hit.key != "k0"
    assert {h.key for h in await s2.search(TRACKS_TEXT, v[59], 2)} == {"k5", "k59"}
    await s2.close()


@pytest.mark.parametrize("damage", ["truncate", "delete", "garbage", "meta"])
async def test_damaged_snapshot_is_rebuilt(tmp_path: Path, damage: str) -> None:
    rng = np.random.default_rng(3)
    v = unit(rng, 40)
    s = FileStore(tmp_path, DIM)
    await s.open()
    await s.upsert(TRACKS_AUDIO, [Point(f"k{i}", v[i], {}) for i in range(40)])
    await s.close()
    path = tmp_path / "tracks_audio.usearch"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "delete":
        path.unlink()
    elif damage == "garbage":
        size = path.stat().st_size
        path.write_bytes(b"\x00garbage" * (size // 8) + b"\x00" * (size % 8))
    else:
        path.with_suffix(".usearch.json").write_text("{not json")
    s = FileStore(tmp_path, DIM)
    await s.open()
    assert await s.count(TRACKS_AUDIO) == 40
    assert await s.verify() == []
    assert [h.key for h in await s.search(TRACKS_AUDIO, v[7], 1)] == ["k7"]
    await s.close()


async def test_ann_path_filtered_returns_limit(tmp_path: Path) -> None:
    """Above ``exact_max`` search goes through usearch; filters still give ``limit`` hits."""
    rng = np.random.default_rng(4)
    n = 3000
    v = unit(rng, n)
    keys = [f"k{i}" for i in range(n)]
    s = FileStore(tmp_path, DIM, exact_max=50, expansion_search=128)
    await s.open()
    await s.upsert(
        TRACKS_TEXT,
        [
            Point(keys[i], v[i], {"genres": [f"g{i % 10}"], "valence": (i % 7) / 6})
            for i in range(n)
        ],
    )
    recalls = []
    for j in range(20):
        q = unit(rng, 1)[0]
        hits = await s.search(TRACKS_TEXT, q, 10)
        recalls.append(len({h.key for h in hits} & set(brute(v, keys, q, 10))) / 10)
        for flt, sel in (
            (where(genres=[f"G{j % 10}"]), [i % 10 == j % 10 for i in range(n)]),
            (where(min_valence=0.99), [i % 7 == 6 for i in range(n)]),
            (where(genres=["g1"], max_valence=0.0), [i % 70 == 21 for i in range(n)]),
        ):
            idx = [i for i in range(n) if sel[i]]
            got = await s.search(TRACKS_TEXT, q, 10, flt)
            assert len(got) == 10
            scores = [h.score for h in got]
            assert scores == sorted(scores, reverse=True)
            exact = set(brute(v[idx], [keys[i] for i in idx], q, 10))
            recalls.append(len({h.key for h in got} & exact) / 10)
    assert float(np.mean(recalls)) >= 0.95
    await s.close()


async def test_capacity_grows_past_10k(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    v = unit(rng, 12_000)
    s = FileStore(tmp_path, DIM)
    await s.open()
    for start in range(0, 12_000, 4000):
        await s.upsert(TRACKS_AUDIO, [Point(f"k{i}", v[i], {}) for i in range(start, start + 4000)])
    assert await s.count(TRACKS_AUDIO) == 12_000
    assert [h.key for h in await s.search(TRACKS_AUDIO, v[11_999], 1)] == ["k11999"]
    await s.close()


async def test_existing_data_with_other_dim_is_refused(tmp_path: Path) -> None:
    s = FileStore(tmp_path, DIM)
    await s.open()
    await s.upsert(TRACKS_TEXT, [Point("a", np.ones(DIM, np.float32), {})])
    await s.close()
    other = FileStore(tmp_path, 8)
    with pytest.raises(StorageNotReady, match="holds 16-d vectors but the model gives 8-d"):
        await other.open()
    again = FileStore(tmp_path, DIM)  # the failed open released the lock
    await again.open()
    await again.close()


async def test_second_process_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    a = FileStore(tmp_path, DIM)
    await a.open()
    with pytest.raises(StorageNotReady, match="in use by another process"):
        await FileStore(tmp_path, DIM).open()
    other_prefix = FileStore(tmp_path, DIM, "p")
    await other_prefix.open()
    await other_prefix.close()
    await a.close()


async def test_sqlite_is_wal_and_rows_match(tmp_path: Path) -> None:
    s = FileStore(tmp_path, DIM)
    await s.open()
    await s.upsert(TRACKS_TEXT, [Point("a/b", np.ones(DIM, np.float32), {"x": "ü"})])
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    [(key, payload)] = db.execute("SELECT key, payload FROM points").fetchall()
    assert key == "a/b" and json.loads(payload) == {"x": "ü"}
    db.close()
    await s.close()


async def test_not_open_is_storage_not_ready(tmp_path: Path) -> None:
    s = FileStore(tmp_path, DIM)
    with pytest.raises(StorageNotReady):
        await s.count(TRACKS_TEXT)
    assert not (await s.stats()).connected


async def test_factory(tmp_path: Path) -> None:
    store = await open_store(StorageSettings(data_dir=tmp_path, collection_prefix="x"), DIM)
    assert isinstance(store, FileStore) and store.prefix == "x"
    await store.close()
    q = make_store(
        StorageSettings(mode="qdrant", url="http://example:6334", api_key="k"),
        DIM,  # type: ignore[arg-type]
    )
    assert isinstance(q, QdrantStore) and q.api_key == "k" and q.url == "http://example:6334"
