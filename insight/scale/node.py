"""``insight worker --role inference``: a stateless embedding worker on the bus.

No store, no watcher, no history, no store lease, no ``insight`` service endpoints: it loads
the configured model and answers embedding requests (``insight.scale.protocol``) on its own
subjects (the store node's dispatcher picks it, bounded in-flight) and in the queue group
``insight-infer`` on the shared ones. It announces itself (model id, dim, capacity) every
``INSIGHT_INFERENCE__HEARTBEAT_S`` and when a store node asks, and says goodbye on a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from insight.bus.connection import connect, flush_subscriptions
from insight.config import Settings, redact_url
from insight.errors import Busy, InsightError, NotReady
from insight.scale import protocol as p
from insight.tasks import cancel_and_wait

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg

    from insight.app import App
    from insight.watcher.host_work import HostProcesses

log = logging.getLogger("insight.scale.node")

MODEL_RETRY_S = 10.0


class InferenceNode:
    def __init__(self, settings: Settings) -> None:
        from insight.app import App

        self.settings = settings
        self.cfg = settings.inference
        self.app: App = App(settings)  # for its model loading only: no store is opened
        self.worker_id = self.app.worker_id
        self.capacity = max(self.cfg.remote_inflight, self.cfg.runners * 2)
        self.max_items = self.cfg.remote_max_windows
        self.nc: NATS | None = None
        self.inflight = 0
        self.served = 0
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self._beat: asyncio.Task[None] | None = None
        self.scan: Any = None  # insight.scale.scan.ScanConsumer with the watcher extra
        self._executor: ThreadPoolExecutor | None = None
        self._processes: HostProcesses | None = None  # decoding for distributed scans

    async def start(self, nats_url: str) -> None:
        self.nc = await connect(nats_url, self.settings.nats, name="insight-inference")
        self.app.nc, self.app.js = self.nc, self.nc.jetstream()
        await self.app.load_configured_model()
        await self._start_scan()
        nc = self.nc
        for kind in p.KINDS:
            self._subs.append(
                await nc.subscribe(p.worker_subject(self.worker_id, kind), cb=self._taker(kind))
            )
            self._subs.append(
                await nc.subscribe(p.shared_subject(kind), p.QUEUE_GROUP, cb=self._taker(kind))
            )
        self._subs.append(await nc.subscribe(p.DISCOVER, cb=self._on_discover))
        await flush_subscriptions(nc)
        self._beat = asyncio.create_task(self._heartbeat(), name="inference-heartbeat")
        log.info(
            "inference_worker_started id=%s nats=%s model=%s capacity=%d",
            self.worker_id,
            ",".join(map(redact_url, nats_url.split(","))),
            self.app.pool.model.model_id if self.app.pool else None,
            self.capacity,
        )

    async def _start_scan(self) -> None:
        """Take part in distributed scans (needs the ``watcher`` extra for decoding)."""
        try:
            from insight.scale.scan import ScanConsumer
        except ImportError:
            log.info("scan_consumer_unavailable reason=watcher_extra_not_installed")
            return
        from insight.watcher.host_work import HostProcesses
        from insight.watcher.polite import decode_processes

        cfg = self.settings.watcher
        slots = cfg.workers
        self._executor = ThreadPoolExecutor(slots, thread_name_prefix="insight-scan")
        executor = self._executor
        n = decode_processes(cfg.processes, slots, background=True)  # one per job at most
        self._processes = procs = HostProcesses(n, cfg.nice) if n else None
        assert self.nc is not None and self.app.js is not None
        self.scan = await ScanConsumer(
            self.settings.watcher,
            self.settings.audio,
            self.app.loaded,
            self.nc,
            self.app.js,
            self.worker_id,
            slots,
            lambda: executor,
            replicas=self.settings.nats.replicas,
            processes=lambda: procs,
        ).start()

    def hello(self) -> p.Hello | None:
        pool = self.app.pool
        if pool is None:
            return None
        model = pool.model
        slots = self.scan.slots if self.scan is not None else 0
        return p.Hello(
            self.worker_id,
            model.model_id,
            model.dim,
            self.capacity,
            self.max_items,
            slots,
            socket.gethostname(),
            os.getpid(),
        )

    async def announce(self) -> None:
        hello = self.hello()
        if hello is not None and self.nc is not None and not self.nc.is_closed:
            await self.nc.publish(p.HELLO, hello.pack())

    async def _on_discover(self, msg: Msg) -> None:
        with contextlib.suppress(Exception):
            await self.announce()

    async def _heartbeat(self) -> None:
        """Announce every heartbeat; without a model, try to load it (a shared volume the
        store node downloads it to) every ``MODEL_RETRY_S``."""
        last_try = asyncio.get_running_loop().time()
        while not self._stopping.is_set():
            if (
                self.app.pool is None
                and asyncio.get_running_loop().time() - last_try > MODEL_RETRY_S
            ):
                last_try = asyncio.get_running_loop().time()
                await self.app.load_configured_model()
            with contextlib.suppress(Exception):
                await self.announce()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.cfg.heartbeat_s)

    def _taker(self, kind: p.Kind):  # type: ignore[no-untyped-def]
        async def on_msg(msg: Msg) -> None:
            if self.inflight >= self.capacity:
                await self._respond(msg, p.pack_error(None, Busy("inference worker is full")))
                return
            self.inflight += 1
            task = asyncio.create_task(self._serve(kind, msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return on_msg

    async def _serve(self, kind: p.Kind, msg: Msg) -> None:
        work_id: str | None = None
        try:
            req = p.unpack_request(msg.data, kind, self.max_items)
            work_id = req.work_id
            pool = self.app.pool
            if pool is None:
                raise NotReady(self.app.model_error or "no model loaded")
            if req.model_id != pool.model.model_id:
                raise InsightError(
                    f"this worker runs model {pool.model.model_id}, not {req.model_id}", status=409
                )
            if kind == "text":
                vectors = await pool.embed_texts(req.items, background=req.bulk)
            else:  # another node's scan: its own timeout bounds it, it is not held back here
                vectors = await pool.embed_windows(req.items, bulk=req.bulk, yields=False)
            body = p.pack_reply(req.work_id, pool.model.model_id, vectors)
            self.served += 1
        except InsightError as err:
            body = p.pack_error(work_id, err)
        except Exception as exc:
            log.exception("inference_request_crashed work=%s", work_id)
            body = p.pack_error(work_id, InsightError(f"internal error: {type(exc).__name__}"))
        finally:
            self.inflight -= 1
        await self._respond(msg, body)

    async def _respond(self, msg: Msg, body: bytes) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(body)

    async def stop(self) -> None:
        self._stopping.set()
        if self.scan is not None:
            await self.scan.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            self._processes.shutdown()
        if self._beat is not None:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._beat), 5)
            await cancel_and_wait([self._beat])
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if self._tasks:  # requests in flight finish
            await asyncio.wait(self._tasks, timeout=30)
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.publish(p.BYE, self.worker_id.encode())
                await self.nc.drain()
        await self.app.tasks.close()
        if self.app.pool is not None:
            await self.app.pool.close()
        log.info("inference_worker_stopped id=%s served=%d", self.worker_id, self.served)


async def run_inference_node(settings: Settings) -> None:
    """``insight worker --role inference`` until SIGINT/SIGTERM."""
    url = settings.nats.url
    if not url:
        from insight.config import ConfigError

        raise ConfigError(
            "an inference worker joins an existing bus: set --nats-url or INSIGHT_NATS__URL"
        )
    node = InferenceNode(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await node.start(url)
    try:
        await stop.wait()
    finally:
        await node.stop()
