"""HTTP bridge benchmark: bridge overhead vs the bus directly, and a 50-client loopback load.

    .venv/bin/python bench/bridge.py [--requests 2000] [--tracks 1000] [--clients 50] [--seconds 20]

Starts a full stack (embedded nats-server, one worker with the tiny CLAP test model, the bridge)
on loopback, stores ``--tracks`` tracks, then:

1. overhead: the same request sequentially over HTTP (msgpack) and straight on the bus
   (``BusClient.request_raw``): ``/health`` and ``/tracks/search`` (limit 10); p50/p99 of both
   and the difference (goal: <= 2 ms p50);
2. load: ``--clients`` concurrent HTTP clients mixing search, embed-text and stream frames for
   ``--seconds``; p50/p99 per operation, errors and 5xx.

Prints machine info, a table, and a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import msgpack  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import cores, cpu_model  # noqa: E402
from insight.codec import pack  # noqa: E402
from insight.config import Settings  # noqa: E402
from insight.runtime import Stack  # noqa: E402

MSGPACK = "application/msgpack"


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values) * 1000.0, q))  # ms


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def settings_for(data_dir: Path, model_dir: Path) -> Settings:
    return Settings(
        storage={"data_dir": data_dir},
        server={"host": "127.0.0.1", "port": 0},
        model={"path": model_dir, "name": "insight/tiny-clap", "auto_download": False},
        nats={"url": ""},
        stream={"max_sessions": 200},
    )


# --- load ------------------------------------------------------------------------------------


async def run_load(base: str, clients: int, seconds: float, *, seed: int = 0) -> dict[str, Any]:
    """``clients`` concurrent clients mixing search, embed-text and frames for ``seconds``.

    Each client owns an HTTP connection and a streaming session; operations rotate per client
    (search, embed-text, frames), so the mix is a third each. Returns latencies (ms) per
    operation, counts, errors (exceptions, unexpected statuses) and 5xx.
    """
    lat: dict[str, list[float]] = {"search": [], "embed_text": [], "frames": []}
    errors: list[str] = []
    five_xx = 0
    frame = (np.sin(np.arange(4800) / 7.0) * 0.3).astype("<f4").tobytes()  # 0.1 s at 48 kHz
    hdr = {"Content-Type": MSGPACK, "Accept": MSGPACK}
    deadline = time.perf_counter() + seconds

    async def client(i: int) -> None:
        nonlocal five_xx
        conn = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=conn) as s:
            start = {
                "track_id": f"load-{seed}-{i}",
                "metadata": {"name": f"Load {i}"},
                "format": "pcm_f32_le",
                "sample_rate": 48_000,
                "channels": 1,
            }
            async with s.post(f"{base}/stream/start", data=msgpack.packb(start), headers=hdr) as r:
                body = msgpack.unpackb(await r.read())
                if r.status != 200:
                    errors.append(f"stream/start {r.status} {body}")
                    return
            sid = body["session_id"]
            search = msgpack.packb({"embedding": unit(i), "limit": 10}, use_single_float=True)
            n = i
            while time.perf_counter() < deadline:
                op = ("search", "embed_text", "frames")[n % 3]
                n += 1
                if op == "search":
                    url, data, h = f"{base}/tracks/search", search, hdr
                elif op == "embed_text":
                    data = msgpack.packb({"text": f"client {i} request {n}"})
                    url, h = f"{base}/embed/text", hdr
                else:
                    url, data = f"{base}/stream/{sid}/frames", frame
                    h = {"Content-Type": "application/octet-stream", "Accept": MSGPACK}
                t0 = time.perf_counter()
                try:
                    async with s.post(url, data=data, headers=h) as r:
                        await r.read()
                        status = r.status
                except Exception as exc:
                    errors.append(f"{op}: {type(exc).__name__}: {exc}")
                    continue
                lat[op].append(time.perf_counter() - t0)
                if status >= 500:
                    five_xx += 1
                if status != 200:
                    errors.append(f"{op}: HTTP {status}")
            async with s.delete(f"{base}/stream/{sid}") as r:
                await r.read()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    every = [v for vs in lat.values() for v in vs]
    return {
        "clients": clients,
        "seconds": round(wall, 2),
        "requests": len(every),
        "rps": round(len(every) / wall, 1),
        "p50_ms": round(pct(every, 50), 2),
        "p99_ms": round(pct(every, 99), 2),
        "per_op": {
            op: {"n": len(v), "p50_ms": round(pct(v, 50), 2), "p99_ms": round(pct(v, 99), 2)}
            for op, v in lat.items()
        },
        "errors": len(errors),
        "error_samples": errors[:5],
        "http_5xx": five_xx,
    }


# --- overhead --------------------------------------------------------------------------------


async def overhead(stack: Stack, n: int) -> dict[str, Any]:
    from insight.bus.client import BusClient

    assert stack.bridge is not None and stack.bridge.nc is not None
    bus = BusClient(stack.bridge.nc)
    base = f"http://127.0.0.1:{stack.bridge.port}/api/v1"
    search = {"embedding": unit(4242), "limit": 10}
    cases = [
        ("health", "GET", "/health", {}, "insight.v1.health"),
        ("search", "POST", "/tracks/search", search, "insight.v1.tracks.search"),
    ]
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as s:
        for name, method, path, body, subject in cases:
            payload = pack(body)
            hdr = {"Accept": MSGPACK}
            if method == "POST":
                hdr["Content-Type"] = MSGPACK
            http_t: list[float] = []
            bus_t: list[float] = []
            for i in range(n + 100):  # 100 warm-up rounds, interleaved to share any drift
                t0 = time.perf_counter()
                async with s.request(
                    method, base + path, data=payload if body else None, headers=hdr
                ) as r:
                    await r.read()
                    assert r.status == 200, r.status
                t1 = time.perf_counter()
                reply = await bus.request_raw(subject, payload)
                t2 = time.perf_counter()
                assert reply.status < 400
                if i >= 100:
                    http_t.append(t1 - t0)
                    bus_t.append(t2 - t1)
            out[name] = {
                "http_p50_ms": round(pct(http_t, 50), 3),
                "http_p99_ms": round(pct(http_t, 99), 3),
                "bus_p50_ms": round(pct(bus_t, 50), 3),
                "bus_p99_ms": round(pct(bus_t, 99), 3),
                "overhead_p50_ms": round(pct(http_t, 50) - pct(bus_t, 50), 3),
                "overhead_p99_ms": round(pct(http_t, 99) - pct(bus_t, 99), 3),
                "overhead_mean_ms": round(
                    (statistics.fmean(http_t) - statistics.fmean(bus_t)) * 1000, 3
                ),
            }
    return out


async def store_tracks(base: str, count: int) -> None:
    async with aiohttp.ClientSession() as s:
        for start in range(0, count, 100):
            tracks = [
                {
                    "track_id": f"bench-{i}",
                    "metadata": {"name": f"Bench {i}", "artists": [f"A{i % 37}"]},
                    "text_embedding": unit(i),
                }
                for i in range(start, min(count, start + 100))
            ]
            async with s.post(
                f"{base}/tracks/batch-upsert",
                data=pack({"tracks": tracks}),
                headers={"Content-Type": MSGPACK, "Accept": MSGPACK},
            ) as r:
                body = msgpack.unpackb(await r.read())
                assert r.status == 200 and body["failed"] == 0, body


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": cores(),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--tracks", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from insight.testing.tiny_clap import build_tiny_clap

    info = machine()
    print(f"machine: {info['cpu']} x{info['cores']}, Python {info['python']}, {info['platform']}")
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_clap(Path(tmp) / "model")
        stack = Stack(settings_for(Path(tmp) / "data", model))
        await stack.start()
        try:
            assert stack.bridge is not None
            base = f"http://127.0.0.1:{stack.bridge.port}/api/v1"
            await store_tracks(base, args.tracks)
            ov = await overhead(stack, args.requests)
            print(
                f"\nbridge overhead, {args.requests} sequential requests, "
                f"{args.tracks} stored tracks (ms)"
            )
            print(
                f"{'request':<10}{'http p50':>10}{'bus p50':>10}{'diff p50':>10}"
                f"{'http p99':>10}{'bus p99':>10}{'diff p99':>10}"
            )
            for name, r in ov.items():
                print(
                    f"{name:<10}{r['http_p50_ms']:>10.3f}{r['bus_p50_ms']:>10.3f}"
                    f"{r['overhead_p50_ms']:>10.3f}{r['http_p99_ms']:>10.3f}"
                    f"{r['bus_p99_ms']:>10.3f}{r['overhead_p99_ms']:>10.3f}"
                )
            load = await run_load(base, args.clients, args.seconds)
            print(
                f"\nload: {load['clients']} clients, {load['seconds']} s, "
                f"{load['requests']} requests ({load['rps']}/s), "
                f"p50 {load['p50_ms']} ms, p99 {load['p99_ms']} ms, "
                f"errors {load['errors']}, 5xx {load['http_5xx']}"
            )
            for op, r in load["per_op"].items():
                print(
                    f"  {op:<11} n={r['n']:<6} p50 {r['p50_ms']:>7.2f} ms  "
                    f"p99 {r['p99_ms']:>7.2f} ms"
                )
        finally:
            await stack.stop()
    goal = all(r["overhead_p50_ms"] <= 2.0 for r in ov.values())
    print(
        json.dumps(
            {
                "bench": "http",
                "machine": info,
                "tracks": args.tracks,
                "overhead": ov,
                "overhead_goal_met": goal,
                "load": load,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
