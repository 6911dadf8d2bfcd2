"""InferencePool: micro-batching, equal results, back-pressure, hot swap."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest

from insight.config import InferenceSettings, ModelSettings
from insight.errors import BadRequest, Busy, Conflict, NotReady
from insight.inference.clap import ClapModel
from insight.inference.model import embed_audio
from insight.inference.pool import YIELD_MAX_S, InferencePool
from insight.testing import build_tiny_clap


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[ClapModel, ClapModel]:
    root = tmp_path_factory.mktemp("pool")
    a = ClapModel.load(build_tiny_clap(root / "a", seed=0), ModelSettings(threads=1), "a")
    b = ClapModel.load(build_tiny_clap(root / "b", seed=1), ModelSettings(threads=1), "b")
    a.warmup()
    b.warmup()
    return a, b


@contextlib.asynccontextmanager
async def scan_pool(model: ClapModel) -> AsyncIterator[InferencePool]:
    """A started pool that cuts a scan into one-window batches (closed at the end)."""
    pool = InferencePool(model, InferenceSettings(max_wait_ms=0, bulk_batch=1))
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


def _windows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((n, 96_000))).astype(np.float32)


async def test_concurrent_requests_are_batched(models: tuple[ClapModel, ClapModel]) -> None:
    model = models[0]
    pool = InferencePool(model, InferenceSettings(max_batch=16, max_wait_ms=20))
    await pool.start()
    try:
        texts = [f"track {i} rock" for i in range(24)]
        results = await asyncio.gather(*(pool.embed_texts([t]) for t in texts))
        assert max(pool.stats.batch_sizes["text"]) > 1
        assert max(pool.stats.batch_sizes["text"]) <= 16
        expected = model.embed_text(texts)
        for r, e in zip(results, expected, strict=True):
            assert r.shape == (1, 512)
            np.testing.assert_allclose(r[0], e, atol=1e-5)

        windows = [_windows(2, s) for s in range(5)]
        got = await asyncio.gather(*(pool.embed_windows(w) for w in windows))
        assert max(pool.stats.batch_sizes["audio"]) > 2
        for g, w in zip(got, windows, strict=True):
            np.testing.assert_allclose(g, model.embed_windows(w), atol=1e-5)

        x = np.concatenate([_windows(1, 9)[0]] * 6)  # 576 000 samples
        vec, n = await pool.embed_audio(x, 10.0, 10.0)
        ref, n_ref = embed_audio(model, x, 10.0, 10.0)
        assert n == n_ref == 2
        np.testing.assert_allclose(vec, ref, atol=1e-5)
        assert pool.stats.batches >= 3 and pool.stats.items >= 24 + 10 + 2
        assert (await pool.embed_texts([])).shape == (0, 512)
    finally:
        await pool.close()


async def test_overload_is_busy(models: tuple[ClapModel, ClapModel]) -> None:
    pool = InferencePool(models[0], InferenceSettings(max_batch=4, max_wait_ms=5, max_queue=3))
    await pool.start()
    try:
        results = await asyncio.gather(
            *(pool.embed_texts([f"t{i}"]) for i in range(10)), return_exceptions=True
        )
        busy = [r for r in results if isinstance(r, Busy)]
        ok = [r for r in results if isinstance(r, np.ndarray)]
        assert len(ok) == 3 and len(busy) == 7
        assert "inference queue full (3 pending), retry later" in busy[0].message
        assert busy[0].status == 429
        assert pool.pending == 0
        assert (await pool.embed_texts(["again"])).shape == (1, 512)  # recovers
    finally:
        await pool.close()


async def test_swap_mid_flight_none_fail(models: tuple[ClapModel, ClapModel]) -> None:
    a, b = models
    pool = InferencePool(a, InferenceSettings(max_batch=4, max_wait_ms=1, max_queue=1000))
    await pool.start()
    try:
        texts = [f"song {i}" for i in range(40)]
        va, vb = a.embed_text(texts), b.embed_text(texts)
        tasks = [asyncio.create_task(pool.embed_texts([t])) for t in texts[:20]]
        await asyncio.sleep(0.005)  # > max_wait: the first batch is formed (and its model fixed)
        swap = asyncio.create_task(pool.swap(b))
        tasks += [asyncio.create_task(pool.embed_texts([t])) for t in texts[20:]]
        await swap
        tasks += [asyncio.create_task(pool.embed_texts([t])) for t in ("after swap",)]
        results = await asyncio.gather(*tasks)
        assert pool.model is b
        for i, r in enumerate(results[:40]):
            # every request got a vector of one of the two models, none failed
            assert np.allclose(r[0], va[i], atol=1e-5) or np.allclose(r[0], vb[i], atol=1e-5)
        assert np.allclose(results[0][0], va[0], atol=1e-5)  # in flight before the swap
        np.testing.assert_allclose(results[-1][0], b.embed_text(["after swap"])[0], atol=1e-5)
    finally:
        await pool.close()


async def test_mixed_window_lengths_and_bad_input(models: tuple[ClapModel, ClapModel]) -> None:
    model = models[0]
    pool = InferencePool(model, InferenceSettings(max_batch=16, max_wait_ms=20))
    await pool.start()
    try:
        a, b = _windows(2, 1), _windows(1, 2)[:, :50_000]
        ra, rb = await asyncio.gather(pool.embed_windows(a), pool.embed_windows(b))
        np.testing.assert_allclose(ra, model.embed_windows(a), atol=1e-5)
        np.testing.assert_allclose(rb, model.embed_windows(b), atol=1e-5)
        with pytest.raises(BadRequest):
            await pool.embed_windows(np.zeros((0, 10), np.float32))
        with pytest.raises(BadRequest):
            await pool.embed_audio(np.zeros(0, np.float32), 10.0, 10.0)
        assert (await pool.embed_texts(["still alive"])).shape == (1, 512)
    finally:
        await pool.close()


async def test_windows_cut_at_another_rate_are_refused(
    models: tuple[ClapModel, ClapModel],
) -> None:
    """Audio cut for a model of another family (44.1 kHz) is never embedded at 48 kHz, in the
    same batch as windows cut for this model; those still get their vectors."""
    model = models[0]
    pool = InferencePool(model, InferenceSettings(max_batch=16, max_wait_ms=50))
    await pool.start()
    try:
        w = _windows(2, 3)
        ok, refused = await asyncio.gather(
            pool.embed_windows(w, rate=48_000),
            pool.embed_windows(w, rate=44_100),
            return_exceptions=True,
        )
        assert isinstance(refused, Conflict) and "44100 Hz" in refused.message
        np.testing.assert_allclose(ok, model.embed_windows(w), atol=1e-5)
        bulk = await asyncio.gather(pool.embed_windows(w, True, 44_100), return_exceptions=True)
        assert isinstance(bulk[0], Conflict)  # the scan's lane checks it too
    finally:
        await pool.close()


async def test_not_started_and_closed(models: tuple[ClapModel, ClapModel]) -> None:
    pool = InferencePool(models[0], InferenceSettings())
    with pytest.raises(NotReady):
        await pool.embed_texts(["x"])
    await pool.start()
    await pool.close()
    with pytest.raises(NotReady):
        await pool.embed_texts(["x"])


@pytest.mark.parametrize("runners", [1, 2])
async def test_runners_bound_batches_in_flight(
    models: tuple[ClapModel, ClapModel], runners: int
) -> None:
    """One runner: a text query waits for the audio batch in flight. Two: it runs beside it
    and returns first; the results are the same either way."""
    model = models[0]
    pool = InferencePool(model, InferenceSettings(max_batch=16, max_wait_ms=0, runners=runners))
    await pool.start()
    try:
        done: list[str] = []

        async def audio() -> np.ndarray:
            out = await pool.embed_windows(_windows(150, 4))  # ~0.5 s of mel on one core
            done.append("audio")
            return out

        async def text() -> np.ndarray:
            await asyncio.sleep(0.05)  # the audio batch is running by now
            out = await pool.embed_texts(["calm piano"])
            done.append("text")
            return out

        a, t = await asyncio.gather(audio(), text())
        assert done == (["audio", "text"] if runners == 1 else ["text", "audio"])
        np.testing.assert_allclose(t[0], model.embed_text(["calm piano"])[0], atol=1e-5)
        np.testing.assert_allclose(a[:3], model.embed_windows(_windows(150, 4)[:3]), atol=1e-5)
        assert pool.stats.batches == 2
    finally:
        await pool.close()


async def test_bulk_work_yields_to_interactive_requests(
    models: tuple[ClapModel, ClapModel],
) -> None:
    """While searches keep coming, a background scan's next window waits for a quiet moment
    (at most YIELD_MAX_S per window, so the scan still moves); its vectors are unchanged."""
    model = models[0]
    async with scan_pool(model) as pool:
        windows = _windows(8, 5)
        scan = asyncio.create_task(pool.embed_windows(windows, bulk=True))
        await asyncio.sleep(0)  # its first window is submitted
        bulk_batches = lambda: len(pool.stats.batch_sizes["audio"])  # noqa: E731
        loop = asyncio.get_running_loop()
        seen: list[tuple[float, int]] = []
        start = loop.time()
        while (now := loop.time()) - start < 2.6 * YIELD_MAX_S:  # back-to-back searches
            seen.append((now - start, bulk_batches()))
            await pool.embed_texts(["calm piano"])
        early = max(n for t, n in seen if t < 0.6 * YIELD_MAX_S)
        assert early <= 1, seen  # the window in flight when the searches began, at most
        assert 2 <= bulk_batches() <= 4, seen  # one more per YIELD_MAX_S: never starved
        assert not scan.done()
        got = await scan  # the searches stopped: the rest runs at once
        np.testing.assert_allclose(got, model.embed_windows(windows), atol=1e-5)
        assert pool.stats.bulk_yields >= 2 and pool.stats.bulk_yield_s >= 1.5 * YIELD_MAX_S


async def test_texts_of_a_scan_do_not_hold_it_back(models: tuple[ClapModel, ClapModel]) -> None:
    """The track sentences a scan embeds (``background``) are not interactive requests: its
    windows never wait for them."""
    model = models[0]
    async with scan_pool(model) as pool:
        windows = _windows(8, 6)
        scan = asyncio.create_task(pool.embed_windows(windows, bulk=True))
        while not scan.done():
            got = await pool.embed_texts(["Artist - Song. Album: X"], background=True)
        np.testing.assert_allclose(
            got[0], model.embed_text(["Artist - Song. Album: X"])[0], atol=1e-5
        )
        np.testing.assert_allclose(await scan, model.embed_windows(windows), atol=1e-5)
        assert pool.stats.bulk_yields == 0


async def test_a_pool_closed_while_a_scan_waits_answers_it(
    models: tuple[ClapModel, ClapModel],
) -> None:
    """A scan window held back for interactive requests when the pool closes (a model
    switch) gets NotReady instead of waiting forever."""
    async with scan_pool(models[0]) as pool:

        async def searches() -> None:
            while True:
                await pool.embed_texts(["calm piano"])

        busy = asyncio.create_task(searches())
        await asyncio.sleep(0.05)
        scan = asyncio.create_task(pool.embed_windows(_windows(3, 7), bulk=True))
        await asyncio.sleep(0.2)
        assert not scan.done()  # waiting for a quiet moment
        await pool.close()
        done, _ = await asyncio.wait({scan, busy}, timeout=5)
    assert done == {scan, busy}
    assert isinstance(scan.exception(), NotReady)
    assert isinstance(busy.exception(), NotReady)
