"""Helpers for bus tests: worker processes, in-process workers, waiting for consumers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
from nats.js import JetStreamContext

from insight.bus import subjects
from insight.config import Settings
from insight.runtime import Worker
from insight.storage.base import TRACKS_TEXT, scroll_pages
from tests.conftest import make_settings


class WorkerProcess:
    """``insight worker`` in a child process, killable with SIGKILL like a crash."""

    def __init__(self, nats_url: str, data_dir: Path, model_dir: Path, **env: str) -> None:
        self.env = {
            **os.environ,
            "INSIGHT_STORAGE__DATA_DIR": str(data_dir),
            "INSIGHT_MODEL__PATH": str(model_dir),
            "INSIGHT_MODEL__NAME": "insight/tiny-clap",
            "INSIGHT_NATS__URL": nats_url,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "insight.cli", "worker"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return self

    async def ready(self, nc: Any, timeout: float = 20.0) -> None:
        """Wait until one more service instance than before answers ``$SRV.PING.insight``."""
        before = await service_instances(nc)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"worker exited: {err[-2000:]}")
            if await service_instances(nc) - before:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError("worker did not come up")

    async def gone(self, nc: Any, instances: int, timeout: float = 10.0) -> None:
        """After a kill: wait until the server dropped this worker (``instances`` remain)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(await service_instances(nc)) != instances:
            if loop.time() > deadline:
                raise TimeoutError("the killed worker still answers pings")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


async def service_instances(
    nc: Any, wait: float = 0.3, expect: int | None = None, within: float = 10.0
) -> set[str]:
    """Ids of the ``insight`` service instances that answer a ping within ``wait`` s.

    With ``expect``, ping again (for at most ``within`` s) until that many answer: on a loaded
    machine an instance may answer after the window without being gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        ids = await _ping_instances(nc, wait)
        if expect is None or len(ids) >= expect or loop.time() > deadline:
            return ids


async def _ping_instances(nc: Any, wait: float) -> set[str]:
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish("$SRV.PING.insight", b"", reply=inbox)
    ids: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await sub.next_msg(timeout=left)
        except Exception:
            break
        if msg.data:  # an empty message is the server's "no responders"
            ids.add(json.loads(msg.data)["id"])
    await sub.unsubscribe()
    return ids


async def in_process_worker(
    nats_url: str, data_dir: Path, model_dir: Path, **sections: dict[str, Any]
) -> Worker:
    nats = {"url": nats_url, **sections.pop("nats", {})}
    settings: Settings = make_settings(data_dir, model_dir, nats=nats, **sections)
    worker = Worker(settings)
    await worker.start(nats_url)
    return worker


async def drained(js: JetStreamContext, consumer: str, timeout: float = 60.0) -> None:
    """Wait until a durable consumer has nothing pending and nothing unacknowledged."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        try:
            info = await js.consumer_info(subjects.EVENTS_STREAM, consumer)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
        except Exception:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"consumer {consumer} still has work after {timeout}s")


def track_event(uri: str, name: str, *, kind: str = "added", **data: Any) -> bytes:
    """A Music Assistant ``MassEvent`` for a track, msgpack-encoded."""
    return msgpack.packb(
        {
            "event": f"media_item_{kind}",
            "object_id": uri,
            "data": {
                "item_id": uri.rsplit("/", 1)[-1],
                "provider": "library",
                "uri": uri,
                "name": name,
                "artists": [{"name": "Artist " + uri[-1]}],
                "album": {"name": "Album"},
                "metadata": {"genres": ["rock"]},
                "duration": 200,
                **data,
            },
        }
    )


async def stored_names(w: Worker) -> dict[str, str]:
    """key → name of every text vector a worker's store holds."""
    out: dict[str, str] = {}
    async for points in scroll_pages(w.app.require_store(), TRACKS_TEXT, limit=500):
        out.update({p.key: p.payload["name"] for p in points})
    return out
