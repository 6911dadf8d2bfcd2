"""8 writers + 8 searchers at once for a few seconds: no error, exact final state."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

import numpy as np
import pytest

from insight.storage.base import TRACKS_TEXT, Point, VectorStore
from insight.storage.file import FileStore
from insight.storage.file_match import matches
from insight.storage.qdrant import QdrantStore
from insight.storage.where import where

DIM = 32
GENRES = ["rock", "jazz", "pop", "folk"]


def vec(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("kind", ["file", "qdrant"])
async def test_writers_and_searchers(tmp_path: Path, kind: str) -> None:
    duration = 3.0 if kind == "file" else 2.0
    store: VectorStore
    if kind == "file":
        # small exact_max: searches go through usearch while it is being written and saved
        store = FileStore(tmp_path, DIM, exact_max=64, save_interval_s=0.2)
    else:
        store = QdrantStore(DIM, location=":memory:")
    await store.open()
    deadline = time.monotonic() + duration
    expected: dict[str, str] = {}  # key -> genre of its last acknowledged write
    searches = 0

    async def writer(w: int) -> None:
        r = random.Random(w)
        rng = np.random.default_rng(w)
        mine: list[str] = []
        n = 0
        while time.monotonic() < deadline:
            roll = r.random()
            await asyncio.sleep(0)
            if mine and roll < 0.15:
                gone = r.sample(mine, min(len(mine), r.randint(1, 5)))
                deleted = await store.delete(TRACKS_TEXT, gone)
                assert sorted(deleted) == sorted(gone)
                for k in gone:
                    mine.remove(k)
                    del expected[k]
                continue
            if mine and roll < 0.3:
                keys = r.sample(mine, min(len(mine), r.randint(1, 5)))
            else:
                keys = [f"w{w}-{n + i}" for i in range(r.randint(1, 20))]
                n += len(keys)
                mine += keys
            genres = {k: r.choice(GENRES) for k in keys}
            await store.upsert(
                TRACKS_TEXT,
                [Point(k, vec(rng), {"track_id": k, "genres": [genres[k]]}) for k in keys],
            )
            expected.update(genres)
            await asyncio.sleep(0)  # qdrant local mode never yields by itself

    async def searcher(s: int) -> None:
        nonlocal searches
        r = random.Random(100 + s)
        rng = np.random.default_rng(100 + s)
        while time.monotonic() < deadline:
            flt = where(genres=[r.choice(GENRES)]) if r.random() < 0.5 else None
            limit = r.choice([1, 10, 50])
            hits = await store.search(TRACKS_TEXT, vec(rng), limit, flt)
            assert len(hits) <= limit
            assert len({h.key for h in hits}) == len(hits)
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            assert all(matches(h.key, h.payload, flt) for h in hits)
            if r.random() < 0.2:
                await store.count(TRACKS_TEXT)
                await store.get(TRACKS_TEXT, [h.key for h in hits[:3]], with_vectors=True)
            searches += 1
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(w) for w in range(8)), *(searcher(s) for s in range(8)))
    assert searches > 50
    assert await store.count(TRACKS_TEXT) == len(expected)
    got, nxt = await store.scroll(TRACKS_TEXT, limit=100_000)
    assert nxt is None
    assert {p.key: p.payload["genres"][0] for p in got} == expected
    if isinstance(store, FileStore):
        assert await store.verify() == []
        await store.close()
        reopened = FileStore(tmp_path, DIM)
        await reopened.open()
        assert await reopened.count(TRACKS_TEXT) == len(expected)
        assert await reopened.verify() == []
        await reopened.close()
    else:
        await store.close()
