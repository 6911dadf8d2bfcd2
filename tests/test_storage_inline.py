"""Cheap file-store searches run on the event loop (no thread hop), never waiting for a writer."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np

from insight.storage import file_reads as reads
from insight.storage.base import TRACKS_TEXT, Point
from insight.storage.file import FileStore
from insight.storage.rwlock import RWLock
from insight.storage.where import where

DIM = 16


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


async def filled(path: Path, n: int, exact_max: int) -> tuple[FileStore, np.ndarray]:
    rng = np.random.default_rng(7)
    v = unit(rng, n)
    store = FileStore(path, DIM, exact_max=exact_max, expansion_search=128)
    await store.open()
    points = [Point(f"k{i}", v[i], {"genres": [f"g{i % 10}"], "n": i}) for i in range(n)]
    await store.upsert(TRACKS_TEXT, points)
    return store, v


def test_read_now_is_granted_only_without_a_writer() -> None:
    lock = RWLock()
    with lock.read_now() as got, lock.read_now() as also:
        assert got and also  # readers share
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with lock.write():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    with lock.read_now() as got:
        assert not got
    release.set()
    thread.join(10)
    with lock.read_now() as got:
        assert got
    with lock.write():  # every reader let go: a writer gets in at once
        pass


async def test_inline_search_equals_the_threaded_one(tmp_path: Path) -> None:
    for n, exact_max in ((3000, 50), (300, 4096)):  # the HNSW walk, the small exact scan
        store, _ = await filled(tmp_path / str(n), n, exact_max)
        coll = store._coll(TRACKS_TEXT)
        assert coll is not None
        rng = np.random.default_rng(n)
        for q in unit(rng, 10):
            args = (coll, q, 10, None, exact_max, 1)
            now = reads.search_now(*args)
            assert now is not None
            threaded = await asyncio.to_thread(reads.search_collection, *args)
            assert [(h.key, h.score) for h in now] == [(h.key, h.score) for h in threaded]
            got = await store.search(TRACKS_TEXT, q, 10)
            assert [h.key for h in got] == [h.key for h in now]
            assert got[0].payload == {
                "genres": [got[0].payload["genres"][0]],
                "n": int(got[0].key[1:]),
            }
        # filtered, or many hits, is not cheap for sure: a thread does it
        q = unit(rng, 1)[0]
        assert reads.search_now(coll, q, 10, where(genres=["g1"]), exact_max, 1) is None
        assert reads.search_now(coll, q, 101, None, exact_max, 1) is None
        flt = await store.search(TRACKS_TEXT, q, 10, where(genres=["g1"]))
        assert len(flt) == 10 and all(h.payload["genres"] == ["g1"] for h in flt)
        await store.close()
    # a small table above the inline exact bound but under exact_max goes to a thread as well
    store, _ = await filled(tmp_path / "mid", reads.INLINE_MAX_EXACT + 10, 4096)
    coll = store._coll(TRACKS_TEXT)
    assert coll is not None
    assert reads.search_now(coll, unit(rng, 1)[0], 10, None, 4096, 1) is None
    await store.close()


async def test_a_returned_payload_is_the_callers_own(tmp_path: Path) -> None:
    store, v = await filled(tmp_path, 3000, 50)
    first = await store.search(TRACKS_TEXT, v[5], 1)
    assert first[0].key == "k5"
    first[0].payload["genres"].append("mine")
    first[0].payload["n"] = -1
    again = await store.search(TRACKS_TEXT, v[5], 1)
    assert again[0].payload == {"genres": ["g5"], "n": 5}
    got = await store.get(TRACKS_TEXT, ["k5"])
    got[0].payload["genres"].clear()
    assert (await store.get(TRACKS_TEXT, ["k5"]))[0].payload == {"genres": ["g5"], "n": 5}
    await store.close()


async def test_a_search_never_waits_for_a_writer_on_the_event_loop(tmp_path: Path) -> None:
    store, v = await filled(tmp_path, 3000, 50)
    coll = store._coll(TRACKS_TEXT)
    assert coll is not None
    holding, release = threading.Event(), threading.Event()

    def writer() -> None:
        with coll.lock.write():
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    assert holding.wait(10)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick = asyncio.create_task(ticker())
    search = asyncio.create_task(store.search(TRACKS_TEXT, v[42], 5))
    t0 = time.monotonic()
    await asyncio.sleep(0.3)
    assert not search.done()  # it waits for the writer, on a thread
    assert ticks >= 10  # and the loop kept running meanwhile
    release.set()
    hits = await asyncio.wait_for(search, 10)
    assert hits[0].key == "k42" and time.monotonic() - t0 >= 0.3
    tick.cancel()
    thread.join(10)
    await store.close()
