"""The fuzz generator of test_http_fuzz.py: seeded malformed requests for every endpoint."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from typing import Any

import msgpack
import numpy as np

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
