"""Mood classify and recommend latency (goals: classify ≤ 1 ms, recommend at 100 k ≤ 20 ms).

    .venv/bin/python bench/taste.py [--tracks 100000] [--runs 200]

Classify: one 512-d vector against a cached prompt bank (no inference: that is the point of
the cache). Recommend: the file store (usearch + SQLite) filled with clustered vectors, one
user profile computed from 40 plays and 10 skips, then ``recommend`` end to end through the
handler (no network), default settings (limit 25, diversity 0.3, max 3 per artist).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (before usearch)

from insight.app import App
from insight.config import Settings
from insight.mood.classifier import PromptBank, classify
from insight.schemas import ComputeProfileRequest, RecommendRequest, UserInteraction
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point
from insight.storage.file import FileStore
from insight.taste.compute import compute_profiles
from insight.taste.recommend import recommend

DIM = 512


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs), p))


def bench_classify(runs: int) -> list[float]:
    rng = np.random.default_rng(0)
    bank = PromptBank.from_embeddings("bench", rng.standard_normal((30, DIM)).astype(np.float32))
    vecs = rng.standard_normal((runs, DIM)).astype(np.float32)
    classify(bank, vecs[0])
    out = []
    for v in vecs:
        t0 = time.perf_counter()
        classify(bank, v)
        out.append((time.perf_counter() - t0) * 1e3)
    return out


async def bench_recommend(n: int, runs: int, data: Path) -> tuple[list[float], float]:
    rng = np.random.default_rng(1)
    store = FileStore(data, DIM)
    await store.open()
    centres = rng.standard_normal((200, DIM)).astype(np.float32)
    t0 = time.perf_counter()
    batch = 5000
    for start in range(0, n, batch):
        ids = np.arange(start, min(start + batch, n))
        c = centres[ids % len(centres)]
        v = c + 0.6 * rng.standard_normal((len(ids), DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        pts = [
            Point(
                f"t{i}",
                v[j],
                {
                    "track_id": f"t{i}",
                    "name": f"Song {i}",
                    "artists": [f"Artist {i % 5000}"],
                    "genres": ["x"],
                },
            )
            for j, i in enumerate(ids)
        ]
        await store.upsert(TRACKS_TEXT, pts)
        await store.upsert(TRACKS_AUDIO, pts[::2])
    fill_s = time.perf_counter() - t0
    app = App(Settings(storage={"data_dir": data}))
    app.store = store
    now = int(time.time())
    liked = [f"t{i}" for i in range(0, 200 * 40, 200)]  # cluster 0
    skipped = [f"t{i}" for i in range(1, 200 * 10, 200)]  # cluster 1
    ix = [UserInteraction(track_id=t, play_count=3, last_played=now) for t in liked]
    ix += [UserInteraction(track_id=t, skip_count=2, last_played=now) for t in skipped]
    await compute_profiles(app, ComputeProfileRequest(user_id="u", interactions=ix))
    req = RecommendRequest(user_id="u")
    for _ in range(5):
        await recommend(app, req)
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = await recommend(app, req)
        out.append((time.perf_counter() - t0) * 1e3)
    assert len(r.tracks) == 25
    await store.close()
    return out, fill_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cpus, python {platform.python_version()}")
    c = bench_classify(2000)
    print(f"classify: p50 {statistics.median(c):.3f} ms  p99 {pct(c, 99):.3f} ms  (goal ≤ 1 ms)")
    with tempfile.TemporaryDirectory() as d:
        r, fill = asyncio.run(bench_recommend(args.tracks, args.runs, Path(d)))
    print(
        f"recommend @ {args.tracks} tracks (+{args.tracks // 2} audio; fill {fill:.0f} s): "
        f"p50 {statistics.median(r):.2f} ms  p99 {pct(r, 99):.2f} ms  (goal ≤ 20 ms)"
    )


if __name__ == "__main__":
    main()
