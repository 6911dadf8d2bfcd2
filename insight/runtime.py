"""Running the pieces: embedded NATS, a worker (app + bus service + consumers), the bridge.

``insight serve`` runs all three in one process; ``insight worker`` / ``insight bridge`` run one
each against an existing NATS. Shutdown drains: the service stops taking requests, requests in
flight finish, consumers stop fetching, then connections drain and the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field

from aiohttp import web
from nats.aio.client import Client as NATS

from insight import compose
from insight.app import App
from insight.bus.auth import embedded_auth
from insight.bus.client import BusClient
from insight.bus.connection import connect
from insight.bus.embedded import EmbeddedNats
from insight.bus.lease import LeaseLost, StoreLease, store_identity
from insight.bus.service import BusService
from insight.config import Settings, redact_url
from insight.http.bridge import Bridge

log = logging.getLogger("insight.runtime")


@dataclass
class Worker:
    settings: Settings
    app: App = field(init=False)
    service: BusService | None = None
    lease: StoreLease | None = None

    def __post_init__(self) -> None:
        self.app = App(self.settings)

    async def start(self, nats_url: str) -> None:
        """Connect, take the store lease, build and start the services (insight.compose), then
        answer requests: nothing is asked of a service before it is ready."""
        self.app.nc = await connect(nats_url, self.settings.nats, name="insight-worker")
        self.app.js = self.app.nc.jetstream()
        await self.take_store_lease()
        await compose.start(self.app)
        self.service = BusService(self.app)
        await self.service.start()
        log.info("worker_started nats=%s", ",".join(map(redact_url, nats_url.split(","))))

    async def take_store_lease(self) -> None:
        """Before the store opens or a request can arrive: be the service's only store (or
        share it); raises ``LeaseRefused`` when another store serves (see insight.bus.lease)."""
        storage = self.settings.storage
        identity = store_identity(storage, self.app.instance_id)
        if identity is None or storage.lease_ttl_s == 0:
            return
        assert self.app.js is not None
        lease = StoreLease(
            self.app.js,
            identity,
            self.app.worker_id,
            storage.lease_ttl_s,
            replicas=self.settings.nats.replicas,
        )
        await lease.acquire()
        self.lease = lease

    async def stop(self) -> None:
        if self.service is not None:
            await self.service.stop()
        await compose.stop(self.app)
        if self.lease is not None:
            await self.lease.release()
        if self.app.nc is not None and not self.app.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.app.nc.drain()
        log.info("worker_stopped")


@dataclass
class BridgeServer:
    settings: Settings
    nc: NATS | None = None
    runner: web.AppRunner | None = None
    port: int = 0

    async def start(self, nats_url: str) -> None:
        self.nc = await connect(nats_url, self.settings.nats, name="insight-bridge")
        bus = BusClient(self.nc, timeout=self.settings.server.request_timeout_s)
        self.runner = Bridge(bus, self.settings.server).runner()
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.server.host, self.settings.server.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.server.port
        log.info("bridge_listening url=http://%s:%d/api/v1", self.settings.server.host, self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()


@dataclass
class Stack:
    """Whatever ``serve`` / ``worker`` / ``bridge`` started, stopped in reverse order."""

    settings: Settings
    embedded: EmbeddedNats | None = None
    worker: Worker | None = None
    bridge: BridgeServer | None = None

    @property
    def nats_url(self) -> str:
        return self.embedded.url if self.embedded else self.settings.nats.url

    def client_options(self) -> dict[str, str]:
        """``nats.connect`` credentials for another client of the embedded server (tests)."""
        return self.embedded.client_options() if self.embedded else {}

    async def start(self, *, worker: bool = True, bridge: bool = True) -> None:
        if not self.settings.nats.url:
            self.embedded = embedded_server(self.settings)
            await self.embedded.start()
            log_how_to_connect(self.embedded, self.settings)
        try:
            if worker:
                self.worker = Worker(self.settings)
                await self.worker.start(self.nats_url)
            if bridge:
                self.bridge = BridgeServer(self.settings)
                await self.bridge.start(self.nats_url)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()
        if self.worker is not None:
            await self.worker.stop()
        if self.embedded is not None:
            self.embedded.stop()


def embedded_server(settings: Settings) -> EmbeddedNats:
    """The embedded nats-server of ``serve``, never open: the user's or the stored credentials."""
    auth_file = settings.nats.auth_path
    assert auth_file is not None, "Settings links nats.auth_file to the data dir"
    return EmbeddedNats(
        settings.storage.data_dir / "nats",
        port=settings.nats.port,
        max_payload_mb=settings.nats.max_payload_mb,
        auth=embedded_auth(settings.nats, auth_file),
    )


def log_how_to_connect(server: EmbeddedNats, settings: Settings) -> None:
    """Tell the operator how another local client joins this bus (never the secret itself)."""
    auth = server.auth
    if auth is None:
        return
    if auth.source.startswith("INSIGHT_NATS__"):
        how = f"with the credentials of {auth.source}"
    else:
        how = (
            f"as user {auth.user} with the password in {auth.source} (mode 0600; insight worker "
            f"and ma-bridge read it with INSIGHT_STORAGE__DATA_DIR={settings.storage.data_dir})"
        )
    log.info("nats_embedded_auth url=%s clients_connect=%r", server.url, how)


async def run_until_signal(settings: Settings, *, worker: bool, bridge: bool) -> None:
    stack = Stack(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stack.start(worker=worker, bridge=bridge)
    waits = [asyncio.ensure_future(stop.wait())]
    lease = stack.worker.lease if stack.worker is not None else None
    if lease is not None:
        waits.append(asyncio.ensure_future(lease.lost.wait()))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        log.info("shutdown_requested reason=%s", "signal" if stop.is_set() else "store_lease_lost")
    finally:
        for w in waits:
            w.cancel()
        await stack.stop()
    if lease is not None and lease.lost.is_set():
        raise LeaseLost("this worker lost the store lease to another store; stopped")
