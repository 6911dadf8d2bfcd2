"""HTTP bridge, embed/*: values, both body formats, every documented error, auth, CORS, limits."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from conftest import Running, make_settings, start_running, stop_running

from insight.codec import Format

J = Format.JSON
M = Format.MSGPACK
KEY = "test-api-key-42"
ORIGIN = "https://ma.example"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> AsyncIterator[Running]:
    r = await start_running(make_settings(tmp_path_factory.mktemp("embed") / "d", tiny_model_dir))
    yield r
    await stop_running(r)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def secured(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> AsyncIterator[Running]:
    """API key, CORS for one origin and a 64 KiB body limit."""
    settings = make_settings(
        tmp_path_factory.mktemp("embed-secured") / "d",
        tiny_model_dir,
        server={"api_key": KEY, "cors_origins": [ORIGIN], "max_body_mb": 1 / 16},
    )
    r = await start_running(settings)
    yield r
    await stop_running(r)


def pcm(seconds: float, rate: int = 48_000, channels: int = 1, seed: int = 0) -> np.ndarray:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    noise = np.random.default_rng(seed).standard_normal(n) * 0.05
    mono = (0.4 * np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32)
    return np.repeat(mono[:, None], channels, axis=1).reshape(-1)


def cos(a: list[float], b: list[float]) -> float:
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


# --- embed/text ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [M, J])
async def test_embed_text_matches_bus(stack: Running, fmt: Format) -> None:
    text = "upbeat electronic music for working out"
    status, body = await stack.api.call("POST", "/embed/text", {"text": text}, fmt=fmt)
    assert status == 200
    assert body["text"] == text
    v = np.asarray(body["embedding"])
    assert v.shape == (512,)
    assert abs(np.linalg.norm(v) - 1.0) < 1e-4
    bus = await stack.bus.call("insight.v1.embed.text", {"text": text})
    assert cos(body["embedding"], bus["embedding"]) > 0.9999
    _, other = await stack.api.call("POST", "/embed/text", {"text": "sad piano ballad"}, fmt=fmt)
    assert cos(body["embedding"], other["embedding"]) < 0.9999


@pytest.mark.parametrize("fmt", [M, J])
async def test_embed_text_from_metadata(stack: Running, fmt: Format) -> None:
    meta = {
        "name": "Blue in Green",
        "artists": ["Miles Davis"],
        "album": "Kind of Blue",
        "genres": ["jazz"],
    }
    status, body = await stack.api.call("POST", "/embed/text", {"metadata": meta}, fmt=fmt)
    assert status == 200
    for part in ("Blue in Green", "Miles Davis", "Kind of Blue", "jazz"):
        assert part in body["text"]
    # the sentence embeds exactly like the same text sent raw
    _, raw = await stack.api.call("POST", "/embed/text", {"text": body["text"]}, fmt=fmt)
    assert cos(body["embedding"], raw["embedding"]) > 0.9999


@pytest.mark.parametrize("fmt", [M, J])
@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({}, "Either 'text' or 'metadata'"),
        ({"text": 42}, "text"),
        ({"metadata": {"artists": ["x"]}}, "metadata.name"),
        ({"text": "x" * 100_001}, "text"),
        ([1, 2, 3], "map/object"),
    ],
)
async def test_embed_text_bad_input(stack: Running, fmt: Format, body: object, needle: str) -> None:
    status, reply = await stack.api.call("POST", "/embed/text", body, fmt=fmt)
    assert status == 400, reply
    assert reply["error"]["code"] == "BAD_REQUEST"
    assert needle in reply["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "ctype"),
    [
        (b"\x81\xa4te", "application/msgpack"),
        (b'{"text": ', "application/json"),
        (b"\xc1", "application/x-msgpack"),
    ],
)
async def test_embed_text_undecodable_body(stack: Running, raw: bytes, ctype: str) -> None:
    status, reply = await stack.api.call(
        "POST", "/embed/text", raw=raw, headers={"Content-Type": ctype}, fmt=J
    )
    assert status == 400
    assert reply["error"]["code"] == "DESERIALIZATION_ERROR"
    assert "Failed to deserialize" in reply["error"]["message"]


async def test_embed_text_x_msgpack_accepted(stack: Running) -> None:
    import msgpack

    status, reply = await stack.api.call(
        "POST",
        "/embed/text",
        raw=msgpack.packb({"text": "hi"}),
        headers={"Content-Type": "application/x-msgpack"},
    )
    assert status == 200 and reply["text"] == "hi" and len(reply["embedding"]) == 512


@pytest.mark.parametrize("ctype", ["text/plain", "application/xml", "multipart/form-data"])
async def test_embed_text_wrong_content_type_415(stack: Running, ctype: str) -> None:
    status, reply = await stack.api.call(
        "POST", "/embed/text", raw=b'{"text": "x"}', headers={"Content-Type": ctype}, fmt=J
    )
    assert status == 415
    assert reply["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "application/msgpack" in reply["error"]["message"]


# --- embed/audio -----------------------------------------------------------------------------


async def test_embed_audio_msgpack(stack: Running) -> None:
    samples = pcm(2.5, rate=44_100, channels=2)
    body = {
        "format": "pcm_f32_le",
        "sample_rate": 44_100,
        "channels": 2,
        "data": samples.astype("<f4").tobytes(),
    }
    status, reply = await stack.api.call("POST", "/embed/audio", body)
    assert status == 200
    assert reply["duration_s"] == pytest.approx(2.5, abs=1e-3)
    assert reply["windows"] == 1
    v = np.asarray(reply["embedding"])
    assert v.shape == (512,) and abs(np.linalg.norm(v) - 1) < 1e-4
    bus = await stack.bus.call("insight.v1.embed.audio", body)
    assert cos(reply["embedding"], bus["embedding"]) > 0.9999


async def test_embed_audio_json_base64_equals_msgpack(stack: Running) -> None:
    samples = (pcm(1.5) * 32767).astype("<i2").tobytes()
    base = {"format": "pcm_s16_le", "sample_rate": 48_000, "channels": 1}
    s1, m = await stack.api.call("POST", "/embed/audio", {**base, "data": samples})
    s2, j = await stack.api.call(
        "POST", "/embed/audio", {**base, "data": base64.b64encode(samples).decode()}, fmt=J
    )
    assert s1 == s2 == 200
    assert j["duration_s"] == pytest.approx(1.5, abs=1e-3)
    assert cos(m["embedding"], j["embedding"]) > 0.9999


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"data": b"\x00\x00\x00"}, "frame"),
        ({"format": "mp3"}, "format"),
        ({"channels": 3}, "channels"),
        ({"sample_rate": 0}, "sample_rate"),
        ({"data": None}, "data"),
        ({"data": np.array([np.nan] * 4800, "<f4").tobytes()}, "NaN"),
    ],
)
async def test_embed_audio_bad_input(stack: Running, patch: dict[str, object], needle: str) -> None:
    body = {
        "format": "pcm_f32_le",
        "sample_rate": 48_000,
        "channels": 1,
        "data": pcm(0.5).astype("<f4").tobytes(),
        **patch,
    }
    status, reply = await stack.api.call("POST", "/embed/audio", body)
    assert status == 400, reply
    assert reply["error"]["code"] == "BAD_REQUEST"
    assert needle.lower() in reply["error"]["message"].lower(), reply


# --- no model: 503 with a hint ----------------------------------------------------------------


@pytest.mark.parametrize("fmt", [M, J])
async def test_embed_503_without_model(running_no_model: Running, fmt: Format) -> None:
    r = running_no_model
    for path, body in [
        ("/embed/text", {"text": "anything"}),
        (
            "/embed/audio",
            {
                "format": "pcm_f32_le",
                "sample_rate": 48_000,
                "channels": 1,
                "data": pcm(0.5).astype("<f4").tobytes(),
            },
        ),
    ]:
        if fmt is J and path == "/embed/audio":
            body = {**body, "data": base64.b64encode(body["data"]).decode()}  # type: ignore[arg-type]
        status, reply = await r.api.call("POST", path, body, fmt=fmt)
        assert status == 503, (path, reply)
        assert set(reply) == {"error"}
        assert reply["error"]["code"] == "MODEL_NOT_LOADED"
        msg = reply["error"]["message"]
        assert "models/download" in msg or "INSIGHT_MODEL__PATH" in msg, msg


# --- auth, CORS, body limit --------------------------------------------------------------------


async def test_api_key_required(secured: Running) -> None:
    body = {"text": "x"}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": KEY},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"bearer  {KEY}"},
    ):
        status, reply = await secured.api.call("POST", "/embed/text", body, fmt=J, headers=headers)
        assert status == 401, headers
        assert reply["error"]["code"] == "UNAUTHORIZED"
    status, reply = await secured.api.call(
        "POST", "/embed/text", body, headers={"Authorization": f"Bearer {KEY}"}
    )
    assert status == 200 and len(reply["embedding"]) == 512
    status, reply = await secured.api.call("GET", "/health")
    assert status == 200 and reply["status"] == "healthy"


async def test_cors_headers_when_configured(secured: Running) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    s = secured.api.session
    async with s.options(
        secured.api.base + "/embed/text",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    ) as resp:
        assert resp.status == 204
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "POST" in resp.headers["Access-Control-Allow-Methods"]
        assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    async with s.get(secured.api.base + "/config", headers={"Origin": ORIGIN, **auth}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    # errors carry the header too, so a browser can read them
    async with s.get(secured.api.base + "/config", headers={"Origin": ORIGIN}) as resp:
        assert resp.status == 401
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
    # another origin gets nothing
    async with s.get(
        secured.api.base + "/config", headers={"Origin": "https://evil.example", **auth}
    ) as resp:
        assert resp.status == 200
        assert "Access-Control-Allow-Origin" not in resp.headers


async def test_no_cors_by_default(stack: Running) -> None:
    s = stack.api.session
    async with s.get(stack.api.base + "/health", headers={"Origin": ORIGIN}) as resp:
        assert resp.status == 200
        assert not any(h.lower().startswith("access-control-") for h in resp.headers)
    async with s.options(
        stack.api.base + "/embed/text",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
    ) as resp:
        assert "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize("fmt", [M, J])
async def test_body_over_limit_413(secured: Running, fmt: Format) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    big = {"text": "y" * (70 * 1024)}  # > 64 KiB
    status, reply = await secured.api.call("POST", "/embed/text", big, fmt=fmt, headers=auth)
    assert status == 413
    assert reply["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "MiB" in reply["error"]["message"]
    # just under the limit is fine
    ok = {"text": "y" * (60 * 1024)}
    status, reply = await secured.api.call("POST", "/embed/text", ok, fmt=fmt, headers=auth)
    assert status == 200 and len(reply["embedding"]) == 512


@pytest.mark.parametrize("seconds", [0.5, 10.0, 25.0, 31.3])
async def test_embed_audio_streamed_equals_whole_audio(stack: Running, seconds: float) -> None:
    """embed/audio cuts the audio a chunk at a time: the same windows and vector as the pool's
    all-at-once ``embed_audio`` (48 kHz: no resampler in between)."""
    assert stack.stack.worker is not None
    pool = stack.stack.worker.app.require_pool()
    samples = pcm(seconds, seed=3)
    whole, n = await pool.embed_audio(samples, 10.0, 10.0)
    body = {"format": "pcm_f32_le", "sample_rate": 48_000, "channels": 1}
    status, reply = await stack.api.call(
        "POST", "/embed/audio", {**body, "data": samples.astype("<f4").tobytes()}
    )
    assert status == 200, reply
    assert reply["windows"] == n == max(1, -(-int(seconds * 10) // 100))
    assert cos(reply["embedding"], whole.tolist()) > 0.99999
