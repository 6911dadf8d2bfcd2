"""One error shape and one id limit everywhere; strict validation (issue 15).

Before: ids whose encoded form passed 8 KB got aiohttp's plain-text 400 and a traceback in
the log, a NUL byte in a watcher path was a 500, and vectors of booleans or 2^64 integers,
NaN/Inf in filter ranges and ``"data": "abc"`` were accepted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import msgpack
import pytest
import pytest_asyncio

from insight.limits import MAX_ID_CHARS, MAX_REQUEST_LINE
from tests.adversarial.conftest import Served, start_served
from tests.adversarial.hostile import JSON, MSGPACK, assert_healthy_end, call, rss_mb, settle_rss


@pytest_asyncio.fixture(loop_scope="session")
async def server(tmp_path: Path, tiny_model_dir: Path) -> AsyncIterator[tuple[Served, float]]:
    served = start_served(tmp_path, tiny_model_dir)
    async with aiohttp.ClientSession() as s:  # warm-up: a lookup and a refused body
        assert (await call(s, served, "GET", "/tracks/warm-up", fmt=JSON))[0] == 404
        assert (await call(s, served, "POST", "/tracks/search", {"embedding": []}))[0] == 400
    try:
        yield served, rss_mb(served)
    finally:
        assert served.stop() < 10


async def raw_request(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        out = b""
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            out += chunk
        return out
    finally:
        writer.close()


async def test_long_ids_get_the_error_shape(server: tuple[Served, float]) -> None:
    served, baseline = server
    async with aiohttp.ClientSession() as s:
        # 4 000 'é' (within the limit) is 24 000 bytes encoded: a normal 404
        long_ok = "é" * 4000
        status, reply = await call(s, served, "GET", "/tracks/" + quote(long_ok, safe=""), fmt=JSON)
        assert status == 404, reply
        assert reply["error"]["code"] == "NOT_FOUND"
        # the largest id of all (4 096 four-byte characters, 49 KB encoded) is read too
        widest = "🎵" * MAX_ID_CHARS
        status, reply = await call(s, served, "GET", "/tracks/" + quote(widest, safe=""), fmt=JSON)
        assert status == 404, reply
        # one character over the limit: the field and the limit are named
        for fmt in (JSON, MSGPACK):
            status, reply = await call(
                s, served, "GET", "/tracks/" + "x" * (MAX_ID_CHARS + 1), fmt=fmt
            )
            assert status == 400, reply
            assert reply["error"]["code"] == "BAD_REQUEST"
            assert "track_id" in reply["error"]["message"]
            assert str(MAX_ID_CHARS) in reply["error"]["message"]
            status, reply = await call(
                s,
                served,
                "POST",
                "/tracks/search-text",
                {"query": "x", "filter": {"exclude_ids": ["y" * (MAX_ID_CHARS + 1)]}},
                fmt=fmt,
            )
            assert status == 400 and "exclude_ids" in reply["error"]["message"], reply
    # past what any id needs, the request line itself is refused, still in the error shape
    line = b"GET /api/v1/tracks/" + b"a" * (MAX_REQUEST_LINE + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = await raw_request(served.port, line)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head
    assert b"Content-Type: application/msgpack" in head
    err = msgpack.unpackb(body)["error"]
    assert err["code"] == "BAD_REQUEST" and "request line" in err["message"], err
    assert "Traceback" not in served.log()
    assert "http_bad_request status=400" in served.log()
    assert_healthy_end(served, baseline, await settle_rss(served, baseline * 1.1))


@pytest.mark.parametrize("fmt", [JSON, MSGPACK])
async def test_nul_in_path_parameters_is_400(server: tuple[Served, float], fmt: str) -> None:
    served, baseline = server
    async with aiohttp.ClientSession() as s:
        for method, path in [
            ("DELETE", "/watcher/folders/%2Fmusic%00%2Fetc"),
            ("GET", "/tracks/a%00b"),
            ("DELETE", "/tracks/a%00b"),
            ("GET", "/users/u%00/profile/vector"),
            ("POST", "/models/x%00/load"),
        ]:
            status, reply = await call(s, served, method, path, fmt=fmt)
            assert status == 400, (path, reply)
            assert reply["error"]["code"] == "BAD_REQUEST"
            assert "NUL" in reply["error"]["message"], reply
        # the same on the body side (what a bus client would send)
        status, reply = await call(
            s, served, "POST", "/watcher/folders", {"path": "/a\x00b"}, fmt=fmt
        )
        assert status == 400 and "path" in reply["error"]["message"], reply
    assert_healthy_end(served, baseline, await settle_rss(served, baseline * 1.1))


async def test_validation_refuses_what_is_no_number_or_no_bytes(
    server: tuple[Served, float],
) -> None:
    served, baseline = server
    ok = [0.01] * 512
    cases_json = [
        ({"embedding": [True] * 512}, "embedding", "not a number"),
        ({"embedding": [2**64, *ok[1:]]}, "embedding", ""),
        ({"embedding": [2**60, *ok[1:]]}, "embedding", "2^53"),
        (
            {"embedding": ok, "filter": {"min_valence": float("nan")}},
            "filter.min_valence",
            "finite",
        ),
        (
            {"embedding": ok, "filter": {"max_arousal": float("inf")}},
            "filter.max_arousal",
            "finite",
        ),
        ({"embedding": ok, "filter": {"min_arousal": True}}, "filter.min_arousal", "boolean"),
    ]
    async with aiohttp.ClientSession() as s:
        for body, field, needle in cases_json:
            # JSON as Python's json writes it (NaN and Infinity literals included)
            async with s.post(
                served.base + "/tracks/search",
                data=json.dumps(body).encode(),
                headers={"Content-Type": JSON},
            ) as r:
                reply = await r.json()
                assert r.status == 400, (body, reply)
            assert reply["error"]["code"] == "BAD_REQUEST"
            msg = reply["error"]["message"]
            assert field in msg and needle in msg, msg
        for body in ([True] * 512, [2**64 - 1, *ok[1:]]):  # msgpack carries up to 2^64-1
            status, reply = await call(s, served, "POST", "/tracks/search", {"embedding": body})
            assert status == 400 and "embedding" in reply["error"]["message"], reply
        status, reply = await call(
            s,
            served,
            "POST",
            "/tracks/search",
            {"embedding": ok, "filter": {"min_valence": float("nan")}},
        )
        assert status == 400 and "min_valence" in reply["error"]["message"], reply
        # bytes fields: "abc" is no PCM (not base64), in either format
        for fmt in (JSON, MSGPACK):
            body = {"format": "pcm_s16_le", "sample_rate": 48000, "channels": 1, "data": "abc"}
            status, reply = await call(s, served, "POST", "/embed/audio", body, fmt=fmt)
            assert status == 400, reply
            assert reply["error"]["message"].startswith("invalid request: data:"), reply
            assert "base64" in reply["error"]["message"]
        # and a correct base64 string is still PCM
        body = {"format": "pcm_s16_le", "sample_rate": 48000, "channels": 1, "data": "AAAAAA=="}
        status, reply = await call(s, served, "POST", "/embed/audio", body, fmt=JSON)
        assert status == 200 and reply["duration_s"] == pytest.approx(2 / 48000), reply
    assert_healthy_end(served, baseline, await settle_rss(served, baseline * 1.1))
