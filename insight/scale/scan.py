"""Distributed scan: files → windows → vectors on every node, applied once by the store node.

The store node's watcher keeps its queue, checks, moves and state; when inference workers are
on the bus, the analysis of each file (decode, tags, embedding) becomes a job in the JetStream
work-queue stream ``INSIGHT_SCAN`` (explicit ack, ``scan_ack_wait_s``, ``MAX_DELIVER``, Msg-Id =
work id). Every node (the store node too) pulls from the durable consumer ``insight-scan``. A
node that dies loses nothing: its unacked job is redelivered after the ack wait. A node that
cannot read the path NAKs the job for another node; after ``MAX_DELIVER`` tries it answers
"no node could read it". The store node resolves a work id once: a second result for it (a
redelivery of a job whose first result arrived) is answered ``duplicate`` and dropped, and the
watcher state (path + size + mtime) keeps a file already done from being done again. Before
analysing a job a node asks its store node whether it still waits for it, so the jobs a
restarted store node left behind (its result subject is gone with it) are not decoded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgpack
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig

from insight.bus.streams import ensure_stream
from insight.errors import NotReady
from insight.scale import scanwire as w
from insight.watcher.analysis import Analysis, analyze_file
from insight.watcher.decode import DecodeFailed, Limits
from insight.watcher.guard import MB, Budget, Interrupted, OverBudget, Refused

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js import JetStreamContext

    from insight.config import AudioSettings, WatcherSettings
    from insight.scale.remote import RemoteInference
    from insight.state import ModelSlot
    from insight.watcher.host_work import HostProcesses

log = logging.getLogger("insight.scale.scan")

PUBLISH_ATTEMPTS = 12  # about 25 s of retries
# a result with no responder is sent again this long: a store node whose NATS server was lost
# has no subscription until it reconnects, and a result acked meanwhile would be lost
UNCLAIMED_RETRY_S = 20.0
PROBE_ATTEMPTS = 3  # a probe with no responder is asked again twice, 0.5 s apart


class ScanDispatch:
    """The store node's side: jobs out, results in (once per work id)."""

    def __init__(
        self,
        cfg: WatcherSettings,
        loaded: ModelSlot,
        nc: NATS,
        js: JetStreamContext,
        node: str,
        remote: RemoteInference,
        watcher: Any,
        replicas: int = 1,
    ) -> None:
        """``node``: this worker's id (results come back on its subject); ``replicas``: of
        the scan stream (``INSIGHT_NATS__REPLICAS``)."""
        self.cfg, self.loaded, self.nc, self.js = cfg, loaded, nc, js
        self.node, self.remote, self.watcher, self.replicas = node, remote, watcher, replicas
        self.pending: dict[str, asyncio.Future[Analysis]] = {}
        self.by_node: Counter[str] = Counter()  # results applied, per node
        self.duplicates = 0
        self._sub: Any = None

    def active(self) -> bool:
        pool = self.loaded.pool
        return (
            pool is not None
            and self.cfg.distributed == "auto"
            and bool(self.remote.workers(pool.model.model_id))
        )

    async def start(self) -> ScanDispatch:
        await ensure_stream(self.js, w.STREAM, self.replicas)
        self._sub = await self.nc.subscribe(w.result_subject(self.node), cb=self._on_result)
        await self.nc.flush()
        self.watcher.files.offload = self
        return self

    async def stop(self) -> None:
        if getattr(self.watcher.files, "offload", None) is self:
            self.watcher.files.offload = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(NotReady("the store node is stopping"))

    def slots(self) -> int:
        """Files in flight across the cluster: ours plus every worker's scan slots."""
        pool = self.loaded.pool
        peers = self.remote.workers(pool.model.model_id) if pool is not None else []
        cfg = self.cfg
        here = cfg.workers if cfg.scan_here else 0
        return max(1, here + sum(p.hello.scan_slots for p in peers))

    async def analyze(self, path: Path) -> Analysis:
        """``path``'s analysis from whichever node takes the job."""
        pool = self.loaded.require_pool()
        self.watcher.ensure_workers(self.slots())
        cfg = self.cfg
        st = await asyncio.to_thread(path.stat)
        work_id = f"{uuid.uuid4().hex}"
        fut: asyncio.Future[Analysis] = asyncio.get_running_loop().create_future()
        self.pending[work_id] = fut
        body = w.pack_job(
            work_id,
            str(path),
            w.result_subject(self.node),
            cfg.mode,
            cfg.sampled_windows,
            pool.model.model_id,
        )
        msg_id = f"{path}|{st.st_size}|{st.st_mtime_ns}|{work_id}"
        try:
            await self._publish(body, msg_id)
            limit = w.MAX_DELIVER * (cfg.scan_ack_wait_s + cfg.max_decode_s)
            try:
                return await asyncio.wait_for(fut, limit)
            except TimeoutError:
                raise DecodeFailed(f"no node analysed {path} within {limit:g} s") from None
        finally:
            self.pending.pop(work_id, None)

    async def _publish(self, body: bytes, msg_id: str) -> None:
        """Publish a job, retried through a server's loss or a leader election; the Msg-Id
        makes a retry of a publish that did land a no-op."""
        for attempt in range(PUBLISH_ATTEMPTS):
            try:
                await self.js.publish(w.SCAN_WORK, body, headers={"Nats-Msg-Id": msg_id}, timeout=5)
                return
            except Exception as exc:
                if attempt == PUBLISH_ATTEMPTS - 1:
                    raise NotReady(f"the scan queue takes no work: {exc!r}") from None
                log.info("scan_publish_retry attempt=%d error=%r", attempt + 1, exc)
                await asyncio.sleep(min(0.25 * 2**attempt, 3.0))

    async def _on_result(self, msg: Msg) -> None:
        try:
            body = msgpack.unpackb(msg.data)
            if isinstance(body, dict) and "probe" in body:  # a node about to analyse a job
                fut = self.pending.get(str(body["probe"]))
                awaited = fut is not None and not fut.done()
                with contextlib.suppress(Exception):
                    await msg.respond(msgpack.packb({"awaited": awaited}))
                return
            work_id, node = str(body["id"]), str(body.get("node"))
        except Exception:
            log.warning("scan_result_unreadable bytes=%d", len(msg.data))
            return
        fut = self.pending.get(work_id)
        applied = fut is not None and not fut.done()
        if fut is not None and applied:
            try:
                fut.set_result(w.unpack_result(body))
            except Exception as exc:  # an error result: the watcher records it
                fut.set_exception(exc)
            self.by_node[node] += 1
        else:
            self.duplicates += 1
            log.info("scan_result_duplicate work=%s node=%s", work_id, node)
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(msgpack.packb({"applied": applied}))


class ScanConsumer:
    """Any node's side: take jobs from ``INSIGHT_SCAN``, analyse, send the result, ack."""

    def __init__(
        self,
        cfg: WatcherSettings,
        audio: AudioSettings,
        loaded: ModelSlot,
        nc: NATS,
        js: JetStreamContext,
        node: str,
        slots: int,
        executor: Callable[[], Executor | None] = lambda: None,
        replicas: int = 1,
        processes: Callable[[], HostProcesses | None] = lambda: None,
    ) -> None:
        """``slots``: jobs analysed at once; ``executor`` and ``processes`` give the threads
        and the processes for decoding at each job (the watcher's change when it moves to the
        foreground; a file that crashes its decoder takes only a process down)."""
        self.cfg, self.audio, self.loaded, self.nc, self.js = cfg, audio, loaded, nc, js
        self.node, self.slots, self.executor, self.replicas = node, slots, executor, replicas
        self.processes = processes
        self.done = 0
        self.orphaned = 0  # jobs dropped unanalysed: their store node is gone or gave them up
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._psub: Any = None

    async def start(self) -> ScanConsumer:
        await ensure_stream(self.js, w.STREAM, self.replicas)
        self._psub = await self.js.pull_subscribe(
            w.SCAN_WORK,
            durable=w.SCAN_CONSUMER,
            stream=w.SCAN_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.cfg.scan_ack_wait_s,
                max_deliver=w.MAX_DELIVER,
                max_ack_pending=1024,
            ),
        )
        self._tasks = [
            asyncio.create_task(self._loop(), name=f"scan-consumer-{i}") for i in range(self.slots)
        ]
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=5)
            for t in late:
                t.cancel()
            if late:
                await asyncio.wait(late, timeout=5)
        if self._psub is not None:
            with contextlib.suppress(Exception):
                await self._psub.unsubscribe()

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                msgs = await self._psub.fetch(1, timeout=1.0)
            except (NatsTimeout, TimeoutError):
                continue
            except Exception as exc:  # a lost server: the client reconnects
                log.debug("scan_fetch_failed error=%s", exc)
                await asyncio.sleep(0.5)
                continue
            for msg in msgs:
                try:
                    await self._handle(msg)
                except Exception:
                    log.exception("scan_job_crashed")

    async def _handle(self, msg: Msg) -> None:
        try:
            job = w.unpack_job(msg.data)
        except Exception as exc:
            log.warning("scan_job_poison error=%s", exc)
            await msg.term()
            return
        if not job["reply"].startswith(w.RESULT_PREFIX + ".") or not job["path"].startswith("/"):
            log.warning("scan_job_refused reply=%s path=%s", job["reply"], job["path"])
            await msg.term()  # results go to a store node only, for absolute paths only
            return
        pool = self.loaded.pool
        if pool is None or pool.model.model_id != job["model"]:
            await msg.nak(delay=1.0)  # not this node's model (or none yet): another node
            return
        path = Path(job["path"])
        if not await asyncio.to_thread(os.access, path, os.R_OK):
            if msg.metadata.num_delivered >= w.MAX_DELIVER:
                why = f"no node could read {path} (every node needs the library at this path)"
                await self._answer(job, w.pack_error(job["id"], self.node, "refused", why), msg)
                await msg.term()
            else:
                log.info("scan_job_unreadable_here path=%s node=%s", path, self.node)
                await msg.nak(delay=0.5)
            return
        keep = asyncio.create_task(self._keep_claim(msg))
        try:
            awaited = await self._awaited(job) if job.get("ask") else True
            if awaited is not True:
                await self._orphan(job, msg, gone=awaited is None)
                return
            body = await self._analyse(job, path)
        except (Interrupted, NotReady):
            await msg.nak(delay=1.0)
            return
        except asyncio.CancelledError:  # this node stops: the job goes to another one now
            with contextlib.suppress(Exception):
                await asyncio.wait_for(msg.nak(), 1.0)
            raise
        except Exception as exc:  # this node's trouble, not the file's: another node tries
            log.warning("scan_job_failed_here path=%s error=%r", path, exc)
            if msg.metadata.num_delivered < w.MAX_DELIVER:
                await msg.nak(delay=1.0)
                return
            body = w.pack_error(job["id"], self.node, "undecodable", f"{type(exc).__name__}: {exc}")
        finally:
            keep.cancel()
        if await self._answer(job, body, msg):
            await msg.ack()
            self.done += 1
        else:
            await msg.nak(delay=1.0)

    async def _analyse(self, job: dict[str, Any], path: Path) -> bytes:
        cfg = self.cfg
        limits = Limits(int(cfg.max_file_mb * MB), cfg.max_audio_s, Budget(cfg.max_decode_s))
        try:
            result = await analyze_file(
                self.loaded,
                self.audio,
                path,
                str(job["mode"]),
                int(job.get("sampled") or cfg.sampled_windows),
                limits,
                executor=self.executor(),
                bulk=True,
                processes=self.processes(),
            )
        except (DecodeFailed, OverBudget, Refused, OSError) as exc:
            kind = w.error_kind(exc) if not isinstance(exc, OSError) else "undecodable"
            return w.pack_error(job["id"], self.node, kind, str(exc))
        return w.pack_analysis(job["id"], self.node, result)

    async def _orphan(self, job: dict[str, Any], msg: Msg, gone: bool) -> None:
        """A job nobody waits for: dropped; one whose store node does not answer is asked
        about again after the ack wait (it may be between two servers), dropped at the last
        delivery. Neither holds a slot meanwhile."""
        if not gone or msg.metadata.num_delivered >= w.MAX_DELIVER:
            log.info("scan_job_orphaned work=%s store_node_gone=%s", job["id"], gone)
            self.orphaned += 1
            await msg.term()
        else:
            await msg.nak(delay=self.cfg.scan_ack_wait_s)

    async def _awaited(self, job: dict[str, Any]) -> bool | None:
        """Whether the job's store node still waits for it: False when it says no (it gave
        the file up, or has its result already), None when nobody listens on its subject (a
        store node restarted since has another one, or is reconnecting), True otherwise (no
        answer in time: analysed as before). A restarted store node's old jobs used to be
        analysed up to ``MAX_DELIVER`` times, each answer retried for 20 s."""
        probe = w.pack_probe(job["id"], self.node)
        timeout = min(2.0, self.cfg.scan_ack_wait_s / 2)  # within the job's claim
        for attempt in range(PROBE_ATTEMPTS):
            try:
                reply = await self.nc.request(job["reply"], probe, timeout=timeout)
                return bool(msgpack.unpackb(reply.data).get("awaited", True))
            except NoRespondersError:  # gone, or its interest not on this server yet
                if attempt + 1 < PROBE_ATTEMPTS:
                    await asyncio.sleep(0.5)
            except Exception:  # a timeout, a lost server
                return True
        return None

    async def _keep_claim(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(self.cfg.scan_ack_wait_s / 3)
                await msg.in_progress()

    async def _answer(self, job: dict[str, Any], body: bytes, msg: Msg) -> bool:
        """Send the result; True when the job is finished (applied, a duplicate, or its store
        node is gone for good), False to try again later (the job is redelivered)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + UNCLAIMED_RETRY_S
        while True:
            try:
                await self.nc.request(job["reply"], body, timeout=10)
                return True
            except NoRespondersError:  # the store node is gone, or reconnecting right now
                if loop.time() > deadline or self._stopping.is_set():
                    log.info("scan_result_unclaimed work=%s", job["id"])
                    return msg.metadata.num_delivered >= w.MAX_DELIVER  # else redelivered
                with contextlib.suppress(Exception):
                    await msg.in_progress()
                await asyncio.sleep(0.5)
            except Exception as exc:  # a timeout, a server lost on the way: do it again later
                log.info("scan_result_unsent work=%s error=%r", job["id"], exc)
                return False
