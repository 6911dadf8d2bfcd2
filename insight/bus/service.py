"""The ``insight`` NATS micro service: one endpoint per entry of the endpoint table.

Every worker joins the same queue group, so N workers share the requests. Each request runs
in its own task (a nats-py subscription otherwise handles its messages one at a time), bounded
by a semaphore so a flood queues in NATS rather than in memory.

``$SRV.STATS`` counts what the task did, as the micro spec and the Go reference do: a request
is counted when it is answered, its processing time is decode + handler + reply (nats-py alone
would time the task launch), and every error reply counts as an error with ``last_error``
``"<code>:<description>"``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nats.errors import (
    ConnectionClosedError,
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import NoStreamResponseError, ServiceUnavailableError
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, Service, ServiceConfig, ServiceStats

from insight import __version__
from insight.api import Endpoint
from insight.bus import wire
from insight.bus.connection import flush_subscriptions
from insight.codec import decode, pack
from insight.errors import BusTimeout, BusUnavailable, InsightError
from insight.handlers import all_endpoints
from insight.metrics import REQUEST_LATENCY, REQUESTS

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from insight.app import App

log = logging.getLogger("insight.bus.service")

# what a handler meets while a NATS node or a JetStream leader is being replaced: the caller
# gets a 503 it can retry, not an "internal error"
BUS_DOWN = (
    ConnectionClosedError,
    ConnectionReconnectingError,
    NoRespondersError,
    NoStreamResponseError,
    OutboundBufferLimitError,
    ServiceUnavailableError,
    StaleConnectionError,
)


def bus_error(exc: Exception) -> InsightError | None:
    """The retryable error a NATS exception stands for, or None for any other exception."""
    if isinstance(exc, NatsTimeout):
        return BusTimeout(f"the message bus did not answer in time ({type(exc).__name__}); retry")
    if isinstance(exc, BUS_DOWN):
        return BusUnavailable(
            f"the message bus is unavailable ({type(exc).__name__}): a NATS node or a "
            "JetStream leader is being replaced; retry shortly"
        )
    return None


SERVICE_NAME = "insight"
QUEUE_GROUP = "insight"


def endpoint_name(ep: Endpoint) -> str:
    return ep.name.replace(".", "_").replace("-", "_")


async def reply_error(req: Request, err: InsightError, headers: dict[str, str] | None) -> str:
    """Answer with the error shape; returns ``last_error`` as the micro spec writes it."""
    fmt = wire.reply_format(headers)
    description = err.message[:1000].replace("\r", " ").replace("\n", " ")
    await req.respond_error(
        str(err.status),
        description,
        data=pack(err.body(), fmt),
        headers={wire.CONTENT_TYPE: fmt.content_type},
    )
    return f"{err.status}:{description}"


async def handle(app: App, ep: Endpoint, req: Request) -> str | None:
    """Serve one request; returns the error reported to the caller, or None on success."""
    headers = req.headers
    request_id = (headers or {}).get(wire.REQUEST_ID) or uuid.uuid4().hex[:12]
    started = time.perf_counter()
    status = "200"
    error: str | None = None
    try:
        model = decode(ep.request, req.data, wire.request_format(headers))
        result = await ep.handler(app, model)
        fmt = wire.reply_format(headers)
        body = pack(result, fmt) if result is not None else b""
        await req.respond(body, headers={wire.CONTENT_TYPE: fmt.content_type})
    except InsightError as err:
        status = str(err.status)
        if err.status >= 500:
            log.warning("request_failed id=%s ep=%s error=%s", request_id, ep.name, err.message)
        error = await reply_error(req, err, headers)
    except Exception as exc:
        mapped = bus_error(exc)
        if mapped is not None:
            status = str(mapped.status)
            log.warning("request_failed id=%s ep=%s error=%s", request_id, ep.name, mapped.message)
            error = await reply_error(req, mapped, headers)
        else:
            status = "500"
            log.exception("request_crashed id=%s ep=%s", request_id, ep.name)
            error = await reply_error(
                req, InsightError(f"internal error: {type(exc).__name__}"), headers
            )
    finally:
        REQUESTS.labels(endpoint=ep.name, status=status).inc()
        REQUEST_LATENCY.labels(endpoint=ep.name).observe(time.perf_counter() - started)
    return error


@dataclass
class Tally:
    """One endpoint's numbers for ``$SRV.STATS`` (nanoseconds, like the spec)."""

    num_requests: int = 0
    num_errors: int = 0
    processing_time: int = 0
    last_error: str | None = None

    def record(self, elapsed_ns: int, error: str | None) -> None:
        self.num_requests += 1
        self.processing_time += elapsed_ns
        if error is not None:
            self.num_errors += 1
            self.last_error = error


class InsightService(Service):
    """nats-py's micro service with the stats of our request tasks instead of its own."""

    def __init__(self, nc: NATS, config: ServiceConfig, tallies: dict[str, Tally]) -> None:
        super().__init__(nc, config)
        self.tallies = tallies

    def stats(self) -> ServiceStats:
        stats = super().stats()
        for ep in stats.endpoints:
            t = self.tallies.get(ep.name, Tally())
            ep.num_requests, ep.num_errors = t.num_requests, t.num_errors
            ep.processing_time, ep.last_error = t.processing_time, t.last_error
            ep.average_processing_time = t.processing_time // max(t.num_requests, 1)
        return stats


class BusService:
    """Registers the endpoint table as a micro service on ``app.nc``."""

    def __init__(self, app: App, max_concurrency: int = 64) -> None:
        self.app = app
        self.service: InsightService | None = None
        self.tallies: dict[str, Tally] = {}
        self._slots = asyncio.Semaphore(max_concurrency)
        self._inflight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        nc = self.app.nc
        assert nc is not None, "connect to NATS first"
        config = ServiceConfig(
            name=SERVICE_NAME,
            version=__version__,
            description="CLAP embeddings, search, mood and taste for Music Assistant",
            queue_group=QUEUE_GROUP,
        )
        self.service = InsightService(nc, config, self.tallies)
        await self.service.start()
        for ep in all_endpoints():
            self.tallies[endpoint_name(ep)] = Tally()
            await self.service.add_endpoint(
                EndpointConfig(
                    name=endpoint_name(ep),
                    subject=ep.subject,
                    handler=self._handler(ep),
                    metadata={"http": f"{ep.method} /api/v1{ep.path}"},
                )
            )
        await flush_subscriptions(nc)  # subscribed before anyone is told we are up

    def _handler(self, ep: Endpoint):  # type: ignore[no-untyped-def]
        async def on_request(req: Request) -> None:
            await self._slots.acquire()
            task = asyncio.create_task(self._run(ep, req))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

        return on_request

    async def _run(self, ep: Endpoint, req: Request) -> None:
        started = time.perf_counter_ns()
        error: str | None = "500:internal error: cancelled"
        try:
            error = await handle(self.app, ep, req)
        finally:
            self._slots.release()
            self.tallies[endpoint_name(ep)].record(time.perf_counter_ns() - started, error)

    async def stop(self) -> None:
        """Stop taking requests, then let the ones in flight finish."""
        if self.service is not None:
            await self.service.stop()
            self.service = None
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=30)
