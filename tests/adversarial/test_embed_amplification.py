"""POST /embed/audio cannot be made to produce more audio than it was sent (issue 15).

The issue's reproductions, against a real `insight serve`: 4 KB at sample_rate 1 (2 000 s of
48 kHz audio before), 195 KB at 50 Hz (+375 MB RSS, never freed), 64 KB at 1 Hz (a 500
MemoryError). Rates outside 8-384 kHz are a 400, audio over INSIGHT_AUDIO__MAX_EMBED_S a 413,
and what is accepted is embedded a chunk at a time.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from tests.adversarial.conftest import Served, served_with
from tests.adversarial.hostile import (
    JSON,
    MSGPACK,
    assert_healthy_end,
    call,
    rss_mb,
    settle_rss,
)

MAX_S = 60


def tone(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).standard_normal(t.size) * 0.05
    return (0.3 * np.sin(2 * np.pi * 330 * t) + 0.2 * np.sin(2 * np.pi * 1.3 * t) + noise).astype(
        np.float32
    )


def body(data: bytes, rate: int, fmt: str = "pcm_f32_le", wire: str = MSGPACK) -> dict:
    payload: object = base64.b64encode(data).decode() if wire == JSON else data
    return {"format": fmt, "sample_rate": rate, "channels": 1, "data": payload}


def s16(x: np.ndarray) -> bytes:
    return (x * 32767).astype("<i2").tobytes()


@pytest_asyncio.fixture(loop_scope="session")
async def attacked(tmp_path: Path, tiny_model_dir: Path) -> AsyncIterator[tuple[Served, float]]:
    """A server with a 60 s embed cap, warmed up by one accepted embed; with its RSS then."""
    served = served_with(tmp_path, tiny_model_dir, INSIGHT_AUDIO__MAX_EMBED_S=MAX_S)
    async with aiohttp.ClientSession() as s:
        status, reply = await call(
            s, served, "POST", "/embed/audio", body(s16(tone(20, 8000)), 8000, "pcm_s16_le")
        )
        assert status == 200, reply
    try:
        yield served, rss_mb(served)
    finally:
        assert served.stop() < 10


@pytest.mark.parametrize("wire", [MSGPACK, JSON])
async def test_issue_reproductions_are_refused(attacked: tuple[Served, float], wire: str) -> None:
    served, baseline = attacked
    cases = [
        (b"\x00\x00\x80\x3e" * 1024, 1),  # 4 KB at 1 Hz
        (np.full(195 * 256, 0.25, "<f4").tobytes(), 50),  # 195 KB at 50 Hz
        (np.full(64 * 256, 0.25, "<f4").tobytes(), 1),  # 64 KB at 1 Hz
        (np.zeros(4000, "<f4").tobytes(), 7999),
        (np.zeros(4000, "<f4").tobytes(), 384_001),
    ]
    peak = baseline
    async with aiohttp.ClientSession() as s:
        for data, rate in cases:
            status, reply = await call(
                s, served, "POST", "/embed/audio", body(data, rate, wire=wire), fmt=wire
            )
            assert status == 400, (rate, reply)
            assert reply["error"]["code"] == "BAD_REQUEST"
            msg = reply["error"]["message"]
            assert "sample_rate" in msg and ("8000" in msg or "384000" in msg), msg
            peak = max(peak, rss_mb(served))
        # the bounds themselves are accepted
        for rate in (8000, 384_000):
            status, reply = await call(
                s,
                served,
                "POST",
                "/embed/audio",
                body(tone(1.5, rate).tobytes(), rate, wire=wire),
                fmt=wire,
            )
            assert status == 200, reply
            assert reply["duration_s"] == pytest.approx(1.5, abs=1e-3)
            assert reply["windows"] == 1
    assert peak < baseline + 50, f"RSS rose to {peak:.0f} MiB from {baseline:.0f} MiB"
    assert_healthy_end(served, baseline, await settle_rss(served, baseline * 1.1))


async def test_duration_cap_is_413_and_the_cap_itself_is_embedded(
    attacked: tuple[Served, float],
) -> None:
    served, baseline = attacked
    audio = tone(MAX_S + 1, 8000)
    async with aiohttp.ClientSession() as s:
        status, reply = await call(
            s, served, "POST", "/embed/audio", body(s16(audio), 8000, "pcm_s16_le")
        )
        assert status == 413, reply
        assert reply["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert "INSIGHT_AUDIO__MAX_EMBED_S" in reply["error"]["message"]
        assert "61.0 s" in reply["error"]["message"]

        # exactly the cap: six 10 s windows, the mean of what each window gives alone
        status, whole = await call(
            s, served, "POST", "/embed/audio", body(s16(audio[: MAX_S * 8000]), 8000, "pcm_s16_le")
        )
        assert status == 200, whole
        assert whole["duration_s"] == pytest.approx(MAX_S)
        assert whole["windows"] == MAX_S // 10
        parts = []
        for i in range(MAX_S // 10):
            piece = audio[i * 80_000 : (i + 1) * 80_000]
            status, one = await call(
                s, served, "POST", "/embed/audio", body(s16(piece), 8000, "pcm_s16_le")
            )
            assert status == 200 and one["windows"] == 1
            parts.append(one["embedding"])
    mean = np.mean(np.asarray(parts, np.float64), axis=0)
    mean /= np.linalg.norm(mean)
    got = np.asarray(whole["embedding"], np.float64)
    assert abs(np.linalg.norm(got) - 1) < 1e-4
    # the same windows; only the resampler's edges differ between one stream and six clips
    assert float(got @ mean) > 0.995
    assert_healthy_end(served, baseline, await settle_rss(served, baseline * 1.1))
