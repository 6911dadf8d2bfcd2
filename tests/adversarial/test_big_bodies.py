"""Large JSON bodies are parsed off the event loop, a bounded number at a time (issue 15).

Before: one 14 MB JSON array blocked the loop for 2 s; with four at once health took 3.7 s.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import aiohttp

from tests.adversarial.conftest import start_served
from tests.adversarial.hostile import JSON, assert_healthy_end, rss_mb, settle_rss


def big_search_body(seed: int) -> bytes:
    rng = random.Random(seed)
    body = json.dumps({"embedding": [rng.random() for _ in range(700_000)], "limit": 5}).encode()
    assert len(body) > 14 * 10**6
    return body


async def post_json(s: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, str, dict]:
    # no Accept: the reply mirrors the JSON body
    async with s.post(url, data=data, headers={"Content-Type": JSON}) as r:
        return r.status, r.headers["Content-Type"], json.loads(await r.read())


async def test_health_answers_while_four_14mb_bodies_parse(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    served = start_served(tmp_path, tiny_model_dir)
    bodies = [big_search_body(i) for i in range(4)]
    url = served.base + "/tracks/search"
    try:
        async with aiohttp.ClientSession() as s:
            # warm-up: twice the same four bodies at once, and health; the baseline is the
            # larger RSS after them (the high-water of the parse threads' malloc arenas and
            # of Python's object arenas, which 2.8 million floats at once fragment)
            warm_rss = []
            for _ in range(2):
                warm = await asyncio.gather(*(post_json(s, url, b) for b in bodies))
                assert [w[0] for w in warm] == [400] * 4
                async with s.get(served.base + "/health") as r:
                    assert r.status == 200
                await asyncio.sleep(1.5)
                warm_rss.append(rss_mb(served))
            baseline = max(warm_rss)

            latencies: list[float] = []
            done = asyncio.Event()

            async def poll_health() -> None:
                while not done.is_set():
                    t0 = time.perf_counter()
                    async with s.get(served.base + "/health", headers={"Accept": JSON}) as r:
                        assert r.status == 200
                        assert (await r.json())["status"] == "healthy"
                    latencies.append(time.perf_counter() - t0)
                    await asyncio.sleep(0.05)

            poller = asyncio.create_task(poll_health())
            t0 = time.perf_counter()
            replies = await asyncio.gather(*(post_json(s, url, b) for b in bodies))
            took = time.perf_counter() - t0
            done.set()
            await poller
        for status, ctype, reply in replies:
            assert status == 400, reply
            assert ctype == JSON
            assert reply["error"]["code"] == "BAD_REQUEST"
            assert "embedding" in reply["error"]["message"]
            assert "8192" in reply["error"]["message"]
        final = await settle_rss(served, baseline * 1.1)
        print(
            f"\n4 x 14 MB JSON in {took:.1f}s; health: {len(latencies)} calls, "
            f"max {max(latencies) * 1000:.0f} ms; RSS after warm-ups {warm_rss}, after {final:.0f}"
        )
        assert len(latencies) >= 3
        assert max(latencies) < 1.0, sorted(latencies)[-5:]
        assert_healthy_end(served, baseline, final)
    finally:
        assert served.stop() < 10
