"""Distributed scan: a store node and two inference processes share a folder scan through
the INSIGHT_SCAN work queue; a node killed mid-scan loses nothing, each file is applied once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from insight.bus.embedded import EmbeddedNats
from insight.scale.remote import RemoteInference
from insight.scale.scan import ScanDispatch
from insight.storage.base import TRACKS_AUDIO, scroll_pages
from insight.watcher.analysis import analyze_file
from insight.watcher.state import DONE
from tests.audio_files import write_track
from tests.busutil import in_process_worker
from tests.scaleutil import InferenceProcess, cosine_rows, wait_workers

FILES = 8
ACK_WAIT = "3"


@asynccontextmanager
async def one_file_store(
    lib: Path, data: Path, model: Path, nats_server: EmbeddedNats
) -> AsyncIterator[tuple[Any, Any]]:
    """A store node watching ``lib`` (one 3 s file) and a plain client on its bus; a job
    whose store node does not answer is asked about again after 1 s (the ack wait)."""
    import nats

    write_track(lib / "a.flac", seconds=3.0)
    watcher = {"folders": [str(lib)], "scan_ack_wait_s": 1}
    store = await in_process_worker(nats_server.url, data, model, watcher=watcher)
    nc = await nats.connect(nats_server.url)
    try:
        yield store, nc
    finally:
        await nc.close()
        await store.stop()


def part(worker: Any, cls: type) -> Any:
    found = [c for c in worker.app.services.scale if isinstance(c, cls)]
    assert len(found) == 1, worker.app.services.scale
    return found[0]


@pytest.mark.asyncio
async def test_distributed_scan_applies_every_file_once_through_a_killed_node(
    tmp_path: Path, tiny_model_dir: Path, nats_server: EmbeddedNats
) -> None:
    lib = tmp_path / "lib"
    for i in range(FILES):
        write_track(lib / f"t{i}.flac", seconds=12.0, freq=220.0 + 55 * i)
    env = {"INSIGHT_WATCHER__SCAN_ACK_WAIT_S": ACK_WAIT, "INSIGHT_WATCHER__WORKERS": "1"}
    procs = [
        InferenceProcess(nats_server.url, tmp_path / f"inf{i}", tiny_model_dir, **env).start()
        for i in range(2)
    ]
    store = None
    try:
        store = await in_process_worker(
            nats_server.url,
            tmp_path / "store",
            tiny_model_dir,
            inference={"heartbeat_s": 0.5, "remote_timeout_s": 20.0},
            watcher={"folders": [str(lib)], "scan_ack_wait_s": float(ACK_WAIT)},
        )
        app = store.app
        remote, dispatch = part(store, RemoteInference), part(store, ScanDispatch)
        ids = await wait_workers(remote, app.require_pool().model.model_id, 2, procs)
        assert dispatch.active()
        watcher = app.services.watcher
        watcher.scan()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        victim = ids[0]  # killed once it has analysed a file, with files left to do
        while dispatch.by_node[victim] == 0:
            assert loop.time() < deadline, dict(dispatch.by_node)
            await asyncio.sleep(0.02)
        killed = process_of(remote, procs, victim)
        killed.kill()
        await watcher.wait_idle(within_s=180)

        rows = [r for r in watcher.state.all() if r.status == DONE]
        assert len(rows) == FILES, [(r.path, r.status, r.error) for r in watcher.state.all()]
        assert watcher.outcomes["analyzed"] == FILES  # each file stored once
        # each work id applied once (a file done while no worker was heard is analysed here)
        assert sum(dispatch.by_node.values()) <= FILES
        survivor = ids[1]
        assert dispatch.by_node[survivor] > 0 or dispatch.by_node[app.worker_id] > 0
        status = watcher.status()
        assert status.done == FILES and status.pending == 0

        stored: dict[str, Any] = {}
        async for points in scroll_pages(app.require_store(), TRACKS_AUDIO, limit=100):
            for point in points:
                stored[point.payload["file_path"]] = point
        assert len(stored) == FILES
        # the vectors are those of a local analysis
        path = lib / "t3.flac"
        here = await analyze_file(app.loaded, app.settings.audio, path, "full", 3)
        points = await app.require_store().get(
            TRACKS_AUDIO, [stored[str(path)].key], with_vectors=True
        )
        assert cosine_rows(points[0].vector[None, :], np.asarray(here.vector)[None, :])[0] >= 0.9999
    finally:
        if store is not None:
            await store.stop()
        for proc in procs:
            proc.stop()


def process_of(
    remote: RemoteInference, procs: list[InferenceProcess], worker_id: str
) -> InferenceProcess:
    pid = remote.peers[worker_id].hello.pid
    return next(p for p in procs if p.proc is not None and p.proc.pid == pid)


@pytest.mark.asyncio
async def test_bad_scan_jobs_are_terminated_and_never_answered_elsewhere(
    tmp_path: Path, tiny_model_dir: Path, nats_server: EmbeddedNats
) -> None:
    """Poison, a reply subject that is not a store node's, a relative path: each job is
    terminated at once (no retries), and no reply reaches the subject it named."""
    import msgpack

    from insight.scale import scanwire as w

    lib = tmp_path / "lib"
    async with one_file_store(lib, tmp_path / "store", tiny_model_dir, nats_server) as (store, nc):
        heard: list[bytes] = []

        async def hear(msg: Any) -> None:
            heard.append(msg.data)

        sub = await nc.subscribe("insight.v1.>", cb=hear)
        js = nc.jetstream()
        model = store.app.require_pool().model.model_id
        jobs = [
            b"\xc1 not msgpack",
            msgpack.packb({"id": "x"}),
            w.pack_job("j1", str(lib / "a.flac"), "insight.v1.tracks.delete", "full", 3, model),
            w.pack_job("j2", "lib/a.flac", w.result_subject("nobody"), "full", 3, model),
        ]
        for i, body in enumerate(jobs):
            await js.publish(w.SCAN_WORK, body, headers={"Nats-Msg-Id": f"bad-{i}"})
        for _ in range(100):
            info = await js.consumer_info(w.SCAN_STREAM, w.SCAN_CONSUMER)
            if info.num_ack_pending == 0 and info.num_pending == 0:
                break
            await asyncio.sleep(0.1)
        info = await js.consumer_info(w.SCAN_STREAM, w.SCAN_CONSUMER)
        assert info.num_pending == 0 and info.num_ack_pending == 0
        assert info.num_redelivered == 0  # terminated on first sight, not retried
        assert (await js.stream_info(w.SCAN_STREAM)).state.messages == 0
        await sub.unsubscribe()
        assert heard == []


@pytest.mark.asyncio
async def test_a_result_is_kept_until_its_store_node_is_back(
    tmp_path: Path, tiny_model_dir: Path, nats_server: EmbeddedNats
) -> None:
    """The store node that asked is between two NATS servers (no subscription for a moment),
    twice: before the job's node asks whether it still waits (the job is asked about again
    later, not dropped), and after it said yes, while the file is analysed (the result is
    sent again until it is taken, then the job is acked once; acking it at the first "no
    responders" lost the file for good)."""
    import msgpack

    from insight.scale import scanwire as w

    lib = tmp_path / "lib"
    async with one_file_store(lib, tmp_path / "store", tiny_model_dir, nats_server) as (store, nc):
        js = nc.jetstream()
        model = store.app.require_pool().model.model_id
        reply = w.result_subject("reconnecting-node")
        job = w.pack_job("late-1", str(lib / "a.flac"), reply, "full", 3, model)
        await js.publish(w.SCAN_WORK, job, headers={"Nats-Msg-Id": "late-1"})
        await asyncio.sleep(1.5)  # asked about meanwhile: nobody listens yet
        results: list[dict[str, Any]] = []
        probes: list[str] = []
        asked = asyncio.Event()

        async def take(msg: Any) -> None:
            body = msgpack.unpackb(msg.data)
            if "probe" in body:
                probes.append(body["probe"])
                await msg.respond(msgpack.packb({"awaited": True}))
                asked.set()
                return
            results.append(body)
            await msg.respond(msgpack.packb({"applied": True}))

        sub = await nc.subscribe(reply, cb=take)
        await asyncio.wait_for(asked.wait(), 10)
        await sub.unsubscribe()  # away again while the file is analysed
        await nc.flush()
        await asyncio.sleep(1.0)
        assert results == []  # its result found nobody, and was not given up
        await nc.subscribe(reply, cb=take)
        for _ in range(150):
            info = await js.consumer_info(w.SCAN_STREAM, w.SCAN_CONSUMER)
            if results and info.num_ack_pending == 0 and info.num_pending == 0:
                break
            await asyncio.sleep(0.1)
        assert [r["id"] for r in results] == ["late-1"]
        assert probes == ["late-1"]  # asked once it listened, then analysed
        assert "error" not in results[0], results[0]
        assert (await js.stream_info(w.SCAN_STREAM)).state.messages == 0  # acked once


@pytest.mark.asyncio
async def test_jobs_of_a_gone_or_done_store_node_are_never_analysed(
    tmp_path: Path, tiny_model_dir: Path, nats_server: EmbeddedNats
) -> None:
    """A job left in the queue by a store node that has restarted since (nobody listens on
    its result subject any more) is asked about a few times and then dropped, and one its
    store node no longer waits for is dropped at once: neither is decoded. They used to be
    analysed up to five times, each answer retried for 20 s."""
    import msgpack

    from insight.scale import scanwire as w
    from insight.scale.scan import ScanConsumer

    lib = tmp_path / "lib"
    async with one_file_store(lib, tmp_path / "store", tiny_model_dir, nats_server) as (store, nc):
        js = nc.jetstream()
        model = store.app.require_pool().model.model_id
        consumer = part(store, ScanConsumer)
        done_before = consumer.done
        asked: list[str] = []

        async def not_waiting(msg: Any) -> None:
            asked.append(msgpack.unpackb(msg.data)["probe"])
            await msg.respond(msgpack.packb({"awaited": False}))

        await nc.subscribe(w.result_subject("done-node"), cb=not_waiting)
        for work, node in (("gone-1", "restarted-node"), ("done-1", "done-node")):
            body = w.pack_job(work, str(lib / "a.flac"), w.result_subject(node), "full", 3, model)
            await js.publish(w.SCAN_WORK, body, headers={"Nats-Msg-Id": work})
        for _ in range(50):
            if consumer.orphaned:
                break
            await asyncio.sleep(0.05)
        assert asked == ["done-1"] and consumer.orphaned == 1  # "no" ends it at once
        # the gone one waits in the queue: its store node may only be between two servers
        assert (await js.stream_info(w.SCAN_STREAM)).state.messages == 1
        for _ in range(150):
            if (await js.stream_info(w.SCAN_STREAM)).state.messages == 0:
                break
            await asyncio.sleep(0.1)
        assert (await js.stream_info(w.SCAN_STREAM)).state.messages == 0
        assert consumer.orphaned == 2 and consumer.done == done_before  # none analysed
        assert asked == ["done-1"]
