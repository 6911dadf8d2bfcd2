"""Request bodies: read within a deadline, parsed off the event loop when large.

A client that sends its body slowly (or stops) is answered ``408`` once
``INSIGHT_SERVER__BODY_TIMEOUT_S`` has passed since its head, and the connection is closed, so
nothing it sent stays buffered. A large JSON or msgpack body (``OFF_LOOP_BYTES`` and up) is
decoded in a small thread pool, ``PARSERS`` at a time, so health and other requests keep being
answered meanwhile. JSON is parsed with Python-level number hooks: they are where the parsing
thread gives the interpreter lock back to the event loop (a plain ``json.loads`` holds it for
the whole body, and a thread would not help).
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from insight.codec import Format, unpack
from insight.errors import DecodeError, PayloadTooLarge, RequestTimeout
from insight.http.memory import LARGE_BODY, MemoryReturner

OFF_LOOP_BYTES = 256 * 1024
LARGE_KEY = "insight.large_body"
PARSERS = 2


def _float(text: str) -> float:
    return float(text)


def _int(text: str) -> int:
    return int(text)


def decode_off_loop(raw: bytes, fmt: Format) -> Any:
    """``codec.unpack`` with the same errors; JSON with yielding number hooks."""
    if fmt is not Format.JSON:
        return unpack(raw, fmt)
    try:
        return json.loads(raw, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise DecodeError("Failed to deserialize json: nesting too deep") from None
    except Exception as exc:
        raise DecodeError(f"Failed to deserialize json: {str(exc) or type(exc).__name__}") from None


class Bodies:
    """Reads and decodes request bodies for the bridge."""

    def __init__(self, max_body: int, max_body_mb: float, timeout_s: float) -> None:
        self.max_body = max_body
        self.max_body_mb = max_body_mb
        self.timeout_s = timeout_s
        self.memory = MemoryReturner()
        self._executor = ThreadPoolExecutor(max_workers=PARSERS, thread_name_prefix="body-parse")
        self._slots: asyncio.Semaphore | None = None

    async def read(self, request: web.Request) -> bytes:
        """The body; a declared Content-Length over the limit is refused before reading, a
        body that does not arrive in time is refused (and its connection closed)."""
        if request.content_length is not None and request.content_length > self.max_body:
            raise PayloadTooLarge(f"request body exceeds {self.max_body_mb} MiB")
        if (request.content_length or LARGE_BODY) >= LARGE_BODY:
            request[LARGE_KEY] = True  # the bridge trims memory once it has answered
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._read(request)
        except TimeoutError:
            raise RequestTimeout(
                f"request body not received within {self.timeout_s:g} s "
                "(INSIGHT_SERVER__BODY_TIMEOUT_S)"
            ) from None

    async def _read(self, request: web.Request) -> bytes:
        """Read here rather than with ``request.read()``, which keeps the body on the request,
        and a keep-alive connection keeps its last request: a megabyte per idle connection."""
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"request body exceeds {self.max_body_mb} MiB")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def off_loop(self, size: int, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` here when ``size`` is small, else in the parse pool (bounded)."""
        if size < OFF_LOOP_BYTES:
            return fn(*args)
        if self._slots is None:
            self._slots = asyncio.Semaphore(PARSERS)
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, fn, *args)

    async def decode(self, raw: bytes, fmt: Format) -> Any:
        return await self.off_loop(len(raw), decode_off_loop, raw, fmt)

    def close(self) -> None:
        self.memory.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
