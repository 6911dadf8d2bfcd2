"""The aiohttp bridge: ``/api/v1/...`` → the same request on the bus → the reply back.

It holds no business logic. It negotiates the body format (msgpack or JSON), merges path and
query parameters into the request, splits raw PCM frames to fit the bus max payload, checks
the optional API key, and maps every failure to the one error shape.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from insight.api import Endpoint, all_endpoints
from insight.bus.client import BusClient
from insight.codec import Format, format_of, pack, unpack
from insight.config import ServerSettings
from insight.errors import (
    BadRequest,
    InsightError,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from insight.http.dashboard import add_dashboard, is_public
from insight.http.openapi import DOCS_HTML, openapi_document
from insight.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("insight.http")

API = "/api/v1"
PUBLIC_PATHS = {f"{API}/health"}
FRAME_OVERHEAD = 4096  # room for the msgpack envelope around a chunk of PCM

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reply_format(request: web.Request) -> Format:
    """JSON only when the client asks for it (and not for msgpack too); msgpack otherwise."""
    accept = request.headers.get("Accept", "").lower()
    return Format.JSON if "json" in accept and "msgpack" not in accept else Format.MSGPACK


def forward_payload(body: dict[str, Any]) -> bytes:
    """The request for the bus. Floats stay 64-bit (a JSON 1e300 would overflow float32: a
    crash before), and what msgpack cannot carry (lone surrogates from JSON ``\\ud800``, too
    deep nesting) is the client's error."""
    try:
        return msgpack.packb(body, use_bin_type=True)
    except (ValueError, OverflowError, TypeError) as exc:
        raise BadRequest(f"request body cannot be forwarded: {exc}"[:500]) from None


def _partly_accepted(status: int, body: bytes, fmt: Format, accepted: int) -> web.Response:
    """A split frames body failed after its first ``accepted`` bytes were stored: say so."""
    err = InsightError.from_body(unpack(body, fmt), status)
    err.message += f" (the first {accepted} bytes of this body were accepted: resend from there)"
    return error_response(err, fmt)


def error_response(err: InsightError, fmt: Format) -> web.Response:
    return web.Response(
        status=err.status, body=pack(err.body(), fmt), content_type=fmt.content_type
    )


class Bridge:
    def __init__(self, bus: BusClient, settings: ServerSettings) -> None:
        self.bus = bus
        self.settings = settings
        self.max_body = int(settings.max_body_mb * 1024 * 1024)

    # --- app ---------------------------------------------------------------------------

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
            if ep.body == "raw":
                return await self._frames(ep, request, fmt, request_id)
            body = await self._body(ep, request)
            body.update(request.match_info)
            payload = forward_payload(body)
            reply = await self.bus.request_raw(
                ep.subject, payload, reply_format=fmt, request_id=request_id
            )
            status = ep.status if reply.status < 400 else reply.status
            if status == 204:
                return web.Response(status=204)
            return web.Response(status=status, body=reply.data, content_type=fmt.content_type)

        return route

    async def _read(self, request: web.Request) -> bytes:
        """The body; a declared Content-Length over the limit is refused before reading."""
        if request.content_length is not None and request.content_length > self.max_body:
            raise PayloadTooLarge(f"request body exceeds {self.settings.max_body_mb} MiB")
        return await request.read()

    async def _body(self, ep: Endpoint, request: web.Request) -> dict[str, Any]:
        body: Any = {}
        if ep.body != "none" or request.can_read_body:
            raw = await self._read(request)
            if raw:
                in_fmt = format_of(request.headers.get("Content-Type"))
                if in_fmt is None:
                    raise UnsupportedMediaType(
                        f"unsupported Content-Type {request.content_type!r}: "
                        "send application/msgpack or application/json"
                    )
                body = unpack(raw, in_fmt)
        if not isinstance(body, dict):
            raise BadRequest(f"request body must be a map/object, got {type(body).__name__}")
        for key, value in request.query.items():
            body.setdefault(key, value)
        return body

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
        data = await self._read(request)
        session_id = request.match_info["session_id"]
        chunk = max(1024, self.bus.nc.max_payload - FRAME_OVERHEAD)
        chunk -= chunk % 24  # a whole number of sample frames for every format and layout
        reply = None
        for start in range(0, max(len(data), 1), chunk):
            piece = {
                "session_id": session_id,
                "data": data[start : start + chunk],
                "remaining_bytes": len(data) - start,
            }
            reply = await self.bus.request_raw(
                ep.subject, pack(piece), reply_format=fmt, request_id=request_id
            )
            if reply.status >= 400:
                if start:  # later chunks can still fail (NaN samples, the session ended)
                    return _partly_accepted(reply.status, reply.data, fmt, start)
                break
        assert reply is not None
        return web.Response(status=reply.status, body=reply.data, content_type=fmt.content_type)
