"""Mood classify, recommend, song path and mix latency (goals: classify ≤ 1 ms, recommend
at 100 k ≤ 20 ms, path and mix at 100 k ≤ 50 ms p50).

    .venv/bin/python bench/taste.py [--tracks 100000] [--runs 200]

Classify: one 512-d vector against a cached prompt bank (no inference: that is the point of
the cache). The rest: the file store (usearch + SQLite) filled with clustered vectors that
carry moods and V/A by cluster, the tiny CLAP model loaded (for the mood prompt bank; the
prompt bank is cached, so no text inference is timed), one user profile computed from 40 plays
and 10 skips, then end to end through the handlers' code (no network):
recommend (limit 25, diversity 0.3, max 3 per artist), a song path between random tracks of
two clusters (12 steps), and a mix for the user with two moods (25 tracks, max 2 per artist).
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

from insight import compose
from insight.app import App
from insight.config import Settings
from insight.mood import mood_labels
from insight.mood.classifier import PromptBank, classify
from insight.playlists.mix import build_mix
from insight.playlists.path import song_path
from insight.playlists.schemas import MixRequest, PathRequest
from insight.schemas import ComputeProfileRequest, RecommendRequest, UserInteraction
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, Point
from insight.storage.file import FileStore
from insight.taste.compute import compute_profiles
from insight.taste.recommend import recommend

DIM = 512
CENTRES = 200
MODEL_ID = "insight/tiny-clap"


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


async def fill_store(store: FileStore, n: int, seed: int = 1) -> float:
    """``n`` tracks in 200 clusters (every second one with audio too); moods, V/A and genre
    by cluster. Returns the seconds it took."""
    rng = np.random.default_rng(seed)
    labels = mood_labels()
    centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
    t0 = time.perf_counter()
    batch = 5000
    for start in range(0, n, batch):
        ids = np.arange(start, min(start + batch, n))
        c = centres[ids % CENTRES]
        v = c + 0.6 * rng.standard_normal((len(ids), DIM)).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        pts = []
        for j, i in enumerate(ids):
            mood = labels[int(i % CENTRES) % len(labels)]
            payload = {
                "track_id": f"t{i}",
                "name": f"Song {i}",
                "artists": [f"Artist {i % 5000}"],
                "genres": [f"genre{i % CENTRES % 12}"],
                "primary_mood": mood.id,
                "moods": [mood.id],
                "valence": mood.valence_hint,
                "arousal": mood.arousal_hint,
                "model_id": MODEL_ID,
            }
            pts.append(Point(f"t{i}", v[j], payload))
        await store.upsert(TRACKS_TEXT, pts)
        await store.upsert(TRACKS_AUDIO, pts[::2])
    return time.perf_counter() - t0


async def timed(fn: object, runs: int) -> list[float]:
    call = fn  # an async callable without arguments
    for _ in range(5):
        await call()  # type: ignore[operator]
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await call()  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1e3)
    return out


async def bench_taste(n: int, runs: int, data: Path) -> tuple[dict[str, list[float]], float]:
    from insight.testing.tiny_clap import build_tiny_clap

    store = FileStore(data / "store", DIM)
    await store.open()
    fill_s = await fill_store(store, n)
    app = App(Settings(storage={"data_dir": data / "store"}))
    app.store = store
    await app.load_model(build_tiny_clap(data / "model"), MODEL_ID)
    await compose.start(app)  # keeps this store and model; builds history, mood, ...
    now = int(time.time())
    liked = [f"t{i}" for i in range(0, CENTRES * 40, CENTRES)]  # cluster 0
    skipped = [f"t{i}" for i in range(1, CENTRES * 10, CENTRES)]  # cluster 1
    ix = [UserInteraction(track_id=t, play_count=3, last_played=now) for t in liked]
    ix += [UserInteraction(track_id=t, skip_count=2, last_played=now) for t in skipped]
    await compute_profiles(app, ComputeProfileRequest(user_id="u", interactions=ix))
    rng = np.random.default_rng(2)
    labels = mood_labels()
    moods = [labels[0].id, labels[1].id]

    async def rec() -> None:
        r = await recommend(app, RecommendRequest(user_id="u"))
        assert len(r.tracks) == 25

    async def path() -> None:
        a, b = rng.integers(0, n // CENTRES, 2) * CENTRES + np.array([3, 4])
        steps = await song_path(store, PathRequest(start_id=f"t{a}", end_id=f"t{b}", steps=12))
        assert len(steps) == 12, len(steps)

    async def mix() -> None:
        r = await build_mix(app, MixRequest(user_id="u", moods=moods, size=25))
        assert len(r) == 25, len(r)

    out = {
        "recommend": await timed(rec, runs),
        "path": await timed(path, runs),
        "mix": await timed(mix, runs),
    }
    await compose.stop(app)
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
        res, fill = asyncio.run(bench_taste(args.tracks, args.runs, Path(d)))
    print(f"store: {args.tracks} tracks (+{args.tracks // 2} audio), filled in {fill:.0f} s")
    goals = {"recommend": 20, "path": 50, "mix": 50}
    for name, xs in res.items():
        print(
            f"{name} @ {args.tracks} tracks: p50 {statistics.median(xs):.2f} ms  "
            f"p99 {pct(xs, 99):.2f} ms  (goal ≤ {goals[name]} ms)"
        )


if __name__ == "__main__":
    main()
