"""Concurrent frames to one session are applied one at a time and the cap holds (issue 15).

Before: 20 parallel posts of 60 s to one session were all accepted (1 200 s against the 900 s
cap) and `end` reported 120 s for 1 200 s of windows.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import numpy as np

from tests.adversarial.conftest import start_served
from tests.adversarial.hostile import assert_healthy_end, call, rss_mb, settle_rss

RATE = 8000
CAP_S = 900  # INSIGHT_STREAM__MAX_BUFFERED_S default


def minute(seed: int) -> bytes:
    x = np.random.default_rng(seed).standard_normal(60 * RATE) * 0.1
    return (x * 32767).astype("<i2").tobytes()


async def start(s: aiohttp.ClientSession, served, track: str) -> str:  # type: ignore[no-untyped-def]
    status, reply = await call(
        s,
        served,
        "POST",
        "/stream/start",
        {
            "track_id": track,
            "metadata": {"name": track},
            "format": "pcm_s16_le",
            "sample_rate": RATE,
            "channels": 1,
        },
    )
    assert status == 200, reply
    return str(reply["session_id"])


async def post_frames(s: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, dict]:
    import msgpack

    headers = {"Content-Type": "application/octet-stream", "Accept": "application/msgpack"}
    async with s.post(url, data=data, headers=headers) as r:
        return r.status, msgpack.unpackb(await r.read())


async def contend(s: aiohttp.ClientSession, served, track: str) -> tuple[str, list]:  # type: ignore[no-untyped-def]
    """Start a session and post twenty different minutes to it at once."""
    sid = await start(s, served, track)
    url = f"{served.base}/stream/{sid}/frames"
    return sid, await asyncio.gather(*(post_frames(s, url, minute(i)) for i in range(20)))


async def test_twenty_parallel_minutes_to_one_session(tmp_path: Path, tiny_model_dir: Path) -> None:
    served = start_served(tmp_path, tiny_model_dir)
    try:
        async with aiohttp.ClientSession() as s:
            # warm-up: one round of the same attack, then the baseline
            sid, _ = await contend(s, served, "warm-up")
            status, ended = await call(s, served, "POST", f"/stream/{sid}/end", {})
            assert status == 200 and ended["duration_s"] == CAP_S, ended
            await asyncio.sleep(1)
            baseline = rss_mb(served)

            sid, results = await contend(s, served, "contended")
            accepted = [r for st, r in results if st == 200]
            refused = [(st, r) for st, r in results if st != 200]
            assert len(accepted) == CAP_S // 60 == 15
            # one at a time: each accepted post saw every earlier one
            assert sorted(r["buffered_seconds"] for r in accepted) == [
                60.0 * k for k in range(1, 16)
            ]
            assert len(refused) == 5
            for st, r in refused:
                assert st == 413, r
                assert r["error"]["code"] == "PAYLOAD_TOO_LARGE"
                assert "INSIGHT_STREAM__MAX_BUFFERED_S" in r["error"]["message"]

            status, st_reply = await call(s, served, "GET", f"/stream/{sid}/status")
            assert status == 200 and st_reply["buffered_seconds"] == CAP_S
            status, ended = await call(s, served, "POST", f"/stream/{sid}/end", {"store": False})
            assert status == 200, ended
            assert ended["duration_s"] == CAP_S
            assert ended["windows_processed"] == CAP_S // 10
        assert_healthy_end(served, baseline, await settle_rss(served, baseline * 1.1))
    finally:
        assert served.stop() < 10
