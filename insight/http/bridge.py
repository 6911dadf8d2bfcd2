"""The aiohttp bridge: ``/api/v1/...`` → the same request on the bus → the reply back.

It holds no business logic. It negotiates the body format (msgpack or JSON), merges path and
query parameters into the request, splits raw PCM frames to fit the bus max payload, checks
the optional API key, and maps every failure to the one error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgpack
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from insight.api import Endpoint
from insight.bus.client import BusClient
from insight.codec import Format, format_of, pack, unpack
from insight.config import ServerSettings
from insight.errors import (
    BadRequest,
    InsightError,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from insight.handlers import all_endpoints
from insight.http.body import LARGE_KEY, Bodies
from insight.http.dashboard import add_dashboard, is_public
from insight.http.memory import keep_mmap_threshold
from insight.http.openapi import DOCS_HTML, openapi_document
from insight.http.server import bridge_runner
from insight.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("insight.http")

API = "/api/v1"
PUBLIC_PATHS = {f"{API}/health"}
FRAME_OVERHEAD = 4096  # room for the msgpack envelope around a chunk of PCM

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reply_format(request: web.Request) -> Format:
    """What ``Accept`` names (JSON only when it names JSON and not msgpack); when it names
    neither (absent, ``*/*``), the format of the request body: a JSON body gets a JSON reply,
    so a JSON-only client (a generated one) works as is. A bare request gets msgpack."""
    accept = request.headers.get("Accept", "").lower()
    if "msgpack" in accept:
        return Format.MSGPACK
    if "json" in accept:
        return Format.JSON
    ctype = request.headers.get("Content-Type", "").lower()
    return Format.JSON if "json" in ctype and "msgpack" not in ctype else Format.MSGPACK


def forward_payload(body: dict[str, Any]) -> bytes:
    """The request for the bus. Floats stay 64-bit (a JSON 1e300 would overflow float32: a
    crash before), and what msgpack cannot carry (lone surrogates from JSON ``\\ud800``, too
    deep nesting) is the client's error."""
    try:
        return msgpack.packb(body, use_bin_type=True)
    except OverflowError:
        where = _huge_int(body)
        raise BadRequest(
            f"invalid request: {where}: integer out of range (64 bits at most)"[:500]
        ) from None
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"request body cannot be forwarded: {exc}"[:500]) from None


def _huge_int(body: Any) -> str:
    """Where in ``body`` the first integer msgpack cannot carry is (``field.0.sub``)."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and not -(2**63) <= value < 2**64:
            return path or "body"
        items = (
            value.items()
            if isinstance(value, dict)
            else enumerate(value)
            if isinstance(value, list)
            else ()
        )
        for key, item in reversed(list(items)):
            stack.append((f"{path}.{key}" if path else str(key), item))
    return "body"


def _partly_accepted(status: int, body: bytes, fmt: Format, accepted: int) -> web.Response:
    """A split frames body failed after its first ``accepted`` bytes were stored: say so."""
    err = InsightError.from_body(unpack(body, fmt), status)
    err.message += f" (the first {accepted} bytes of this body were accepted: resend from there)"
    return error_response(err, fmt)


def _offset_param(request: web.Request) -> int | None:
    """The frames body's byte offset in the session (``?offset=``), if the client sent one."""
    raw = request.query.get("offset")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
        raise BadRequest(f"offset must be a whole number of bytes, got {raw[:40]!r}")
    return int(raw)


def error_response(err: InsightError, fmt: Format) -> web.Response:
    return web.Response(
        status=err.status, body=pack(err.body(), fmt), content_type=fmt.content_type
    )


class Bridge:
    def __init__(self, bus: BusClient, settings: ServerSettings) -> None:
        self.bus = bus
        self.settings = settings
        self.max_body = int(settings.max_body_mb * 1024 * 1024)
        self.bodies = Bodies(self.max_body, settings.max_body_mb, settings.body_timeout_s)
        self._sessions: dict[str, tuple[asyncio.Lock, int]] = {}

    # --- app ---------------------------------------------------------------------------

    def runner(self) -> web.AppRunner:
        """The app with the server options of ``http/server.py`` (timeouts, error shape)."""
        keep_mmap_threshold()
        app = self.build()

        async def close_bodies(_: web.Application) -> None:
            self.bodies.close()

        app.on_cleanup.append(close_bodies)
        return bridge_runner(app, self.settings)

    def build(self) -> web.Application:
        app = web.Application(
            client_max_size=self.max_body,
            # CORS outermost: error replies (401, 404, 413, ...) carry the headers too, so a
            # browser client can read them.
            middlewares=[self.cors_middleware, self.errors_middleware, self.auth_middleware],
        )
        endpoints = all_endpoints()
        # Longer literal paths first, so /tracks/{id}/similar wins over /tracks/{id:.+}.
        for ep in sorted(endpoints, key=lambda e: (e.path.count("{"), -len(e.path))):
            app.router.add_route(ep.method, API + ep.path, self._route(ep), name=ep.name)
        doc = openapi_document(endpoints)

        async def openapi_json(_: web.Request) -> web.Response:
            return web.json_response(doc)

        async def docs(_: web.Request) -> web.Response:
            return web.Response(text=DOCS_HTML, content_type="text/html")

        app.router.add_get(f"{API}/openapi.json", openapi_json)
        app.router.add_get(f"{API}/docs", docs)
        app.router.add_get("/metrics", self.metrics)
        add_dashboard(app, auth=self.settings.api_key is not None)
        return app

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- middlewares -------------------------------------------------------------------

    @web.middleware
    async def errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        fmt = reply_format(request)
        started = time.perf_counter()
        route = request.match_info.route.name or "unmatched"
        try:
            response = await handler(request)
        except RequestTimeout as err:
            response = error_response(err, fmt)
            response.force_close()  # what was sent of the body is dropped with the connection
        except InsightError as err:
            response = error_response(err, fmt)
        except web.HTTPRequestEntityTooLarge:
            response = error_response(
                PayloadTooLarge(f"request body exceeds {self.settings.max_body_mb} MiB"), fmt
            )
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status, "HTTP_ERROR")
            message = f"{exc.reason}: {request.method} {request.path}"
            response = error_response(InsightError(message, code=code, status=exc.status), fmt)
            if "Allow" in exc.headers:  # 405 must list the methods the path supports
                response.headers["Allow"] = exc.headers["Allow"]
        except ConnectionError:
            # The client went away mid-request: nothing to answer and not a crash (aiohttp
            # ignores a premature disconnection quietly).
            log.info("client_disconnected path=%s", request.path)
            raise
        except Exception:
            log.exception("bridge_crashed path=%s", request.path)
            response = error_response(InsightError("internal error in the HTTP bridge"), fmt)
        finally:
            if request.get(LARGE_KEY):
                self.bodies.memory.large_body_done()
        HTTP_REQUESTS.labels(route=route, status=str(response.status)).inc()
        HTTP_LATENCY.labels(route=route).observe(time.perf_counter() - started)
        return response

    @web.middleware
    async def auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = self.settings.api_key
        public = request.path in PUBLIC_PATHS or is_public(request.path)
        if key is not None and not public and request.method != "OPTIONS":
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {key.get_secret_value()}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise Unauthorized("missing or wrong API key: send `Authorization: Bearer <key>`")
        return await handler(request)

    @web.middleware
    async def cors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origins = self.settings.cors_origins
        origin = request.headers.get("Origin")
        allowed = origin if origin and ("*" in origins or origin in origins) else None
        if request.method == "OPTIONS" and allowed:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if allowed:
            response.headers["Access-Control-Allow-Origin"] = allowed
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Accept"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        return response

    # --- endpoints ---------------------------------------------------------------------

    def _route(self, ep: Endpoint) -> Handler:
        async def route(request: web.Request) -> web.Response:
            fmt = reply_format(request)
            request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex[:12]
            for name, value in request.match_info.items():
                if "\x00" in value:
                    raise BadRequest(f"{name}: must not contain a NUL character")
            if ep.body == "raw":
                return await self._frames(ep, request, fmt, request_id)
            body, size = await self._body(ep, request)
            body.update(request.match_info)
            payload: bytes = await self.bodies.off_loop(size, forward_payload, body)
            reply = await self.bus.request_raw(
                ep.subject, payload, reply_format=fmt, request_id=request_id
            )
            status = ep.status if reply.status < 400 else reply.status
            if status == 204:
                return web.Response(status=204)
            return web.Response(status=status, body=reply.data, content_type=fmt.content_type)

        return route

    @contextlib.asynccontextmanager
    async def _serial(self, session_id: str) -> AsyncIterator[None]:
        """Frames bodies of one session are sent one at a time: the chunks of a split body
        stay together, and the first chunk's whole-body checks see every earlier body."""
        lock, users = self._sessions.get(session_id, (asyncio.Lock(), 0))
        self._sessions[session_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._sessions[session_id]
            if users == 1:
                del self._sessions[session_id]
            else:
                self._sessions[session_id] = (lock, users - 1)

    async def _body(self, ep: Endpoint, request: web.Request) -> tuple[dict[str, Any], int]:
        """The decoded body with the query merged in, and the size of the raw body."""
        body: Any = {}
        raw = b""
        if ep.body != "none" or request.can_read_body:
            raw = await self.bodies.read(request)
            if raw:
                in_fmt = format_of(request.headers.get("Content-Type"))
                if in_fmt is None:
                    raise UnsupportedMediaType(
                        f"unsupported Content-Type {request.content_type!r}: "
                        "send application/msgpack or application/json"
                    )
                body = await self.bodies.decode(raw, in_fmt)
        if not isinstance(body, dict):
            raise BadRequest(f"request body must be a map/object, got {type(body).__name__}")
        for key, value in request.query.items():
            body.setdefault(key, value)
        return body, len(raw)

    async def _frames(
        self, ep: Endpoint, request: web.Request, fmt: Format, request_id: str
    ) -> web.Response:
        """Raw PCM: split into chunks that fit the bus, sent in order to the same session."""
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in ("", "application/octet-stream"):
            raise UnsupportedMediaType(
                f"unsupported Content-Type {ctype!r} for frames: send raw PCM as "
                "application/octet-stream"
            )
        offset = _offset_param(request)
        data = await self.bodies.read(request)
        session_id = request.match_info["session_id"]
        async with self._serial(session_id):
            return await self._send_frames(ep, session_id, data, offset, fmt, request_id)

    async def _send_frames(
        self,
        ep: Endpoint,
        session_id: str,
        data: bytes,
        offset: int | None,
        fmt: Format,
        request_id: str,
    ) -> web.Response:
        chunk = max(1024, self.bus.nc.max_payload - FRAME_OVERHEAD)
        chunk -= chunk % 24  # a whole number of sample frames for every format and layout
        reply = None
        for start in range(0, max(len(data), 1), chunk):
            piece: dict[str, Any] = {
                "session_id": session_id,
                "data": data[start : start + chunk],
                "remaining_bytes": len(data) - start,
            }
            if offset is not None:
                piece["offset"] = offset + start
            reply = await self.bus.request_raw(
                ep.subject, pack(piece), reply_format=fmt, request_id=request_id
            )
            if reply.status >= 400:
                if start:  # later chunks can still fail (NaN samples, the session ended)
                    return _partly_accepted(reply.status, reply.data, fmt, start)
                break
        assert reply is not None
        return web.Response(status=reply.status, body=reply.data, content_type=fmt.content_type)
