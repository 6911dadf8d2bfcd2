"""The store node's side of remote inference: find inference workers, send them work.

Workers are learnt from their heartbeats (``insight.internal.infer.hello``); only those running
the store node's own model id are used, so every vector lands in the same space. Each work item
(a chunk of at most ``remote_max_windows`` windows or texts, and under the bus's payload cap;
audio chunks grow 1, 2, 4, … windows so the first starts at once) goes to the least busy
worker with a free slot (``remote_inflight`` per worker: back-pressure; a caller waits for a
slot rather than piling work onto a worker). A worker that times out, has no responders, says
goodbye or stops beating is dropped and the item goes to another; with no worker left, or
after ``ATTEMPTS`` tries, it is embedded locally. Every request has its own work id and reply
inbox: a late answer to an attempt that was given up is never used, so a result reaches its
caller (and the store) once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from insight.errors import InsightError
from insight.metrics import INFERENCE_WORKERS, REMOTE_ITEMS
from insight.scale import protocol as p
from insight.tasks import cancel_and_wait

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

    from insight.config import InferenceSettings
    from insight.state import ModelSlot

log = logging.getLogger("insight.scale.remote")

ATTEMPTS = 4
MISSED_BEATS = 3
Local = Callable[[Any], Awaitable[np.ndarray]]


class PeerGone(Exception):
    pass


@dataclass
class Peer:
    hello: p.Hello
    seen: float
    inflight: int = 0
    used: float = 0.0
    gone: asyncio.Event = field(default_factory=asyncio.Event)


class RemoteInference:
    def __init__(
        self, cfg: InferenceSettings, max_payload_mb: float, loaded: ModelSlot, nc: NATS
    ) -> None:
        """``loaded``: the model slot whose pool (also one loaded later) gets ``remote``;
        ``max_payload_mb``: the bus's payload cap (``NatsSettings.max_payload_mb``)."""
        self.cfg, self.loaded, self.nc = cfg, loaded, nc
        self.max_payload = int(max_payload_mb * 1024 * 1024 * 0.9)
        self.peers: dict[str, Peer] = {}
        self.sent: Counter[str] = Counter()  # answered items per worker id
        self.local_items = 0  # items embedded here because no worker took them
        self.retries = 0
        self._changed = asyncio.Condition()
        self._subs: list[Any] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> RemoteInference:
        self._subs = [
            await self.nc.subscribe(p.HELLO, cb=self._on_hello),
            await self.nc.subscribe(p.BYE, cb=self._on_bye),
        ]
        await self.nc.flush()
        await self.nc.publish(p.DISCOVER, b"")
        self._attach()
        self._sweeper = asyncio.create_task(self._sweep(), name="remote-inference-sweep")
        return self

    async def stop(self) -> None:
        self._stopping.set()
        await cancel_and_wait([self._sweeper])
        pool = self.loaded.pool
        if pool is not None and getattr(pool, "remote", None) is self:
            pool.remote = None
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for peer in self.peers.values():
            peer.gone.set()

    def _attach(self) -> None:
        """Offer ourselves to the pool (also a pool created later, e.g. after a download)."""
        pool = self.loaded.pool
        if pool is not None and pool.remote is None:
            pool.remote = self

    # --- the directory of workers ---------------------------------------------------------

    async def _on_hello(self, msg: Msg) -> None:
        try:
            hello = p.Hello.unpack(msg.data)
        except Exception:
            log.warning("inference_hello_unreadable bytes=%d", len(msg.data))
            return
        peer = self.peers.get(hello.worker_id)
        if peer is None or peer.gone.is_set():
            self.peers[hello.worker_id] = Peer(hello, time.monotonic())
            log.info(
                "inference_worker_joined id=%s host=%s pid=%d model=%s capacity=%d scan_slots=%d",
                hello.worker_id,
                hello.host,
                hello.pid,
                hello.model_id,
                hello.inflight,
                hello.scan_slots,
            )
            async with self._changed:
                self._changed.notify_all()
        else:
            peer.hello, peer.seen = hello, time.monotonic()

    async def _on_bye(self, msg: Msg) -> None:
        await self._drop(msg.data.decode(errors="replace"), "stopped")

    async def _drop(self, worker_id: str, why: str) -> None:
        peer = self.peers.pop(worker_id, None)
        if peer is None:
            return
        peer.gone.set()
        log.info("inference_worker_left id=%s reason=%s", worker_id, why)
        async with self._changed:
            self._changed.notify_all()

    async def _sweep(self) -> None:
        limit = MISSED_BEATS * self.cfg.heartbeat_s
        while not self._stopping.is_set():
            self._attach()
            now = time.monotonic()
            for wid, peer in list(self.peers.items()):
                if now - peer.seen > limit:
                    await self._drop(wid, f"silent for {now - peer.seen:.1f} s")
            pool = self.loaded.pool
            INFERENCE_WORKERS.set(len(self.workers(pool.model.model_id)) if pool else 0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.cfg.heartbeat_s / 2)

    def workers(self, model_id: str) -> list[Peer]:
        return [
            peer
            for peer in self.peers.values()
            if peer.hello.model_id == model_id and not peer.gone.is_set()
        ]

    # --- work -------------------------------------------------------------------------

    async def embed(
        self, kind: p.Kind, items: Any, model_id: str, local: Local, wait: bool = True
    ) -> np.ndarray | None:
        """Vectors of ``items`` from the workers (chunks in parallel); None: no worker.

        ``wait`` (bulk work): wait for a free slot; else (a search, a live stream) a chunk that
        finds every worker busy is embedded here at once rather than queue behind a scan."""
        peers = self.workers(model_id)
        if not peers or len(items) == 0:
            return None
        step = min(self.cfg.remote_max_windows, *(peer.hello.max_items for peer in peers))
        if kind == "audio":
            width = 2 if self.cfg.remote_pcm == "s16" else 4
            step = max(1, min(step, self.max_payload // max(1, items.shape[1] * width)))
        chunks = [items[a:b] for a, b in spans(len(items), step, ramp=kind == "audio")]
        parts = await asyncio.gather(*(self._one(kind, c, model_id, local, wait) for c in chunks))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    async def _one(
        self, kind: p.Kind, chunk: Any, model_id: str, local: Local, wait: bool
    ) -> np.ndarray:
        work_id = uuid.uuid4().hex
        payload: bytes | None = None  # packed once a worker is free: the first goes out sooner
        for attempt in range(ATTEMPTS):
            peer = await self._acquire(model_id, wait)
            if peer is None:
                break
            if payload is None:
                payload = p.pack_request(
                    work_id, model_id, kind, chunk, pcm=self.cfg.remote_pcm, bulk=wait
                )
            wid = peer.hello.worker_id
            try:
                vectors = await self._ask(peer, kind, payload, work_id, model_id, len(chunk))
                self.sent[wid] += len(chunk)
                REMOTE_ITEMS.labels("remote").inc(len(chunk))
                return vectors
            except (NatsTimeout, NoRespondersError, PeerGone) as exc:
                await self._drop(wid, type(exc).__name__)
            except InsightError as err:
                if err.status == 429:  # full: another worker, or this one a moment later
                    await asyncio.sleep(0.05 * (attempt + 1))
                else:  # another model, a broken or lying answer: not this worker again
                    log.warning("inference_remote_failed worker=%s error=%s", wid, err.message)
                    await self._drop(wid, err.message)
            except Exception as exc:  # the connection is failing over to another server
                log.info("inference_remote_retry worker=%s error=%r", wid, exc)
                await asyncio.sleep(0.25 * (attempt + 1))
            finally:
                await self._release(peer)
            self.retries += 1
        self.local_items += len(chunk)
        REMOTE_ITEMS.labels("local").inc(len(chunk))
        return await local(chunk)

    async def _acquire(self, model_id: str, wait: bool) -> Peer | None:
        """The least busy worker with a free slot; waits for one (bounded, if ``wait``), None
        if none."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.remote_timeout_s
        async with self._changed:
            while True:
                peers = self.workers(model_id)
                if not peers or self._stopping.is_set():
                    return None
                free = [
                    peer
                    for peer in peers
                    if peer.inflight < min(self.cfg.remote_inflight, peer.hello.inflight)
                ]
                if free:
                    peer = min(free, key=lambda q: (q.inflight, q.used))
                    peer.inflight += 1
                    peer.used = loop.time()
                    return peer
                left = deadline - loop.time()
                if left <= 0 or not wait:
                    return None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left, 1.0))

    async def _release(self, peer: Peer) -> None:
        peer.inflight -= 1
        async with self._changed:
            self._changed.notify_all()

    async def _ask(
        self, peer: Peer, kind: p.Kind, payload: bytes, work_id: str, model_id: str, size: int
    ) -> np.ndarray:
        subject = p.worker_subject(peer.hello.worker_id, kind)
        request = asyncio.ensure_future(
            self.nc.request(subject, payload, timeout=self.cfg.remote_timeout_s)
        )
        gone = asyncio.ensure_future(peer.gone.wait())
        try:
            await asyncio.wait({request, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not request.done():  # the worker left: its answer, if any, is never used
            request.cancel()
            request.add_done_callback(_consume)
            raise PeerGone(peer.hello.worker_id)
        msg = request.result()
        return p.unpack_reply(msg.data, work_id, model_id, size)


def spans(n: int, step: int, ramp: bool) -> list[tuple[int, int]]:
    """``[start, end)`` of the chunks of ``n`` items, at most ``step`` each. ``ramp``: sizes
    1, 2, 4, … up to ``step``, so that a worker starts on the first window while the larger
    rest is still on the wire (with two requests in flight the next chunk always arrives
    during the one before)."""
    out: list[tuple[int, int]] = []
    start, size = 0, 1 if ramp else step
    while start < n:
        end = min(n, start + size)
        out.append((start, end))
        start, size = end, min(step, size * 2)
    return out


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
