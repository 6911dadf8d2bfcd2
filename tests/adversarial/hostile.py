"""Helpers of the HTTP hardening attacks: one client call, RSS settling, the served log and
metrics checks every attack ends with (no 5xx, no traceback, memory back near its start)."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from typing import Any

import aiohttp
import msgpack

from tests.adversarial.conftest import Served

JSON = "application/json"
MSGPACK = "application/msgpack"


async def call(
    session: aiohttp.ClientSession,
    served: Served,
    method: str,
    path: str,
    body: Any = None,
    *,
    fmt: str = MSGPACK,
    **headers: str,
) -> tuple[int, Any]:
    """One request, body and reply in ``fmt``; returns the status and the decoded reply."""
    hdrs = {"Accept": fmt, **headers}
    data: bytes | None = None
    if body is not None:
        hdrs["Content-Type"] = fmt
        data = json.dumps(body).encode() if fmt == JSON else msgpack.packb(body)
    async with session.request(method, served.base + path, data=data, headers=hdrs) as r:
        raw = await r.read()
        ctype = r.headers.get("Content-Type", "")
    if not raw:
        return r.status, None
    return r.status, json.loads(raw) if "json" in ctype else msgpack.unpackb(raw)


def rss_mb(served: Served) -> float:
    return served.rss_bytes() / 2**20


async def settle_rss(served: Served, limit_mb: float, timeout: float = 20.0) -> float:
    """Wait (bounded) for RSS to come down to ``limit_mb``; returns the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        now = rss_mb(served)
        if now <= limit_mb or time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.25)


def http_5xx(served: Served) -> dict[str, float]:
    """Replies with a 5xx status the bridge counted, by route (from /metrics)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{served.port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(
        r'^insight_http_requests_total\{route="([^"]*)",status="(5\d\d)"\} (\S+)$', text, re.M
    ):
        out[f"{m[1]} {m[2]}"] = float(m[3])
    return {k: v for k, v in out.items() if v}


def assert_healthy_end(served: Served, baseline_mb: float, final_mb: float) -> None:
    """The acceptance of every attack: no 5xx, no crash in the log, RSS within 10 %."""
    assert http_5xx(served) == {}, http_5xx(served)
    log = served.log()
    for needle in ("Traceback", "crashed", "http_server_error", "Error handling request"):
        assert needle not in log, log[-3000:]
    assert final_mb <= baseline_mb * 1.10, (
        f"RSS {final_mb:.0f} MiB after the attack, {baseline_mb:.0f} MiB before"
    )
