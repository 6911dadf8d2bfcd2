"""Storage benchmark (not a test): the file store (usearch f32 / f16 / i8 + SQLite) and
qdrant-client's local mode as a baseline, on clustered normalised vectors.

    .venv/bin/python bench/storage.py [--n 100000] [--queries 1000] [--qdrant-queries 20]

Measures insert rate (through ``upsert``, durable SQLite commits included), top-10 search
latency through the async API (p50 / p99) unfiltered and with a 10 %-selective genre filter,
recall@10 against an exact scan, reopen time and disk size. Prints a table and a final JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import cores, cpu_model, memory_gib
from insight.storage.base import TRACKS_TEXT, Point, VectorStore
from insight.storage.file import FileStore
from insight.storage.qdrant import QdrantStore
from insight.storage.where import where

GENRES = 10  # genre g{i % 10}: a one-genre filter keeps 10 %


def machine() -> str:
    gib = memory_gib()
    mem = f", {gib:.0f} GiB RAM" if gib else ""
    py = platform.python_version()
    return f"{cpu_model()}, {cores()} cores{mem}, Python {py}, {platform.system()}"


def clustered(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact_top(x: np.ndarray, q: np.ndarray, rows: np.ndarray | None, k: int = 10) -> list[set[int]]:
    base = x if rows is None else x[rows]
    out = []
    for i in range(0, len(q), 256):
        s = q[i : i + 256] @ base.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        for r in top:
            out.append({int(j) for j in (r if rows is None else rows[r])})
    return out


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def measure(
    name: str,
    make: Any,
    x: np.ndarray,
    genre: np.ndarray,
    queries: np.ndarray,
    truth: list[set[int]],
    truth_f: list[set[int]],
    data_dir: Path | None,
    batch: int,
) -> dict[str, Any]:
    store: VectorStore = make()
    t = time.perf_counter()
    await store.open()
    for i in range(0, len(x), batch):
        await store.upsert(
            TRACKS_TEXT,
            [
                Point(
                    f"track/{j}",
                    x[j],
                    {"track_id": f"track/{j}", "genres": [f"g{genre[j]}"], "valence": 0.5},
                )
                for j in range(i, min(i + batch, len(x)))
            ],
        )
    insert_s = time.perf_counter() - t
    assert await store.count(TRACKS_TEXT) == len(x)
    flt = where(genres=["G3"])
    res: dict[str, Any] = {"name": name, "n": len(x), "insert_per_s": len(x) / insert_s}
    for label, f, want in (("unfiltered", None, truth), ("filtered", flt, truth_f)):
        await store.search(TRACKS_TEXT, queries[0], 10, f)  # warm up
        lat, hit = [], 0
        for qi in range(len(want)):
            t = time.perf_counter()
            hits = await store.search(TRACKS_TEXT, queries[qi], 10, f)
            lat.append(time.perf_counter() - t)
            got = {int(h.key.split("/")[1]) for h in hits}
            assert len(hits) == 10
            hit += len(got & want[qi])
        ms = np.array(lat) * 1000
        res[f"{label}_p50_ms"] = float(np.percentile(ms, 50))
        res[f"{label}_p99_ms"] = float(np.percentile(ms, 99))
        res[f"{label}_recall10"] = hit / (10 * len(want))
        res[f"{label}_queries"] = len(want)
    t = time.perf_counter()
    await store.close()
    res["close_s"] = time.perf_counter() - t
    if data_dir is not None:
        res["disk_mb"] = dir_size(data_dir) / 2**20
        store = make()
        t = time.perf_counter()
        await store.open()
        res["open_s"] = time.perf_counter() - t
        assert await store.count(TRACKS_TEXT) == len(x)
        await store.close()
    return res


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--qdrant-queries", type=int, default=20)
    ap.add_argument("--qdrant-n", type=int, default=0, help="points for qdrant (default --n)")
    ap.add_argument("--dtypes", default="f32,f16,i8")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--skip-qdrant", action="store_true")
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.clusters, args.dim))
    x = clustered(rng, args.n, args.dim, centres)
    genre = rng.integers(0, GENRES, args.n)
    q = clustered(rng, args.queries, args.dim, centres)
    rows = np.flatnonzero(genre == 3)
    t = time.perf_counter()
    truth, truth_f = exact_top(x, q, None), exact_top(x, q, rows)
    print(f"# {machine()}", flush=True)
    print(
        f"# n={args.n} dim={args.dim} clusters={args.clusters} queries={args.queries} "
        f"filter=genre (selectivity {len(rows) / args.n:.1%}); ground truth "
        f"{time.perf_counter() - t:.1f}s",
        flush=True,
    )
    results = []
    root = Path(tempfile.mkdtemp(prefix="insight-bench-"))
    try:
        for dtype in args.dtypes.split(","):
            d = root / dtype

            def make(d: Path = d, dtype: str = dtype) -> FileStore:
                return FileStore(d, args.dim, dtype=dtype, save_interval_s=3600)

            r = await measure(
                f"file usearch {dtype}", make, x, genre, q, truth, truth_f, d, args.batch
            )
            print(json.dumps(r), flush=True)
            results.append(r)
        if not args.skip_qdrant:
            qn = args.qdrant_n or args.n
            nq = args.qdrant_queries
            qrows = np.flatnonzero(genre[:qn] == 3)
            qt, qtf = exact_top(x[:qn], q[:nq], None), exact_top(x[:qn], q[:nq], qrows)
            r = await measure(
                "qdrant local :memory:",
                lambda: QdrantStore(args.dim, location=":memory:"),
                x[:qn],
                genre[:qn],
                q[:nq],
                qt,
                qtf,
                None,
                args.batch,
            )
            print(json.dumps(r), flush=True)
            results.append(r)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    cols = [
        ("backend", "name", "{}"),
        ("n", "n", "{}"),
        ("insert/s", "insert_per_s", "{:.0f}"),
        ("p50 ms", "unfiltered_p50_ms", "{:.2f}"),
        ("p99 ms", "unfiltered_p99_ms", "{:.2f}"),
        ("recall@10", "unfiltered_recall10", "{:.3f}"),
        ("filt p50", "filtered_p50_ms", "{:.2f}"),
        ("filt p99", "filtered_p99_ms", "{:.2f}"),
        ("filt recall", "filtered_recall10", "{:.3f}"),
        ("queries", "unfiltered_queries", "{}"),
        ("open s", "open_s", "{:.2f}"),
        ("disk MB", "disk_mb", "{:.0f}"),
    ]
    print("| " + " | ".join(c[0] for c in cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        cells = [fmt.format(r[key]) if key in r else "–" for _, key, fmt in cols]
        print("| " + " | ".join(cells) + " |")
    print(json.dumps({"machine": machine(), "args": vars(args), "results": results}))


if __name__ == "__main__":
    asyncio.run(main())
