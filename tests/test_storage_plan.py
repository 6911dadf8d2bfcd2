"""The filtered-search plan of the file store: exact scan of the matching rows (int8 codes,
float32 rescoring) or an over-fetching HNSW walk, whichever is cheaper."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from insight.storage.base import TRACKS_TEXT, Point
from insight.storage.file import FileStore
from insight.storage.memtable import CODE_MIN_ROWS, MemTable, int8_codes
from insight.storage.plan import ann_depth, prefer_scan
from insight.storage.where import Where, where


def clustered(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    centres = rng.normal(size=(20, dim))
    x = centres[rng.integers(0, 20, n)] + 0.8 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_plan_scans_selective_filters_and_walks_broad_ones() -> None:
    assert prefer_scan(10, 100_000, 10_000)  # 10 %: the scan is cheaper (and exact)
    assert prefer_scan(10, 100_000, 500)
    assert not prefer_scan(10, 100_000, 50_000)  # half the library: the walk
    assert not prefer_scan(10, 1_000_000, 100_000)
    # the walk fetches 8x the expected depth of the 10th match
    assert ann_depth(10, 100_000, 50_000) == 8 * 10 * 2 + 16


def test_int8_codes_keep_direction() -> None:
    rng = np.random.default_rng(0)
    v = clustered(rng, 50, 64)
    c = int8_codes(v).astype(np.float32)
    assert int8_codes(v).dtype == np.int8 and np.all(np.abs(c).max(axis=1) == 127)
    cos = np.sum(c * v, axis=1) / np.linalg.norm(c, axis=1)
    assert np.all(cos > 0.999)
    assert np.all(int8_codes(np.zeros((1, 64), np.float32)) == 0)


def test_scan_of_a_large_subset_equals_the_exact_top() -> None:
    rng = np.random.default_rng(1)
    n, dim = 3 * CODE_MIN_ROWS, 64
    x = clustered(rng, n, dim)
    t = MemTable(dim)
    t.bulk_load(
        [f"k{i}" for i in range(n)],
        np.arange(n),
        [{"genres": ["a" if i % 2 else "b"]} for i in range(n)],
        x,
    )
    slots = np.flatnonzero(t.mask(Where(genres=frozenset({"a"}))))
    assert slots.size > CODE_MIN_ROWS  # the int8 path
    for q in clustered(rng, 20, dim):
        got = t.scan(slots, q, 10)
        want = t.top(slots, q, 10)
        assert [s for s, _ in got] == [s for s, _ in want]
        np.testing.assert_allclose([s for _, s in got], x[[s for s, _ in got]] @ q, rtol=1e-5)


async def test_filtered_search_through_the_store_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    n, dim = 400, 32
    x = clustered(rng, n, dim)
    store = FileStore(tmp_path, dim, exact_max=16)  # small sets take the planned paths
    await store.open()
    try:
        await store.upsert(
            TRACKS_TEXT,
            [Point(f"k{i}", x[i], {"genres": [f"g{i % 10}"]}) for i in range(n)],
        )
        rows = np.array([i for i in range(n) if i % 10 == 3])
        for q in clustered(rng, 10, dim):
            hits = await store.search(TRACKS_TEXT, q, 10, where(genres=["g3"]))
            want = rows[np.argsort(-(x[rows] @ q), kind="stable")[:10]]
            assert [h.key for h in hits] == [f"k{i}" for i in want]
            assert all(h.payload["genres"] == ["g3"] for h in hits)
    finally:
        await store.close()


def test_term_slots_follow_updates_and_removals() -> None:
    t = MemTable(4)
    v = np.eye(4, dtype=np.float32)
    c = Where(genres=frozenset({"rock"}))
    t.put(0, "a", {"genres": ["Rock"]}, v[0])
    t.put(1, "b", {"genres": ["Jazz"]}, v[1])
    assert np.flatnonzero(t.mask(c)).tolist() == [0]  # the term's slots are now cached
    t.put(1, "b", {"genres": ["rock"]}, v[1])  # b joins
    assert np.flatnonzero(t.mask(c)).tolist() == [0, 1]
    t.put(0, "a", {"genres": ["pop"]}, v[0])  # a leaves
    assert np.flatnonzero(t.mask(c)).tolist() == [1]
    t.remove("b")
    assert np.flatnonzero(t.mask(c)).tolist() == []
    t.put(2, "c", {"genres": ["rock"]}, v[2])
    assert np.flatnonzero(t.mask(c)).tolist() == [2]
