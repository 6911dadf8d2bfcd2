"""The aiohttp server under the bridge: its timeouts and its answer to malformed HTTP.

aiohttp answers a request it cannot parse (a request line over its limit, a bad header) with
plain text and logs a traceback, before any middleware runs. Here such requests get the
project's error shape (msgpack, as for any request that named no format) and one log line.

Timeouts: a request head must arrive within ``header_timeout_s`` of the connection or of the
previous reply (aiohttp's keep-alive timer, which also closes a connection that trickles an
unfinished head); a body must arrive within ``body_timeout_s`` of its head (``http/body.py``);
after an error reply the rest of an unread body is drained for at most ``LINGER_S``.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from insight.codec import Format, pack
from insight.config import ServerSettings
from insight.errors import InsightError
from insight.limits import MAX_ID_CHARS, MAX_REQUEST_LINE

log = logging.getLogger("insight.http")

LINGER_S = 2.0
_CODES = {400: "BAD_REQUEST", 413: "PAYLOAD_TOO_LARGE", 431: "HEADERS_TOO_LARGE"}


class _Handler(RequestHandler):  # type: ignore[misc]
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("reply already started; cannot send the error")
        if status >= 500:
            log.error("http_server_error status=%d", status, exc_info=exc)
            text = "internal error in the HTTP server"
        else:
            text = f"malformed HTTP request: {message or exc or 'bad request'}"[:300]
            if isinstance(exc, LineTooLong):
                text += (
                    f" (the request line may be {MAX_REQUEST_LINE} bytes: ids are at most "
                    f"{MAX_ID_CHARS} characters)"
                )
            log.info("http_bad_request status=%d reason=%s", status, text[:200])
        err = InsightError(text, code=_CODES.get(status, "HTTP_ERROR"), status=status)
        resp = web.Response(
            status=status, body=pack(err.body(), Format.MSGPACK), content_type="application/msgpack"
        )
        resp.force_close()
        return resp


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _Handler(self, loop=self._loop, **self._kwargs)


class BridgeRunner(web.AppRunner):
    """``AppRunner`` whose connections use ``_Handler``."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server  # same state, one method more: the handler class
        return server


def bridge_runner(app: web.Application, settings: ServerSettings) -> web.AppRunner:
    options: dict[str, Any] = {
        "keepalive_timeout": settings.header_timeout_s,
        "max_line_size": MAX_REQUEST_LINE,
        "lingering_time": LINGER_S,
    }
    return BridgeRunner(app, access_log=None, handle_signals=False, **options)
