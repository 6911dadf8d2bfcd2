"""Replays of Music Assistant traces through ``insight ma-bridge`` into a real worker.

Each trace is a sequence of real ``music-assistant-models`` objects serialised as MA sends them
(tests/ma_traces.py), played by a loopback MA (tests/fake_music_assistant.py) whose library
follows the trace, so a backfill reads what MA holds at that moment. After each trace the store
and the listening history must be exactly what MA's own state says, with no event dead-lettered,
also when the worker is SIGKILLed mid-trace and restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import ma_traces as mt
import nats
import pytest
import pytest_asyncio
from fake_music_assistant import FakeMusicAssistant
from ma_replay_traces import (
    DISCONNECT_CHECKS,
    TRACES,
    USER,
    Ma,
    ReplayClock,
    received,
)
from music_assistant_models.media_items import Track
from nats.aio.client import Client as NATS

from insight.bus import subjects
from insight.bus.embedded import EmbeddedNats
from insight.bus.streams import ensure_streams
from insight.config import StorageSettings
from insight.history import ListeningHistory
from insight.integrations.music_assistant import BridgeOptions, MusicAssistantBridge
from insight.storage.base import TRACKS_TEXT, VectorStore
from insight.storage.factory import open_store
from tests.busutil import WorkerProcess, drained, in_process_worker

pytestmark = pytest.mark.timeout(180)

# --- harness --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def ma_bridge(
    nc: NATS,
    checkpoint: Callable[[str], Awaitable[None]],
    library: list[Track] | None = None,
    page_size: int = 500,
) -> AsyncIterator[Ma]:
    fake = FakeMusicAssistant(mt.library_dicts(library or []))
    await fake.start()
    clock = ReplayClock()
    opts = BridgeOptions(
        clock=clock,
        backoff_min_s=0.05,
        backoff_max_s=0.2,
        backfill_on_connect=bool(library),
        page_size=page_size,
    )
    bridge = MusicAssistantBridge(fake.url, fake.token, nc, opts)
    task = asyncio.create_task(bridge.run())
    try:
        await asyncio.wait_for(fake.authed.wait(), 10)
        await asyncio.wait_for(bridge.connected.wait(), 10)
        yield Ma(fake, bridge, checkpoint, clock)
        await received(fake, bridge)
    finally:
        bridge.stop()
        await asyncio.wait_for(task, 10)
        await fake.stop()


async def settle(nc: NATS, instance_id: str | None = None) -> None:
    js = nc.jetstream()
    await drained(js, subjects.LIBRARY_CONSUMER)
    if instance_id is not None:
        await drained(js, subjects.playback_consumer(instance_id))


async def store_state(store: VectorStore) -> dict[str, tuple[str, list[str]]]:
    out, offset = {}, None
    while True:
        points, offset = await store.scroll(TRACKS_TEXT, offset=offset, limit=500)
        out.update({p.key: (p.payload["name"], p.payload["genres"]) for p in points})
        if offset is None:
            return out


async def history_state(history: ListeningHistory, users: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for user in users:
        plays = await history.plays(user)
        out[user] = {
            "plays": sorted(
                (p.track_id, p.seconds_played, p.fully_played, p.skipped) for p in plays
            ),
            "favorites": await history.favorite_ids(user),
        }
    return out


async def dlq_count(nc: NATS) -> int:
    info = await nc.jetstream().stream_info(subjects.DLQ_STREAM)
    return int(info.state.messages)


async def nothing(label: str) -> None:
    return None


# --- in-process worker ----------------------------------------------------------------------


@pytest_asyncio.fixture
async def worker_nc(
    nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> AsyncIterator[tuple[Any, NATS]]:
    worker = await in_process_worker(nats_server.url, tmp_path / "w", tiny_model_dir)
    nc = await nats.connect(nats_server.url)
    try:
        yield worker, nc
    finally:
        await nc.drain()
        await worker.stop()


def same_store(got: dict[str, tuple[str, list[str]]], want: dict[str, Any]) -> bool:
    if set(got) != set(want):
        return False
    return all(
        got[k][0] == name and (genres is None or got[k][1] == genres)
        for k, (name, genres) in want.items()
    )


@pytest.mark.parametrize("name", list(TRACES))
async def test_trace_ends_as_ma_says(worker_nc: tuple[Any, NATS], name: str) -> None:
    worker, nc = worker_nc
    trace = TRACES[name]
    history = worker.app.services.history

    async def check(label: str) -> None:
        if label in DISCONNECT_CHECKS:  # what the store holds while MA's changes are missed
            await settle(nc, worker.app.instance_id)
            uris, favorites = DISCONNECT_CHECKS[label]
            assert sorted(await store_state(worker.app.require_store())) == uris
            assert await history.favorite_ids(USER) == favorites

    async with ma_bridge(nc, check, trace.library, trace.page_size) as ma:
        await trace.run(ma)
    await settle(nc, worker.app.instance_id)
    if trace.store is not None:
        got = await store_state(worker.app.require_store())
        assert same_store(got, trace.store), got
    assert await history_state(history, list(trace.history)) == trace.history
    assert await dlq_count(nc) == 0


# --- a worker process, SIGKILLed at every checkpoint -----------------------------------------


@pytest.mark.parametrize("name", list(TRACES))
async def test_trace_survives_sigkilled_workers(
    nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path, name: str
) -> None:
    trace = TRACES[name]
    nc = await nats.connect(nats_server.url)
    await ensure_streams(nc.jetstream())
    data_dir = tmp_path / "worker"
    procs = [WorkerProcess(nats_server.url, data_dir, tiny_model_dir).start()]
    await procs[-1].ready(nc)
    kills = 0

    async def kill_and_restart(label: str) -> None:
        nonlocal kills
        await asyncio.sleep(0.05 * (kills + 1))  # let it be in the middle of the work
        procs[-1].kill()
        kills += 1
        procs.append(WorkerProcess(nats_server.url, data_dir, tiny_model_dir).start())
        await procs[-1].ready(nc)

    try:
        async with ma_bridge(nc, kill_and_restart, trace.library, trace.page_size) as ma:
            await trace.run(ma)
        instance = (data_dir / "instance-id").read_text().strip()
        await settle(nc, instance)
    finally:
        procs[-1].stop()
    assert kills == 2
    if trace.store is not None:
        db = await open_store(StorageSettings(data_dir=data_dir), dim=512)
        try:
            got = await store_state(db)
            assert same_store(got, trace.store), got
            assert await db.count(TRACKS_TEXT) == len(trace.store)
        finally:
            await db.close()
    listening = ListeningHistory(data_dir / "history.db")
    await listening.open()
    try:
        assert await history_state(listening, list(trace.history)) == trace.history
    finally:
        await listening.close()
    assert await dlq_count(nc) == 0
    await nc.drain()
