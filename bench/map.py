"""Library map layout time (goal: 100 k tracks ≤ 60 s on 2 cores).

    .venv/bin/python bench/map.py [--tracks 10000 100000]

For each size: the file store filled with clustered vectors (bench/taste.py's library), then
the map service's full layout end to end (read every vector from the store, landmark k-means,
landmark t-SNE, place every track), timed in parts, plus placing 1000 new tracks
incrementally and one page of the map as the HTTP handler returns it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (before usearch)

from bench.taste import DIM, MODEL_ID, fill_store
from insight.app import App
from insight.config import Settings
from insight.mapview.layout import fit
from insight.mapview.service import MapService
from insight.playlists.schemas import MapRequest
from insight.playlists.vectors import library_vectors
from insight.storage.file import FileStore


async def bench(n: int, data: Path) -> dict[str, float]:
    store = FileStore(data, DIM)
    await store.open()
    fill = await fill_store(store, n)
    app = App(Settings(storage={"data_dir": data}))
    app.store = store
    out: dict[str, float] = {"fill_s": fill}
    t0 = time.perf_counter()
    lib = await library_vectors(store, MODEL_ID)
    out["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    layout = fit(lib.matrix)
    out["fit_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    layout.place(lib.matrix)
    out["place_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(5)
    fresh = rng.standard_normal((1000, DIM)).astype(np.float32)
    fresh /= np.linalg.norm(fresh, axis=1, keepdims=True)
    t0 = time.perf_counter()
    layout.place(fresh)
    out["place_1000_new_ms"] = (time.perf_counter() - t0) * 1e3
    # the service end to end, as GET /map's first call
    svc = MapService(data, app.loaded, app.stores, app.tasks)
    t0 = time.perf_counter()
    page = await svc.page(MapRequest())
    out["service_first_call_s"] = time.perf_counter() - t0
    assert page.total == n
    t0 = time.perf_counter()
    await svc.page(MapRequest(offset=0, limit=20_000))
    out["page_20k_ms"] = (time.perf_counter() - t0) * 1e3
    await store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, nargs="+", default=[10_000, 100_000])
    args = ap.parse_args()
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} cpus, python {platform.python_version()}")
    for n in args.tracks:
        with tempfile.TemporaryDirectory() as d:
            r = asyncio.run(bench(n, Path(d)))
        layout = r["read_s"] + r["fit_s"] + r["place_s"]
        print(
            f"map @ {n} tracks: layout {layout:.1f} s (read {r['read_s']:.1f} s, fit "
            f"{r['fit_s']:.1f} s, place {r['place_s']:.1f} s; goal ≤ 60 s at 100 k); "
            f"service first call {r['service_first_call_s']:.1f} s; 1000 new tracks placed "
            f"in {r['place_1000_new_ms']:.0f} ms; one 20 k page {r['page_20k_ms']:.0f} ms "
            f"(store filled in {r['fill_s']:.0f} s)"
        )


if __name__ == "__main__":
    main()
