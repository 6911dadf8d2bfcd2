"""The wire of remote inference alone (not a test): one request of audio windows through an
embedded nats-server to a responder that unpacks them (as an inference worker does) and
answers with vectors, float32 vs 16-bit PCM windows, interleaved. No model runs, so what is
left is what remote inference adds per window: pack, two hops through the server, unpack.

    .venv/bin/python bench/wire.py [--requests 200] [--windows 1,3]

Prints p50 round trip and the CPU time of this process (both clients; the server's CPU is
not counted) per request, and a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats

from bench.common import machine
from insight.bus.embedded import EmbeddedNats
from insight.scale import protocol as p

SAMPLES = 480_000  # one 10 s window at 48 kHz


async def run(args: argparse.Namespace) -> dict[str, Any]:
    server = EmbeddedNats(Path(tempfile.mkdtemp(prefix="insight-wire-")))
    await server.start()
    ask = await nats.connect(server.url)
    serve = await nats.connect(server.url)

    async def respond(msg: Any) -> None:
        req = p.unpack_request(msg.data, "audio", 256)
        vectors = np.zeros((req.size, 512), np.float32)
        await msg.respond(p.pack_reply(req.work_id, "m", vectors))

    await serve.subscribe("bench.wire", cb=respond)
    await serve.flush()
    rng = np.random.default_rng(0)
    res: dict[str, Any] = {}
    try:
        for b in (int(x) for x in args.windows.split(",")):
            windows = (0.3 * rng.standard_normal((b, SAMPLES))).astype(np.float32)
            lat: dict[str, list[float]] = {"f32": [], "s16": []}
            cpu = dict.fromkeys(lat, 0.0)
            for i in range(args.requests):
                for pcm in ("f32", "s16") if i % 2 else ("s16", "f32"):
                    t0, c0 = time.perf_counter(), time.process_time()
                    body = p.pack_request("w", "m", "audio", windows, pcm=pcm)  # type: ignore[arg-type]
                    msg = await ask.request("bench.wire", body, timeout=30)
                    p.unpack_reply(msg.data, "w", "m", b)
                    lat[pcm].append(time.perf_counter() - t0)
                    cpu[pcm] += time.process_time() - c0
            for pcm, values in lat.items():
                res[f"{b}_windows_{pcm}"] = {
                    "p50_ms": round(float(np.percentile(values, 50)) * 1000, 2),
                    "cpu_ms": round(cpu[pcm] / args.requests * 1000, 2),
                    "bytes": len(p.pack_request("w", "m", "audio", windows, pcm=pcm)),  # type: ignore[arg-type]
                }
                print(b, pcm, res[f"{b}_windows_{pcm}"], flush=True)
    finally:
        await ask.close()
        await serve.close()
        server.stop()
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--windows", default="1,3")
    args = ap.parse_args()
    load_before = os.getloadavg()
    res = asyncio.run(run(args))
    print(json.dumps({"results": res, "machine": machine(load_before)}))


if __name__ == "__main__":
    main()
