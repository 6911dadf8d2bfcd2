"""Inference as a service on the bus: a store node and two ``--role inference`` processes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgpack
import nats
import numpy as np
import pytest
from prometheus_client import REGISTRY

from insight.bus.embedded import EmbeddedNats
from insight.runtime import Worker
from insight.scale import protocol as p
from insight.scale.remote import RemoteInference
from tests.busutil import in_process_worker
from tests.scaleutil import InferenceProcess, cosine_rows, wait_workers

FAST = {"heartbeat_s": 0.5, "remote_timeout_s": 20.0, "remote_max_windows": 2}


def remote_of(worker: Worker) -> RemoteInference:
    found = [c for c in worker.app.services.scale if isinstance(c, RemoteInference)]
    assert len(found) == 1
    return found[0]


async def gauge_becomes(name: str, want: float) -> bool:
    for _ in range(100):  # the dispatcher's sweep sets it every half heartbeat
        if REGISTRY.get_sample_value(name) == want:
            return True
        await asyncio.sleep(0.05)
    return False


def windows(n: int, samples: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 48_000.0
    rows = [
        0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) + 0.05 * rng.standard_normal(samples)
        for _ in range(n)
    ]
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.asyncio
async def test_two_inference_workers_share_work_and_survive_a_kill(
    tmp_path: Path, tiny_model_dir: Path, nats_server: EmbeddedNats
) -> None:
    procs = [
        InferenceProcess(nats_server.url, tmp_path / f"inf{i}", tiny_model_dir).start()
        for i in range(2)
    ]
    store = None
    try:
        store = await in_process_worker(
            nats_server.url,
            tmp_path / "store",
            tiny_model_dir,
            inference=FAST,
            storage={"lease_ttl_s": 0},
        )
        pool = store.app.require_pool()
        remote = remote_of(store)
        assert pool.remote is remote
        model_id = pool.model.model_id
        ids = await wait_workers(remote, model_id, 2, procs)
        window = pool.model.audio_spec(10.0, 10.0).window

        # the same vectors as in-process inference, work spread over both workers
        audio = windows(12, window)
        local = await pool._local_windows(audio, False)
        got = await pool.embed_windows(audio, bulk=True)
        assert got.shape == local.shape
        assert cosine_rows(got, local).min() >= 0.9999
        texts = ["calm piano at night", "loud guitars", "a choir", "drum and bass"]
        text_local = await pool._local_texts(texts)
        text_got = await pool.embed_texts(texts)
        assert cosine_rows(text_got, text_local).min() >= 0.9999
        assert set(remote.sent) == set(ids), remote.sent
        assert remote.local_items == 0
        assert await gauge_becomes("insight_inference_workers", 2.0)
        remote_items = REGISTRY.get_sample_value(
            "insight_remote_inference_items_total", {"where": "remote"}
        )
        assert remote_items is not None and remote_items >= 16

        # a worker killed while work is in flight: everything completes on the other one
        before = dict(remote.sent)
        batches = [windows(4, window, seed=s) for s in range(1, 13)]
        expected = [await pool._local_windows(b, False) for b in batches]
        work = asyncio.gather(*(pool.embed_windows(b, bulk=True) for b in batches))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while sum(remote.sent.values()) == sum(before.values()):
            assert loop.time() < deadline, "no work was answered"
            await asyncio.sleep(0.01)
        procs[0].kill()
        results = await asyncio.wait_for(work, 60)
        for got_b, exp_b in zip(results, expected, strict=True):
            assert cosine_rows(got_b, exp_b).min() >= 0.9999
        survivor = [w for w in ids if w in remote.sent and remote.sent[w] > before.get(w, 0)]
        assert survivor, remote.sent
        assert len(remote.workers(model_id)) == 1  # the dead one was dropped
        assert await gauge_becomes("insight_inference_workers", 1.0)
        assert remote.local_items == 0  # the survivor took the dead worker's share
    finally:
        if store is not None:
            await store.stop()
        for proc in procs:
            proc.stop()


@pytest.mark.asyncio
async def test_no_inference_worker_means_local_and_bad_requests_are_refused(
    tmp_path: Path, tiny_model_dir: Path, nats_server: EmbeddedNats
) -> None:
    store = await in_process_worker(
        nats_server.url,
        tmp_path / "store",
        tiny_model_dir,
        inference=FAST,
        storage={"lease_ttl_s": 0},
    )
    proc = InferenceProcess(nats_server.url, tmp_path / "inf", tiny_model_dir).start()
    nc = await nats.connect(nats_server.url)
    try:
        pool = store.app.require_pool()
        remote = remote_of(store)
        vec = await pool.embed_texts(["alone"])  # nobody on the bus yet: embedded here
        assert vec.shape == (1, pool.model.dim) and not remote.sent
        await wait_workers(remote, pool.model.model_id, 1, [proc])

        async def ask(kind: p.Kind, body: bytes) -> dict[str, object]:
            msg = await nc.request(p.shared_subject(kind), body, timeout=20)
            return msgpack.unpackb(msg.data)

        bad_shape = msgpack.packb(
            {"id": "w1", "model": pool.model.model_id, "shape": [2, 10], "windows": b"\0" * 8}
        )
        assert (await ask("audio", bad_shape))["error"] == 400
        other_model = p.pack_request("w2", "someone/else", "text", ["x"])
        reply = await ask("text", other_model)
        assert reply["error"] == 409 and "not someone/else" in str(reply["message"])
        too_many = p.pack_request("w3", pool.model.model_id, "text", ["x"] * 100)
        assert (await ask("text", too_many))["error"] == 413
        ok = await ask("text", p.pack_request("w4", pool.model.model_id, "text", ["x"]))
        assert ok["id"] == "w4" and ok["shape"] == [1, pool.model.dim]
    finally:
        await nc.close()
        proc.stop()
        await store.stop()


def test_an_inference_worker_needs_a_bus_to_join(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "INSIGHT_NATS__URL": "", "INSIGHT_STORAGE__DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "insight.cli", "worker", "--role", "inference"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert b"joins an existing bus: set --nats-url or INSIGHT_NATS__URL" in done.stderr
    assert not (tmp_path / "nats").exists()  # no embedded server was started for it
