"""One store per service on the bus: the KV store lease refuses a second private store.

Real nats-server, real worker processes (SIGKILL like a crash), real JetStream KV.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import numpy as np
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from insight.bus import subjects
from insight.bus.client import BusClient
from insight.bus.embedded import EmbeddedNats
from insight.bus.lease import LeaseRefused, StoreIdentity, StoreLease, store_identity
from insight.cli import STORE_CONFLICT
from insight.config import StorageSettings
from tests.busutil import WorkerProcess, in_process_worker, service_instances


@pytest_asyncio.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


def vec(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


async def holder(nc: NATS) -> dict[str, object]:
    kv = await nc.jetstream().key_value(subjects.STORE_LEASE_BUCKET)
    entry = await kv.get(subjects.STORE_LEASE_KEY)
    return dict(json.loads(entry.value or b""))


async def exited(proc: WorkerProcess, within_s: float) -> int:
    """Wait for a worker process to exit without blocking the event loop."""
    assert proc.proc is not None
    deadline = time.monotonic() + within_s
    while (rc := proc.proc.poll()) is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("the worker did not exit")
        await asyncio.sleep(0.1)
    return rc


async def acquire_when_free(lease: StoreLease, within_s: float) -> float:
    """Retry ``acquire`` until it succeeds (bounded); returns when it did (monotonic)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            await lease.acquire()
            return time.monotonic()
        except LeaseRefused:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_second_private_store_is_refused_and_never_served(
    bus: NATS, nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> None:
    owner = await in_process_worker(nats_server.url, tmp_path / "a", tiny_model_dir)
    client = BusClient(bus, timeout=20)
    try:
        for i in range(5):
            await client.call(
                "insight.v1.tracks.upsert",
                {"track_id": f"t{i}", "metadata": {"name": f"Song {i}"}, "text_embedding": vec(i)},
            )
        alone = await service_instances(bus, expect=1)
        assert len(alone) == 1
        second_dir = tmp_path / "b"
        second = WorkerProcess(nats_server.url, second_dir, tiny_model_dir).start()
        assert second.proc is not None
        instances: list[set[str]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while second.proc.poll() is None and loop.time() < deadline:
            instances.append(await service_instances(bus, wait=0.2))
        rc = second.proc.wait(timeout=5)
        err = second.proc.stderr.read().decode() if second.proc.stderr else ""
        assert rc == STORE_CONFLICT, err[-2000:]
        assert f"node {owner.app.worker_id}" in err and str(tmp_path / "a") in err, err
        assert "INSIGHT_STORAGE__MODE=qdrant" in err, err
        # it never joined the queue group and never opened its store
        # (a ping answered late on a loaded machine may miss the owner: never an extra instance)
        assert instances and all(ids <= alone for ids in instances), instances
        assert any(ids == alone for ids in instances), instances
        assert not (second_dir / ".lock").exists()
        for _ in range(8):
            for i in range(5):
                track = await client.call("insight.v1.tracks.get", {"track_id": f"t{i}"})
                assert track["track_id"] == f"t{i}" and track["metadata"]["name"] == f"Song {i}"
        stats = await client.call("insight.v1.storage.stats")
        assert stats["stats"]["text_collection_count"] == 5, stats
        lease = await holder(bus)
        assert lease["node"] == owner.app.worker_id and lease["store"] == (
            f"file:{owner.app.instance_id}"
        )
    finally:
        await owner.stop()
    # a clean stop gives the lease back: the other store may start at once
    other = StoreLease(
        bus.jetstream(), StoreIdentity("file:other", False, "file store in b"), "n2", 60.0
    )
    await other.acquire()
    assert (await holder(bus))["node"] == "n2"
    await other.release()


async def test_a_restart_on_the_same_data_dir_takes_its_lease_back_at_once(
    bus: NATS, nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> None:
    env = {"INSIGHT_STORAGE__LEASE_TTL_S": "120"}
    first = WorkerProcess(nats_server.url, tmp_path / "a", tiny_model_dir, **env).start()
    second: WorkerProcess | None = None
    try:
        await first.ready(bus, timeout=60)
        assert first.proc is not None
        assert (await holder(bus))["pid"] == first.proc.pid
        first.kill()
        killed = time.monotonic()
        # another store is still refused: the dead owner's lease lives on for its TTL
        stranger = StoreLease(bus.jetstream(), StoreIdentity("file:x", False, "x"), "n2", 120.0)
        with pytest.raises(LeaseRefused, match="with the file store in"):
            await stranger.acquire()
        second = WorkerProcess(nats_server.url, tmp_path / "a", tiny_model_dir, **env).start()
        await second.ready(bus, timeout=60)
        assert time.monotonic() - killed < 100  # far less than the 120 s TTL
        assert second.proc is not None
        assert (await holder(bus))["pid"] == second.proc.pid
    finally:
        first.kill()
        if second is not None:
            second.stop()


async def test_the_lease_expires_after_its_ttl_when_the_owner_dies(
    bus: NATS, nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> None:
    ttl = 3.0
    env = {"INSIGHT_STORAGE__LEASE_TTL_S": str(ttl)}
    owner = WorkerProcess(nats_server.url, tmp_path / "a", tiny_model_dir, **env).start()
    try:
        await owner.ready(bus, timeout=60)
        await asyncio.sleep(ttl * 1.5)  # it renews: the lease outlives the first TTL
        assert (await holder(bus))["store"] == "file:" + (
            tmp_path / "a" / "instance-id"
        ).read_text()
        owner.kill()
        killed = time.monotonic()
    finally:
        owner.kill()
    waiting = StoreLease(bus.jetstream(), StoreIdentity("file:b", False, "b"), "n2", ttl)
    taken = await acquire_when_free(waiting, within_s=ttl + 10)
    # the last renewal was at most ttl/3 before the kill
    assert ttl / 2 <= taken - killed <= ttl + 10
    assert (await holder(bus))["node"] == "n2"
    # now the old data dir is the stranger: its restart is refused with the new owner named
    back = WorkerProcess(nats_server.url, tmp_path / "a", tiny_model_dir, **env).start()
    assert back.proc is not None
    rc = await exited(back, within_s=60)  # the loop keeps renewing n2's lease meanwhile
    err = back.proc.stderr.read().decode() if back.proc.stderr else ""
    assert rc == STORE_CONFLICT and "node n2" in err, err[-2000:]
    await waiting.release()


async def test_nodes_of_one_shared_store_all_serve_and_others_are_refused(
    bus: NATS, tmp_path: Path
) -> None:
    settings = [
        StorageSettings(mode="qdrant", url="http://qdrant:6334/", data_dir=tmp_path / d)
        for d in ("a", "b")
    ]
    ids = [store_identity(s, instance_id=d) for s, d in zip(settings, ("a", "b"), strict=True)]
    assert ids[0] == ids[1] and ids[0] is not None and ids[0].shared
    shared: StoreIdentity = ids[0]
    js = bus.jetstream()
    ttl = 1.5
    nodes = [StoreLease(js, shared, f"n{i}", ttl) for i in range(2)]
    for node in nodes:
        await node.acquire()
    await asyncio.sleep(ttl * 2)  # both keep renewing the one lease, neither loses it
    assert not any(n.lost.is_set() for n in nodes)
    assert (await holder(bus))["store"] == "qdrant:http://qdrant:6334/"
    others = [
        store_identity(StorageSettings(data_dir=tmp_path / "c"), instance_id="c"),
        store_identity(
            StorageSettings(mode="qdrant", url="http://qdrant:6334", collection_prefix="x"), "d"
        ),
    ]
    for other in others:
        assert other is not None
        with pytest.raises(LeaseRefused, match="Qdrant at http://qdrant:6334 prefix ''"):
            await StoreLease(js, other, "n9", ttl).acquire()
    assert store_identity(StorageSettings(enabled=False), instance_id="e") is None
    for node in nodes:
        await node.release()  # a shared lease is left to expire, never deleted by one node
    assert (await holder(bus))["shared"] is True


async def test_a_node_whose_lease_was_taken_knows_it_lost(bus: NATS) -> None:
    """After a partition longer than the TTL another store may hold the lease: the cut-off
    node's next renewal finds it and sets ``lost`` (the runtime then stops the worker)."""
    js = bus.jetstream()
    ttl = 1.5
    a = StoreLease(js, StoreIdentity("file:a", False, "a"), "na", ttl)
    await a.acquire()
    kv = await js.key_value(subjects.STORE_LEASE_BUCKET)
    await kv.delete(subjects.STORE_LEASE_KEY)  # as if it had expired
    b = StoreLease(js, StoreIdentity("file:b", False, "b"), "nb", 60.0)
    await b.acquire()
    assert b.ttl_s == ttl  # the bucket's TTL, set by its creator, holds for every node
    await asyncio.wait_for(a.lost.wait(), timeout=ttl * 3)
    await a.release()
    assert (await holder(bus))["node"] == "nb"
    await b.release()
