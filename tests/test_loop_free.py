"""Slow steps of a model migration that keep the event loop free: InferencePool.close
waiting for a batch still in its thread (cancel, switch) and known_jobs over many ids."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from insight.config import InferenceSettings, ModelSettings
from insight.inference.clap import ClapModel
from insight.inference.pool import InferencePool
from insight.watcher.files import known_jobs
from insight.watcher.state import DONE, FileRow, WatcherState


async def test_close_waits_for_a_running_batch_off_the_event_loop(tiny_model_dir: Path) -> None:
    model = ClapModel.load(tiny_model_dir, ModelSettings(threads=1), "a")
    pool = InferencePool(model, InferenceSettings())
    await pool.start()
    freed = threading.Event()
    ran: list[bool] = []

    def batch() -> None:  # a batch in the pool's thread that ends when the loop ticks
        ran.append(freed.wait(10))

    loop = asyncio.get_running_loop()
    running = loop.run_in_executor(pool._executor, batch)
    await asyncio.sleep(0.05)

    async def ticker() -> None:
        for _ in range(3):
            await asyncio.sleep(0.02)
        freed.set()

    tick = asyncio.create_task(ticker())
    await asyncio.wait_for(pool.close(), 30)
    await tick
    await running
    assert ran == [True]  # the loop ran while close waited: the batch was freed by it
    assert pool._executor is None


async def test_known_jobs_lets_the_event_loop_run(tmp_path: Path) -> None:
    """Listing the files of many track ids (a migration's audio phase) runs off the loop."""
    state = WatcherState(tmp_path / "watcher.db")
    try:
        for i in range(2500):
            f = tmp_path / f"{i}.flac"
            if i % 2 == 0:  # half of them are still on disk
                f.write_bytes(b"x")
            row = FileRow(str(f), str(tmp_path), f"t{i}", 1, 1, "h", DONE, None, "full")
            state.put(row)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        jobs = await known_jobs(state, {f"t{i}" for i in range(2500)}, None)
        tick.cancel()
        assert sorted(j.track_id or "" for j in jobs) == sorted(f"t{i}" for i in range(0, 2500, 2))
        assert all(j.force and j.into is None for j in jobs)
        assert ticks >= 3  # one chunk of 1000 ids at a time, the loop ran between them
    finally:
        state.close()
