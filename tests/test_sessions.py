"""Streaming sessions on the bus: takeover by another worker, limits, bounded memory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import nats
import numpy as np
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from insight.bus import subjects
from insight.bus.client import BusClient
from insight.bus.connection import flush_subscriptions
from insight.bus.embedded import EmbeddedNats
from insight.errors import InsightError
from insight.runtime import Worker
from tests.busutil import WorkerProcess, in_process_worker

RATE = 44_100


def pcm(seconds: float, seed: int) -> bytes:
    """Stereo s16 noise with some tone: a plausible 44.1 kHz track."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    mono = 0.3 * np.sin(2 * np.pi * (220 + 40 * seed) * t) + 0.05 * rng.standard_normal(n)
    stereo = np.stack([mono, 0.8 * mono], axis=1)
    return (np.clip(stereo, -1, 1) * 32767).astype("<i2").tobytes()


def chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    out, pos = [], 0
    for size in sizes:
        size -= size % 4  # whole stereo s16 frames
        out.append(data[pos : pos + size])
        pos += size
    out.append(data[pos:])
    return [c for c in out if c]


START = {
    "metadata": {"name": "Streamed", "artists": ["Band"], "genres": ["rock"]},
    "format": "pcm_s16_le",
    "sample_rate": RATE,
    "channels": 2,
}


async def stream(bus: BusClient, track_id: str, pieces: list[bytes]) -> dict[str, Any]:
    sid = (await bus.call("insight.v1.stream.start", {"track_id": track_id, **START}))["session_id"]
    for piece in pieces:
        await bus.call("insight.v1.stream.frames", {"session_id": sid, "data": piece})
    return dict(await bus.call("insight.v1.stream.end", {"session_id": sid}))


async def audio_vector(bus: BusClient, track_id: str) -> np.ndarray:
    reply = await bus.call("insight.v1.tracks.get", {"track_id": track_id, "include_audio": True})
    return np.asarray(reply["audio_embedding"], dtype=np.float64)


@pytest_asyncio.fixture
async def client(nats_server: EmbeddedNats) -> AsyncIterator[tuple[NATS, BusClient]]:
    nc = await nats.connect(nats_server.url)
    yield nc, BusClient(nc, timeout=60)
    await nc.close()


@pytest_asyncio.fixture
async def worker(
    nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> AsyncIterator[Worker]:
    w = await in_process_worker(
        nats_server.url,
        tmp_path / "w",
        tiny_model_dir,
        stream={"max_sessions": 2, "max_buffered_s": 30.0},
    )
    yield w
    await w.stop()


async def test_chunking_does_not_change_the_vector(
    client: tuple[NATS, BusClient], worker: Worker
) -> None:
    _, bus = client
    audio = pcm(23.0, seed=1)
    rng = np.random.default_rng(3)
    one = await stream(bus, "one", [audio])
    many = await stream(bus, "many", chunks(audio, list(rng.integers(1_000, 200_000, 40))))
    assert one["windows_processed"] == many["windows_processed"] == 3  # 0-10, 10-20, tail
    assert one["duration_s"] == pytest.approx(23.0)
    a, b = await audio_vector(bus, "one"), await audio_vector(bus, "many")
    assert float(a @ b) >= 0.99999


async def test_session_survives_its_worker(
    client: tuple[NATS, BusClient],
    nats_server: EmbeddedNats,
    tmp_path: Path,
    tiny_model_dir: Path,
) -> None:
    """Worker A owns the session and is SIGKILLed mid-stream; B takes it over at end."""
    nc, bus = client
    audio = pcm(25.0, seed=2)
    pieces = chunks(audio, [RATE * 4 * 3] * 8)  # 3 s chunks
    # two private stores on purpose (a Qdrant stand-in): the store lease, which refuses that
    # outside tests, is off here (tests/test_store_lease.py covers it)
    off = {"INSIGHT_STORAGE__LEASE_TTL_S": "0"}
    a = WorkerProcess(nats_server.url, tmp_path / "a", tiny_model_dir, **off).start()
    b = WorkerProcess(nats_server.url, tmp_path / "b", tiny_model_dir, **off)
    try:
        await a.ready(nc)
        sid = (await bus.call("insight.v1.stream.start", {"track_id": "moved", **START}))[
            "session_id"
        ]
        for piece in pieces[:4]:
            await bus.call("insight.v1.stream.frames", {"session_id": sid, "data": piece})
        b.start()
        await b.ready(nc)
        a.kill()
        await a.gone(nc, instances=1)  # a request routed to a dying connection is lost
        for piece in pieces[4:]:
            reply = await bus.call("insight.v1.stream.frames", {"session_id": sid, "data": piece})
        assert reply["buffered_seconds"] == pytest.approx(25.0)
        ended = await bus.call("insight.v1.stream.end", {"session_id": sid})
        assert ended["audio_stored"] and ended["windows_processed"] == 3
        moved = await audio_vector(bus, "moved")
        whole = await stream(bus, "whole", [audio])
        assert whole["windows_processed"] == 3
        assert float(moved @ await audio_vector(bus, "whole")) >= 0.99999
    finally:
        a.kill()
        b.stop()


async def test_limits_and_errors(client: tuple[NATS, BusClient], worker: Worker) -> None:
    nc, bus = client

    async def err(subject: str, body: dict[str, Any]) -> InsightError:
        with pytest.raises(InsightError) as exc:
            await bus.call(subject, body)
        return exc.value

    s1 = (await bus.call("insight.v1.stream.start", {"track_id": "t1", **START}))["session_id"]
    await bus.call("insight.v1.stream.start", {"track_id": "t2", **START})
    e = await err("insight.v1.stream.start", {"track_id": "t3", **START})
    assert e.status == 429 and "INSIGHT_STREAM__MAX_SESSIONS" in e.message
    e = await err("insight.v1.stream.start", {"track_id": "t1", **START, "replace_existing": False})
    assert e.status == 409 and "t1" in e.message

    e = await err("insight.v1.stream.frames", {"session_id": s1, "data": b"\x00\x01\x02"})
    assert e.status == 400 and "4-byte frames" in e.message
    e = await err("insight.v1.stream.frames", {"session_id": s1, "data": pcm(31.0, 0)})
    assert e.status == 413 and "INSIGHT_STREAM__MAX_BUFFERED_S" in e.message
    e = await err("insight.v1.stream.frames", {"session_id": "not-a-uuid", "data": b""})
    assert e.status == 400 and "UUID" in e.message
    unknown = "0b4e28ba-2fa1-11d2-883f-0016d3cca427"
    for subject in (
        "insight.v1.stream.frames",
        "insight.v1.stream.end",
        "insight.v1.stream.status",
        "insight.v1.stream.abort",
    ):
        e = await err(subject, {"session_id": unknown, "data": b""})
        assert e.status == 404 and unknown in e.message
    e = await err("insight.v1.stream.start", {"track_id": "t4", **START, "format": "mp3"})
    assert e.status == 400 and "format" in e.message

    # replace_existing (the default) aborts the old session of the same track
    s1b = (await bus.call("insight.v1.stream.start", {"track_id": "t1", **START}))["session_id"]
    status = await bus.call("insight.v1.stream.status", {"session_id": s1})
    assert status["status"] == "aborted" and s1b != s1
    e = await err("insight.v1.stream.frames", {"session_id": s1, "data": pcm(1, 0)})
    assert e.status == 409 and "aborted" in e.message

    await bus.call("insight.v1.stream.frames", {"session_id": s1b, "data": pcm(4, 0)})
    ended = await bus.call("insight.v1.stream.end", {"session_id": s1b, "min_duration_s": 5})
    assert not ended["audio_stored"] and ended["text_stored"]  # under min_duration_s
    e = await err("insight.v1.stream.frames", {"session_id": s1b, "data": pcm(1, 0)})
    assert e.status == 409 and "completed" in e.message
    info = await nc.jetstream().stream_info("INSIGHT_AUDIO")
    assert info.state.messages == 0  # frames of ended and aborted sessions are purged


async def test_owner_memory_stays_bounded(client: tuple[NATS, BusClient], worker: Worker) -> None:
    _, bus = client
    sid = (await bus.call("insight.v1.stream.start", {"track_id": "long", **START}))["session_id"]
    live = worker.app.services.sessions.live[sid]
    piece = pcm(2.0, seed=4)
    for _ in range(14):
        reply = await bus.call("insight.v1.stream.frames", {"session_id": sid, "data": piece})
        assert live.cutter.buf.shape[0] <= live.cutter.window + 2 * 48_000
    assert reply["windows_completed"] == 2 and len(live.vectors) == 2
    await bus.call("insight.v1.stream.abort", {"session_id": sid})
    assert sid not in worker.app.services.sessions.live


async def test_idle_sessions_time_out(client: tuple[NATS, BusClient], worker: Worker) -> None:
    _, bus = client
    manager = worker.app.services.sessions
    sid = (await bus.call("insight.v1.stream.start", {"track_id": "idle", **START}))["session_id"]
    manager.cfg = manager.cfg.model_copy(update={"idle_timeout_s": 0.01})
    await asyncio.sleep(0.05)
    assert await manager.sweep() == 1
    status = await bus.call("insight.v1.stream.status", {"session_id": sid})
    assert status["status"] == "aborted"
    raw = await bus.nc.request("insight.v1.stream.status", msgpack.packb({"session_id": sid}))
    assert msgpack.unpackb(raw.data)["status"] == "aborted"


async def test_end_announces_the_analyzed_track(
    client: tuple[NATS, BusClient], worker: Worker
) -> None:
    nc, bus = client
    sub = await nc.subscribe(subjects.TRACK_ANALYZED)
    await flush_subscriptions(nc)
    ended = await stream(bus, "announced", [pcm(12.0, seed=5)])
    msg = await sub.next_msg(timeout=5)
    note = msgpack.unpackb(msg.data)
    assert note["track_id"] == "announced" and note["source"] == "stream"
    assert note["audio_stored"] is True and note["text_stored"] is True
    assert note["primary_mood"] == ended["primary_mood"] and note["primary_mood"]
    assert note["model_id"] == worker.app.require_pool().model.model_id


async def test_frames_without_their_stream_get_a_retryable_503(
    client: tuple[NATS, BusClient], worker: Worker
) -> None:
    """The audio stream is gone (a node lost, a leader not yet elected, an operator's delete):
    the caller is told the bus is unavailable and may retry, not "internal error"."""
    nc, bus = client
    sid = (await bus.call("insight.v1.stream.start", {"track_id": "gone", **START}))["session_id"]
    await bus.call("insight.v1.stream.frames", {"session_id": sid, "data": pcm(1.0, 0)})
    await nc.jetstream().delete_stream(subjects.AUDIO_STREAM)
    with pytest.raises(InsightError) as exc:
        await bus.call("insight.v1.stream.frames", {"session_id": sid, "data": pcm(1.0, 1)})
    assert exc.value.status == 503 and exc.value.code == "BUS_UNAVAILABLE"
    assert "retry" in exc.value.message
    status = await bus.call("insight.v1.stream.status", {"session_id": sid})
    assert status["buffered_seconds"] == pytest.approx(1.0)  # the refused frames count nothing
