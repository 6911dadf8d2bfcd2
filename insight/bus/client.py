"""Asking the ``insight`` service: what the HTTP bridge (and any Python client) uses."""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from insight.bus import wire
from insight.codec import Format, pack, unpack
from insight.errors import BusTimeout, InsightError, NotReady, PayloadTooLarge


class BusReply:
    def __init__(self, data: bytes, fmt: Format, status: int) -> None:
        self.data, self.fmt, self.status = data, fmt, status

    def decoded(self) -> Any:
        return unpack(self.data, self.fmt)


class BusClient:
    def __init__(self, nc: NATS, timeout: float = 30.0) -> None:
        self.nc = nc
        self.timeout = timeout

    async def request_raw(
        self,
        subject: str,
        payload: bytes,
        *,
        reply_format: Format = Format.MSGPACK,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> BusReply:
        """Send one request; errors come back as a reply with their HTTP status."""
        if len(payload) > self.nc.max_payload:
            raise PayloadTooLarge(
                f"request of {len(payload)} bytes exceeds the bus max payload "
                f"({self.nc.max_payload} bytes); send audio in smaller pieces or stream it"
            )
        headers = {wire.ACCEPT: reply_format.content_type, wire.CONTENT_TYPE: "application/msgpack"}
        if request_id:
            headers[wire.REQUEST_ID] = request_id
        try:
            msg = await self.nc.request(
                subject, payload, timeout=timeout or self.timeout, headers=headers
            )
        except NoRespondersError:
            raise NotReady(
                "no insight worker is serving on the bus; start one with `insight worker`"
            ) from None
        except NatsTimeout:
            raise BusTimeout(f"no reply on {subject} within {timeout or self.timeout}s") from None
        status = int((msg.headers or {}).get(wire.ERROR_CODE_HEADER, 200))
        return BusReply(msg.data, reply_format, status)

    async def call(self, subject: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        """Request with a dict body and a decoded reply; raises ``InsightError`` on errors."""
        reply = await self.request_raw(subject, pack(body or {}), **kw)
        data = reply.decoded()
        if reply.status >= 400:
            raise InsightError.from_body(data, reply.status)
        return data
