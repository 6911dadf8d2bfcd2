"""A background scan is polite: low-priority capped threads, bulk work apart from interactive."""

from __future__ import annotations

import asyncio
import ctypes
import platform
import threading
from pathlib import Path

import numpy as np
from conftest import make_settings, start_running, stop_running
from test_watcher import start_stack

from insight.config import InferenceSettings, ModelSettings
from insight.inference.clap import ClapModel
from insight.inference.pool import InferencePool
from insight.testing import build_tiny_clap
from insight.watcher.polite import default_threads, polite_executor
from insight.watcher.service import WatcherService
from tests.audio_files import write_track

_IOPRIO_GET = {"x86_64": 252, "aarch64": 31}


def nice_of(tid: int) -> int:
    """The nice value the kernel holds for thread ``tid`` (field 19 of its stat)."""
    stat = Path(f"/proc/self/task/{tid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def ioprio_of(tid: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(_IOPRIO_GET[platform.machine()], 1, tid))


def test_polite_threads_lower_their_own_priority_only() -> None:
    caller = nice_of(threading.get_native_id())  # 0 unless the suite itself runs niced
    ex = polite_executor(2, 15)
    try:
        tids = {ex.submit(threading.get_native_id).result() for _ in range(4)}
        assert all(nice_of(t) == 15 for t in tids)
        assert all(ioprio_of(t) == (2 << 13) | 7 for t in tids)  # best-effort, level 7
        assert nice_of(threading.get_native_id()) == caller  # the caller is untouched
    finally:
        ex.shutdown(wait=True)


def test_default_thread_cap() -> None:
    assert [default_threads(n) for n in (1, 2, 4, 8, 16)] == [1, 1, 1, 2, 4]


async def test_serve_watcher_decodes_on_low_priority_threads(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    root = tmp_path / "m"
    write_track(root / "a.flac", seconds=3)
    r = await start_stack(tmp_path / "data", tiny_model_dir, folders=[str(root)], nice=12)
    try:
        w: WatcherService = r.app.services.watcher
        assert w.background and w.files.bulk
        result = await w.analyze(root / "a.flac")
        assert result.windows >= 1
        threads = list(w.executor._threads)  # the threads that decoded the file
        assert 1 <= len(threads) <= default_threads()
        assert all(t.native_id is not None and nice_of(t.native_id) == 12 for t in threads)
        w.foreground()  # `insight scan`: normal priority
        await w.analyze(root / "a.flac")
        fg = list(w.executor._threads)
        assert fg and all(t.native_id is not None and nice_of(t.native_id) == 0 for t in fg)
        assert not w.files.bulk
    finally:
        await stop_running(r)


async def test_interactive_work_never_waits_for_bulk(tmp_path: Path) -> None:
    model = ClapModel.load(build_tiny_clap(tmp_path / "m"), ModelSettings(threads=1), "m")
    pool = InferencePool(model, InferenceSettings(runners=1, bulk_batch=1))
    await pool.start()
    try:
        windows = (0.1 * np.random.default_rng(5).standard_normal((3, 96_000))).astype(np.float32)
        await pool._bulk_slots.acquire()  # every bulk runner is busy (a slow window, say)
        bulk = asyncio.create_task(pool.embed_windows(windows, bulk=True))
        await asyncio.sleep(0.05)
        text = await asyncio.wait_for(pool.embed_texts(["calm piano"]), 10)
        stream = await asyncio.wait_for(pool.embed_windows(windows[:1]), 10)
        assert text.shape == (1, model.dim) and stream.shape == (1, model.dim)
        assert not bulk.done()  # still held back, while interactive work went through
        pool._bulk_slots.release()
        got = await asyncio.wait_for(bulk, 10)
        np.testing.assert_allclose(got[:1], stream, atol=1e-5)
    finally:
        await pool.close()


async def test_bulk_embeds_in_small_batches_with_equal_vectors(tmp_path: Path) -> None:
    model = ClapModel.load(build_tiny_clap(tmp_path / "m"), ModelSettings(threads=1), "m")
    pool = InferencePool(model, InferenceSettings(max_batch=16, bulk_batch=2))
    await pool.start()
    try:
        rng = np.random.default_rng(3)
        windows = (0.1 * rng.standard_normal((7, 96_000))).astype(np.float32)
        direct = await pool.embed_windows(windows)
        bulk, text = await asyncio.gather(
            pool.embed_windows(windows, bulk=True), pool.embed_texts(["calm piano"])
        )
        assert bulk.shape == direct.shape and text.shape == (1, model.dim)
        np.testing.assert_allclose(bulk, direct, atol=1e-5)
        assert pool.stats.batch_sizes["audio"][0] == 7
        assert sorted(pool.stats.batch_sizes["audio"][1:]) == [1, 2, 2, 2]
    finally:
        await pool.close()


async def test_settings_reach_the_service(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = make_settings(tmp_path / "d", tiny_model_dir, watcher={"threads": 3, "nice": 19})
    r = await start_running(settings)
    try:
        w: WatcherService = r.app.services.watcher
        tids = {
            await asyncio.get_running_loop().run_in_executor(w.executor, threading.get_native_id)
            for _ in range(3)
        }
        assert w.executor._max_workers == 3
        assert all(nice_of(t) == 19 for t in tids)
    finally:
        await stop_running(r)
