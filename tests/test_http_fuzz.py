"""Malformed bodies and headers against the bridge: no crash, no 5xx, data unchanged.

A seeded generator builds > 2 000 requests: truncated and bit-flipped msgpack/JSON, wrong
types, huge declared lengths, 100 000-deep nesting, invalid UTF-8, msgpack ext types, NaN and
huge numbers, random PCM, wrong content types, oversized and odd header values, and a few raw
HTTP requests no client library would send. Bodies sent to writing endpoints are invalid by
construction, so nothing may be stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import pytest_asyncio
from conftest import Running, make_settings, start_running, stop_running

from insight.codec import Format

SEED = 20_240_607
KEEP = "fuzz/keep-me ✓"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> AsyncIterator[Running]:
    settings = make_settings(
        tmp_path_factory.mktemp("fuzz") / "d", tiny_model_dir, server={"max_body_mb": 4.0}
    )
    r = await start_running(settings)
    yield r
    await stop_running(r)


# --- generators ----------------------------------------------------------------------------

VALID: dict[str, dict[str, Any]] = {
    "/embed/text": {"text": "hello", "metadata": {"name": "n", "artists": ["a"]}},
    "/embed/audio": {
        "format": "pcm_f32_le",
        "sample_rate": 48000,
        "channels": 1,
        "data": b"\x00" * 400,
    },
    "/tracks/search": {
        "embedding": [0.01] * 512,
        "limit": 5,
        "collection": "text",
        "filter": {"artists": ["a"], "min_valence": 0.1},
    },
    "/tracks/search-text": {"query": "calm piano", "limit": 3},
    "/mood/classify": {"embedding": [0.01] * 512, "top_k": 3},
}
# Writing endpoints: only bodies that can never validate (see module doc).
WRITES: dict[str, dict[str, Any]] = {
    "/tracks/upsert": {"track_id": "fz", "metadata": {"name": "n"}, "text_embedding": [0.1] * 512},
    "/tracks/batch-upsert": {
        "tracks": [{"track_id": "fz", "metadata": {"name": "n"}, "text_embedding": [0.1] * 512}]
    },
    "/tracks/embed-text": {"track_id": "fz", "metadata": {"name": "n"}},
    "/tracks/batch-embed-text": {"tracks": [{"track_id": "fz", "metadata": {"name": "n"}}]},
    "/stream/start": {
        "track_id": "fz",
        "metadata": {"name": "n"},
        "format": "pcm_f32_le",
        "sample_rate": 48000,
        "channels": 1,
    },
}
WRONG_TYPES: list[Any] = [
    None,
    True,
    -1,
    2**63,
    1.5e308,
    "x",
    "",
    b"\x00\xff",
    [],
    {},
    [None] * 3,
    {"": None},
    float("nan"),
    float("inf"),
]

HUGE_LENGTHS = [
    b"\xdb\xff\xff\xff\xff",
    b"\xdb\xff\xff\xff\xffabc",
    b"\xdd\xff\xff\xff\xff",
    b"\xdf\xff\xff\xff\xff",
    b"\xc6\xff\xff\xff\xff",
    b"\xc6\xff\xff\xff\xff\x00\x00",
    b"\xda\xff\xff",
    b"\xdc\xff\xff\xc0",
    b"\xde\xff\xff\xa1a",
    b"\xc9\xff\xff\xff\xff\x01",
    b"\x81\xa4text\xdb\x7f\xff\xff\xff",
    b"\x81\xa9embedding\xdd\x7f\xff\xff\xff\xca",
]


def wrong_typed(rng: random.Random, valid: dict[str, Any]) -> dict[str, Any]:
    """A copy with every field's value replaced by one of the wrong type (stays invalid)."""
    out: dict[str, Any] = {}
    for key, value in valid.items():
        choices = [w for w in WRONG_TYPES if type(w) is not type(value) and w != value]
        out[key] = rng.choice(choices)
    # at least one required field has a value no schema accepts
    out[rng.choice(list(valid))] = rng.choice([None, [[[]]], {"nested": {"deep": b"\xff"}}])
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        if op < 0.4 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.7:
            b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
        elif b:
            del b[rng.randrange(len(b))]
    return bytes(b)


def deep(kind: str, depth: int) -> bytes:
    if kind == "msgpack-array":
        return b"\x91" * depth + b"\xc0"
    if kind == "msgpack-map":
        return b"\x81\xa1k" * depth + b"\xc0"
    if kind == "json-array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"null" + b"}" * depth


Request = tuple[str, str, bytes, dict[str, str]]


def build_requests(rng: random.Random, session_id: str) -> list[Request]:
    reqs: list[Request] = []
    mp, js = "application/msgpack", "application/json"

    def add(path: str, body: bytes, ctype: str | None, method: str = "POST", **hdr: str) -> None:
        headers = dict(hdr)
        if ctype is not None:
            headers["Content-Type"] = ctype
        headers.setdefault("Accept", rng.choice([mp, js, "*/*", "application/x-msgpack"]))
        reqs.append((method, path, body, headers))

    all_posts = {**VALID, **WRITES}
    for path, valid in all_posts.items():
        packed = msgpack.packb(valid, use_bin_type=True)
        as_json = json.dumps(valid, default=bytes.hex).encode()
        # truncations (a strict prefix of one msgpack/JSON value never decodes)
        for _ in range(20):
            add(path, packed[: rng.randrange(1, len(packed))], mp)
            add(path, as_json[: rng.randrange(1, len(as_json))], js)
        # wrong types, both formats
        for _ in range(20):
            body = wrong_typed(rng, valid)
            add(path, msgpack.packb(body, use_bin_type=True), mp)
            add(path, json.dumps(body, default=bytes.hex).encode(), js)
        # huge declared lengths, deep nesting, non-map tops
        for raw in HUGE_LENGTHS:
            add(path, raw, mp)
        for kind in ("msgpack-array", "msgpack-map"):
            add(path, deep(kind, 100_000), mp)
            add(path, deep(kind, rng.choice([200, 600, 5000])), mp)
        for kind in ("json-array", "json-object"):
            add(path, deep(kind, 100_000), js)
            add(path, deep(kind, rng.choice([200, 600, 5000])), js)
        for top in ([1, 2], "str", 7, None, b"bin", 1.5):
            add(path, msgpack.packb(top, use_bin_type=True), mp)
            add(path, json.dumps(top if not isinstance(top, bytes) else "b").encode(), js)
        # invalid UTF-8 and lone surrogates
        add(path, b'{"text": "\xff\xfe\xfd"}', js)
        add(path, b'{"\xc3\x28": 1}', js)
        add(path, b'{"query": "\\ud800", "text": "\\udfff"}', js)
        add(path, b"\x81\xa4text\xa3\xff\xfe\xfd", mp)
        add(path, b"\x81\xa3\xed\xa0\x80\xa1x", mp)
        # msgpack ext types and timestamps, NaN/huge numbers
        add(path, b"\x81\xa4text\xd4\x01\x00", mp)
        add(path, b"\x81\xa4text\xd6\xff\x00\x00\x00\x00", mp)
        add(path, b"\x81\xa4text\xc7\x0c\xff" + b"\xff" * 12, mp)
        add(path, b'{"embedding": [NaN, Infinity, -Infinity], "text": 1e999}', js)
        add(path, b'{"limit": 1' + b"0" * 5000 + b"}", js)
        add(path, b'{"limit": 1e309, "track_id": 1e-400}', js)
        # random bytes
        for _ in range(16):
            add(path, rng.randbytes(rng.randrange(1, 300)), rng.choice([mp, js]))
        # wrong content types (nothing reaches the bus)
        for ctype in (
            "text/plain",
            "application/xml",
            "image/png",
            "multipart/form-data; b=x",
            "application/octet-stream",
            "\x7f",
            "a" * 4000,
            "application/json; ;;;",
        ):
            add(path, packed, ctype)
        # bit flips of the valid body: only where nothing is written
        if path in VALID:
            for _ in range(40):
                add(path, mutate(rng, packed), mp)
                add(path, mutate(rng, as_json), js)

    # GET/DELETE with odd query strings, ids and bodies (unknown ids: nothing to delete)
    odd_ids = ["%00", "%FF%FE", "%ED%A0%80", "a%2F..%2F..%2Fetc", "x" * 5000, "%25", "%", "🎵"]
    for tid in odd_ids:
        add(f"/tracks/fuzz-none-{tid}", b"", None, "GET")
        add(f"/tracks/fuzz-none-{tid}?include_text=maybe&include_audio=%FF", b"", None, "GET")
        add(f"/tracks/fuzz-none-{tid}", rng.randbytes(40), mp, "DELETE")
        add(f"/stream/{tid}/status", b"", None, "GET")
        add(f"/stream/{tid}/frames", rng.randbytes(64), "application/octet-stream")
    for _ in range(30):
        add(
            f"/tracks/fuzz-none-{rng.randrange(10**6)}",
            rng.randbytes(rng.randrange(1, 80)),
            rng.choice([mp, js]),
            "DELETE",
        )
        add(
            f"/stream/{uuid.UUID(int=rng.getrandbits(128), version=4)}/end",
            rng.randbytes(rng.randrange(1, 80)),
            rng.choice([mp, js]),
        )
    for path in ("/health", "/config", "/status", "/storage/stats", "/mood/list"):
        add(path + "?" + "&".join(f"k{i}={'v' * 100}" for i in range(50)), b"", None, "GET")
        add(path, rng.randbytes(100), mp, "GET")
        add(path, b"\xdb\xff\xff\xff\xff", mp, "GET")

    # PCM frames to a live (never ended) session: odd lengths, NaN, random, empty
    nan = np.full(256, np.nan, "<f4").tobytes()
    inf = np.full(256, np.inf, "<f4").tobytes()
    for _ in range(120):
        n = rng.choice([1, 2, 3, 5, 7, 1023, 4097, rng.randrange(1, 20000)])
        body = rng.choice([rng.randbytes(n), nan, inf, nan[:n], b""])
        add(f"/stream/{session_id}/frames", body, rng.choice(["application/octet-stream", None]))

    # headers: huge and odd values (aiohttp's parser limits: 8 KiB per field)
    for _ in range(60):
        name = rng.choice(
            ["Authorization", "Accept", "X-Request-Id", "Content-Type", "Origin", "X-Junk"]
        )
        value = rng.choice(
            [
                "a" * rng.choice([100, 8000, 9000, 70000]),
                "\t\t",
                "Bearer ",
                "application/msgpack" * 400,
                "x" * 3 + "é" * 10,
                "*/*;q=abc",
            ]
        )
        path = rng.choice(list(VALID))
        add(
            path,
            msgpack.packb(VALID[path], use_bin_type=True),
            "application/msgpack",
            **{name: value},
        )
    return reqs


RAW_HTTP = [
    b"POST /api/v1/embed/text HTTP/1.1\r\nHost: x\r\nContent-Type: application/msgpack\r\n"
    b"Content-Length: 99999999999\r\n\r\n\x81",
    b"POST /api/v1/embed/text HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
    b"Content-Type: application/json\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
    b"POST /api/v1/tracks/search HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET /api/v1/health HTTP/9.9\r\n\r\n",
    b"GET /api/v1/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-" + b"a" * 20000 + b": 1\r\n\r\n",
    b"POST /api/v1/embed/text HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Content-Length: 7\r\n\r\n12345",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS ClientHello
]


async def raw_http(host: str, port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(200), timeout=5)
    except (ConnectionError, TimeoutError):
        return b""
    finally:
        writer.close()


# --- the test ------------------------------------------------------------------------------


async def snapshot(r: Running) -> tuple[dict[str, Any], list[float]]:
    status, stats = await r.api.call("GET", "/storage/stats")
    assert status == 200
    status, track = await r.api.call(
        "GET", "/tracks/fuzz%2Fkeep-me%20%E2%9C%93?include_text=true&include_audio=true"
    )
    assert status == 200, track
    s = stats["stats"]
    counts = {
        k: s[k]
        for k in (
            "text_collection_count",
            "audio_collection_count",
            "profile_count",
            "total_tracks",
        )
    }
    return counts, [*track["text_embedding"], *track["audio_embedding"]]


async def test_fuzz_bodies_and_headers(stack: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    rng = random.Random(SEED)
    vec = np.random.default_rng(SEED).standard_normal(512).astype(np.float32)
    body = {
        "track_id": KEEP,
        "metadata": {"name": "Keep"},
        "text_embedding": vec.tolist(),
        "audio_embedding": (-vec).tolist(),
    }
    assert (await stack.api.call("POST", "/tracks/upsert", body))[0] == 200
    _, started = await stack.api.call(
        "POST", "/stream/start", {**WRITES["/stream/start"], "track_id": "fuzz/session"}
    )
    before = await snapshot(stack)

    reqs = build_requests(rng, started["session_id"])
    assert len(reqs) >= 2000, len(reqs)
    statuses: dict[int, int] = {}
    failures: list[str] = []
    limit = asyncio.Semaphore(32)
    session = stack.api.session

    async def send(req: Request) -> None:
        method, path, data, headers = req
        async with limit:
            try:
                async with session.request(
                    method, stack.api.base + path, data=data or None, headers=headers
                ) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                    if resp.status >= 500:
                        failures.append(f"{resp.status} {method} {path[:80]} {data[:60]!r}")
            except ValueError:
                statuses[0] = statuses.get(0, 0) + 1  # the client refused the header itself
            except Exception as exc:  # a dropped connection is a failure
                failures.append(f"{type(exc).__name__} {method} {path[:80]} {data[:60]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(send(q) for q in reqs))
    host, port = "127.0.0.1", stack.stack.bridge.port  # type: ignore[union-attr]
    raw_replies = [await raw_http(host, port, data) for data in RAW_HTTP]
    elapsed = time.perf_counter() - t0
    print(
        f"\nfuzz: {len(reqs)} requests + {len(RAW_HTTP)} raw in {elapsed:.1f}s, "
        f"statuses {dict(sorted(statuses.items()))}"
    )

    assert not failures, failures[:20]
    assert all(not reply.startswith(b"HTTP/1.1 5") for reply in raw_replies), raw_replies
    assert set(statuses) <= {0, 200, 204, 400, 401, 404, 405, 409, 413, 415, 429, 431}
    assert statuses.get(400, 0) > 1000  # most requests reached the decoder and were refused
    # insight's own logs: no crash anywhere (aiohttp.server logs each malformed HTTP message
    # it answered with 400 at ERROR level; those are not crashes)
    crashes = [
        rec.getMessage()
        for rec in caplog.records
        if rec.name.startswith("insight")
        and ("crashed" in rec.getMessage() or rec.levelno >= logging.ERROR)
    ]
    assert not crashes, crashes[:5]

    # the service is up and nothing stored changed
    status, health = await stack.api.call("GET", "/health", fmt=Format.JSON)
    assert status == 200 and health["status"] == "healthy"
    after = await snapshot(stack)
    assert after[0] == before[0]
    assert after[1] == before[1]
    for tid in ("fz", "fuzz/session"):
        assert (await stack.api.call("GET", "/tracks/" + tid.replace("/", "%2F")))[0] == 404


def test_generator_is_deterministic() -> None:
    make: Callable[[], list[Request]] = lambda: build_requests(random.Random(SEED), "s")  # noqa: E731
    assert make() == make()


async def test_huge_pcm_samples_are_refused(stack: Running) -> None:
    """Finite but huge f32 samples (1e20) overflow the mel power spectrum: the reply must be a
    400, not a NaN vector (msgpack 200) or a 500 (JSON cannot carry NaN)."""
    data = np.full(4800, 1e20, "<f4").tobytes()
    body = {"format": "pcm_f32_le", "sample_rate": 48000, "channels": 1, "data": data}
    status, reply = await stack.api.call("POST", "/embed/audio", body)
    assert status == 400, reply
    assert "[-1, 1]" in reply["error"]["message"]
    status, reply = await stack.api.call("POST", "/embed/audio", body, fmt=Format.JSON)
    assert status == 400, reply
