"""The dashboard's map with a large library, in headless Chromium (goal: usable at 100 k).

    .venv/bin/python bench/dashboard.py [--tracks 100000]

Fills the file store (bench/taste.py's clustered library), starts the real stack (bus, worker,
bridge) on it without a model, opens ``/#/map`` in Debian's Chromium through Selenium and
measures: the time until every point is drawn (the first layout included, then again with the
layout stored) and one full redraw (what every pan, zoom or hover step costs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime  # noqa: F401  (before usearch)

from bench.taste import DIM, fill_store
from insight.config import Settings
from insight.runtime import Stack
from insight.storage.file import FileStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from browser import chrome, wait_for
from selenium.webdriver.common.by import By


def measure(base: str, n: int) -> dict[str, float]:
    driver = chrome()
    out: dict[str, float] = {}
    try:
        for name in ("first_open_s", "second_open_s"):
            t0 = time.perf_counter()
            driver.get(base + "/#/map")
            canvas = wait_for(lambda: driver.find_element(By.ID, "map-canvas"), 300)
            wait_for(lambda c=canvas: c.get_attribute("data-total") == str(n), 300, "drawn")
            out[name] = time.perf_counter() - t0
            driver.get(base + "/#/search")  # leave, so the next open loads again
        driver.get(base + "/#/map")
        canvas = wait_for(lambda: driver.find_element(By.ID, "map-canvas"), 300)
        wait_for(lambda: canvas.get_attribute("data-total") == str(n), 300, "drawn")
        draws = []
        for _ in range(10):
            driver.execute_script(
                "document.getElementById('colour-by').dispatchEvent(new Event('change'))"
            )
            draws.append(float(canvas.get_attribute("data-draw-ms")))
        out["redraw_ms_p50"] = statistics.median(draws)
    finally:
        driver.quit()
    return out


async def run(n: int, data: Path) -> dict[str, float]:
    store = FileStore(data, DIM)
    await store.open()
    fill = await fill_store(store, n)
    await store.close()
    settings = Settings(
        storage={"data_dir": data},
        server={"host": "127.0.0.1", "port": 0},
        model={"path": None, "auto_download": False},
        nats={"url": ""},
    )
    stack = Stack(settings)
    await stack.start()
    assert stack.bridge is not None
    try:
        out = await asyncio.to_thread(measure, f"http://127.0.0.1:{stack.bridge.port}", n)
    finally:
        await stack.stop()
    out["fill_s"] = fill
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=100_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        r = asyncio.run(run(args.tracks, Path(d)))
    print(
        f"dashboard map @ {args.tracks} tracks: first open {r['first_open_s']:.1f} s (layout "
        f"included), next open {r['second_open_s']:.1f} s, redraw p50 {r['redraw_ms_p50']:.0f} "
        f"ms (store filled in {r['fill_s']:.0f} s)"
    )


if __name__ == "__main__":
    main()
