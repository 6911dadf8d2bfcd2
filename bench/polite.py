"""Politeness benchmark: interactive latency while `insight serve`'s watcher scans a library.

One process, one app (``insight serve``'s defaults, full-size clap-htsat-unfused architecture
with random weights, as bench/scan.py builds it): first on an idle service, then while the
watcher runs a full-mode scan of generated 4-minute tracks. Measured each time:

* ``search-text``: the endpoint's handler (text embedding + two store searches), p50 / p99;
* ``embed-text``: one text through the inference pool, p50 / p99;
* a 48 kHz stream's real-time factor: 10 s windows embedded one by one as an ingest session
  does (wall time / audio time; below 1 keeps up).

Prints the ratios (scan / idle), the CPU and its ISA flags, and the load average before and
after (the box may be shared). Goal: interactive p99 within 2x of idle. Not a test.

    .venv/bin/python bench/polite.py [--tracks 6] [--work-dir /tmp/insight-bench]
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

from bench.common import machine, watcher_app
from bench.scan import make_library, model_dir
from insight.config import Settings


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000.0, q)), 1)


async def one_round(app: Any, i: int, texts: int, stream_s: float) -> dict[str, list[float]]:
    from insight.schemas import TextSearchRequest
    from insight.search.handlers import search_text

    pool = app.require_pool()
    out: dict[str, list[float]] = {"search_text": [], "embed_text": [], "stream_rtf": []}
    for k in range(texts):
        q = f"calm piano late at night {i}-{k}"
        t0 = time.perf_counter()
        await search_text(app, TextSearchRequest(query=q))
        t1 = time.perf_counter()
        await pool.embed_texts([f"upbeat guitar {i}-{k}"])
        t2 = time.perf_counter()
        out["search_text"].append(t1 - t0)
        out["embed_text"].append(t2 - t1)
    rng = np.random.default_rng(i)
    window = 10 * 48_000
    audio = (0.1 * rng.standard_normal(int(stream_s * 48_000))).astype(np.float32)
    t0 = time.perf_counter()
    for s in range(0, audio.shape[0] - window + 1, window):
        await pool.embed_windows(audio[s : s + window])
    out["stream_rtf"].append((time.perf_counter() - t0) / stream_s)
    return out


def summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    return {
        "search_text_p50_ms": pct(samples["search_text"], 50),
        "search_text_p99_ms": pct(samples["search_text"], 99),
        "embed_text_p50_ms": pct(samples["embed_text"], 50),
        "embed_text_p99_ms": pct(samples["embed_text"], 99),
        "stream_rtf": round(float(np.median(samples["stream_rtf"])), 3),
        "requests": len(samples["search_text"]),
    }


def merge(into: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for k, v in more.items():
        into.setdefault(k, []).extend(v)


async def run(model: Path, library: Path, texts: int, stream_s: float) -> dict[str, Any]:
    from insight.schemas import WatchedFolder

    data = Path(tempfile.mkdtemp(prefix="polite-bench-"))
    settings = Settings(
        storage={"data_dir": data},
        model={"path": model, "name": "bench/clap-full"},
        watcher={"scan_interval_s": 0},  # everything else: serve's defaults
    )
    async with watcher_app(settings) as (app, svc):
        assert app.pool is not None
        idle: dict[str, list[float]] = {}
        for i in range(3):
            merge(idle, await one_round(app, i, texts, stream_s))
        busy: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        svc.scan(folders=[WatchedFolder(path=str(library))])
        await asyncio.sleep(1.0)  # the scan is decoding and embedding
        rounds = 0
        while svc.status().state == "scanning" and rounds < 50:
            merge(busy, await one_round(app, 100 + rounds, texts, stream_s))
            rounds += 1
        await svc.wait_idle()
        scan_s = time.perf_counter() - t0
        assert svc.outcomes["failed"] == 0, svc.failures()
        return {
            "idle": summary(idle),
            "scanning": summary(busy),
            "scan": {
                "tracks": svc.outcomes["analyzed"],
                "seconds": round(scan_s, 1),
                "watcher_threads": svc.executor._max_workers,
                "nice": settings.watcher.nice,
                "bulk_batch": settings.inference.bulk_batch,
                "audio_int8": app.pool.model.quantized,
            },
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=6)
    ap.add_argument("--texts", type=int, default=20, help="text requests per round")
    ap.add_argument("--stream-s", type=float, default=30.0)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/insight-bench"))
    args = ap.parse_args()
    model = model_dir(args.work_dir)
    library = args.work_dir / "scan-library"
    make_library(library, args.tracks)
    load_before = os.getloadavg()
    res = asyncio.run(run(model, library, args.texts, args.stream_s))
    idle, busy = res["idle"], res["scanning"]
    res["ratio_scanning_over_idle"] = {
        k: round(busy[k] / idle[k], 2)
        for k in ("search_text_p50_ms", "search_text_p99_ms", "embed_text_p99_ms", "stream_rtf")
    }
    res["machine"] = machine(load_before)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
