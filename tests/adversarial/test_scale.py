"""A hostile or broken "inference worker" on the bus cannot put wrong vectors in the store:
a reply with the wrong work id, the wrong count or no answer at all is dropped, the worker
with it, and the store node embeds the work itself."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgpack
import nats
import numpy as np
import pytest

from insight.bus.embedded import EmbeddedNats
from insight.scale import protocol as p
from insight.scale.remote import RemoteInference
from tests.busutil import in_process_worker
from tests.scaleutil import cosine_rows


async def liar(nc: Any, worker_id: str, model_id: str, dim: int, how: str) -> list[Any]:
    """Announce a worker of ``model_id`` and answer its requests ``how`` (badly)."""

    async def on_request(msg: Any) -> None:
        body = msgpack.unpackb(msg.data)
        n = len(body["texts"]) if "texts" in body else body["shape"][0]
        if how == "silent":
            return
        work_id = "someone-else" if how == "wrong_id" else body["id"]
        rows = n + 1 if how == "wrong_count" else n
        vectors = np.ones((rows, dim), dtype=np.float32)
        await msg.respond(p.pack_reply(work_id, model_id, vectors))

    hello = p.Hello(worker_id, model_id, dim, 4, 16)
    subs = [
        await nc.subscribe(p.worker_subject(worker_id, kind), cb=on_request) for kind in p.KINDS
    ]

    async def beat() -> None:
        while True:
            await nc.publish(p.HELLO, hello.pack())
            await asyncio.sleep(0.2)

    return [*subs, asyncio.create_task(beat())]


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["wrong_id", "wrong_count", "silent"])
async def test_a_lying_worker_is_dropped_and_the_work_done_here(
    tmp_path: Path, tiny_model_dir: Path, nats_server: EmbeddedNats, how: str
) -> None:
    store = await in_process_worker(
        nats_server.url,
        tmp_path / "store",
        tiny_model_dir,
        inference={"heartbeat_s": 0.5, "remote_timeout_s": 2.0},
    )
    nc = await nats.connect(nats_server.url)
    parts: list[Any] = []
    try:
        pool = store.app.require_pool()
        remote = next(c for c in store.app.services.scale if isinstance(c, RemoteInference))
        model_id = pool.model.model_id
        parts = await liar(nc, "liar00000001", model_id, pool.model.dim, how)
        for _ in range(100):
            if remote.workers(model_id):
                break
            await asyncio.sleep(0.05)
        assert remote.workers(model_id), "the liar was never heard"
        window = pool.model.audio_spec(10.0, 10.0).window
        rng = np.random.default_rng(1)
        audio = (0.1 * rng.standard_normal((3, window))).astype(np.float32)
        got = await asyncio.wait_for(pool.embed_windows(audio, bulk=True), 30)
        want = await pool._local_windows(audio, False)
        assert cosine_rows(got, want).min() >= 0.9999  # never the liar's ones
        assert remote.local_items == 3 and not remote.sent
        assert remote.retries >= 1  # dropped after its answer (its heartbeat brings it back)
    finally:
        for part in parts:
            if isinstance(part, asyncio.Task):
                part.cancel()
        await nc.close()
        await store.stop()
