"""A 3-node NATS cluster (R3), a store node and two inference workers: one NATS node and one
inference worker are killed mid-scan and mid-stream; nothing is lost or done twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext

from insight.bus import subjects
from insight.bus.client import BusClient
from insight.errors import InsightError
from insight.scale.remote import RemoteInference
from insight.scale.scan import ScanDispatch
from insight.scale.scanwire import SCAN_STREAM
from insight.watcher.state import DONE
from tests.audio_files import write_track
from tests.busutil import drained, in_process_worker, stored_names, track_event
from tests.scaleutil import InferenceProcess, NatsCluster, wait_workers
from tests.test_scale_scan import part, process_of
from tests.test_sessions import START, pcm

FILES = 6
EVENTS = 8
R3 = (
    subjects.EVENTS_STREAM,
    subjects.AUDIO_STREAM,
    SCAN_STREAM,
    f"KV_{subjects.SESSIONS_BUCKET}",
    f"KV_{subjects.VERSIONS_BUCKET}",
    f"KV_{subjects.STORE_LEASE_BUCKET}",
)


async def stream_info(js: JetStreamContext, name: str, within_s: float = 60.0) -> Any:
    """Stream info, asked again while the cluster elects new leaders after a node's loss
    (a JetStream API request can time out then, as it would for any client)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return await js.stream_info(name)
        except NatsTimeout:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


async def call(bus: BusClient, subject: str, body: dict[str, Any], within_s: float = 90) -> Any:
    """A client that retries what a server's loss interrupted (timeouts, 503s) for a while."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        try:
            return await bus.call(subject, body)
        except InsightError as err:
            if err.status < 500 or loop.time() > deadline:
                raise
            await asyncio.sleep(1.0)


@pytest.mark.asyncio
async def test_cluster_loses_a_nats_node_and_an_inference_worker(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    lib = tmp_path / "lib"
    for i in range(FILES):
        write_track(lib / f"t{i}.flac", seconds=12.0, freq=200.0 + 60 * i)
    cluster = NatsCluster(tmp_path / "cluster")
    procs: list[InferenceProcess] = []
    store = None
    nc = None
    try:
        await cluster.start()
        env = {
            "INSIGHT_NATS__REPLICAS": "3",
            "INSIGHT_WATCHER__SCAN_ACK_WAIT_S": "3",
            "INSIGHT_WATCHER__WORKERS": "1",
        }
        procs = [
            InferenceProcess(cluster.url, tmp_path / f"inf{i}", tiny_model_dir, **env).start()
            for i in range(2)
        ]
        store = await in_process_worker(
            cluster.url,
            tmp_path / "store",
            tiny_model_dir,
            nats={"replicas": 3},
            inference={"heartbeat_s": 0.5, "remote_timeout_s": 10.0},
            watcher={"folders": [str(lib)], "scan_ack_wait_s": 3.0},
        )
        app = store.app
        remote, dispatch = part(store, RemoteInference), part(store, ScanDispatch)
        ids = await wait_workers(remote, app.require_pool().model.model_id, 2, procs)
        nc = await nats.connect(servers=cluster.urls, max_reconnect_attempts=-1)
        js = nc.jetstream()
        for name in R3:
            info = await stream_info(js, name)
            assert info.config.num_replicas == 3, name
        for i in range(EVENTS):
            uri = f"library://track/{i}"
            await js.publish(
                subjects.TRACK_ADDED, track_event(uri, f"Song {i}"), headers={"Nats-Msg-Id": uri}
            )
        bus = BusClient(nc, timeout=30)
        audio = pcm(24.0, seed=3)
        half = len(audio) // 2 - (len(audio) // 2) % 4
        sid = (await call(bus, "insight.v1.stream.start", {"track_id": "s1", **START}))[
            "session_id"
        ]
        frames = "insight.v1.stream.frames"  # with offsets: a retried request is stored once
        await call(bus, frames, {"session_id": sid, "data": audio[:half], "offset": 0})

        watcher = app.services.watcher
        watcher.scan()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while not any(dispatch.by_node[w] for w in ids):
            assert loop.time() < deadline, dict(dispatch.by_node)
            await asyncio.sleep(0.02)
        victim = next(w for w in ids if dispatch.by_node[w])
        process_of(remote, procs, victim).kill()
        assert app.nc is not None
        cluster.kill(cluster.index_of(app.nc.connected_url))  # the store node's own server

        await call(bus, frames, {"session_id": sid, "data": audio[half:], "offset": half})
        ended = await call(bus, "insight.v1.stream.end", {"session_id": sid})
        assert ended["audio_stored"] and ended["duration_s"] == pytest.approx(24.0, abs=0.01)
        await watcher.wait_idle(within_s=240)

        rows = watcher.state.all()
        assert [r.status for r in rows] == [DONE] * FILES, [(r.path, r.error) for r in rows]
        assert watcher.outcomes["analyzed"] == FILES  # each file stored once
        # each work id applied once (a file done while no worker was heard is analysed here)
        assert sum(dispatch.by_node.values()) <= FILES
        # nothing left behind: a job whose ack was lost with a node comes back after the ack
        # wait, and its second result is answered "duplicate" (not applied) and acked
        for _ in range(150):
            if (await stream_info(js, SCAN_STREAM)).state.messages == 0:
                break
            await asyncio.sleep(0.2)
        assert (await stream_info(js, SCAN_STREAM)).state.messages == 0
        assert watcher.outcomes["analyzed"] == FILES
        await drained(js, subjects.LIBRARY_CONSUMER, timeout=120)
        assert (await stream_info(js, subjects.EVENTS_STREAM)).state.messages == EVENTS
        names = await stored_names(store)
        assert {f"library://track/{i}" for i in range(EVENTS)} <= set(names)
        for name in R3:  # every replicated stream is still there, with its replicas
            assert (await stream_info(js, name)).config.num_replicas == 3, name
    finally:
        if nc is not None:
            await nc.close()
        if store is not None:
            await asyncio.wait_for(store.stop(), 60)
        for proc in procs:
            proc.stop()
        cluster.stop()
