"""Bounded loopback load: 50 clients mixing search, embed-text and stream frames for ~10 s.

The load generator is ``run_load`` of bench/bridge.py (the bench runs it for 20 s). Prints p50/p99
per operation; asserts no errors and no 5xx. ``INSIGHT_LOAD_SECONDS`` changes the duration.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import pytest_asyncio
from conftest import Running, make_settings, start_running, stop_running

SECONDS = float(os.environ.get("INSIGHT_LOAD_SECONDS", "10"))
CLIENTS = 50


def bench_module() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "bridge.py"
    spec = importlib.util.spec_from_file_location("insight_bench_http", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> AsyncIterator[Running]:
    settings = make_settings(
        tmp_path_factory.mktemp("load") / "d", tiny_model_dir, stream={"max_sessions": 2 * CLIENTS}
    )
    r = await start_running(settings)
    yield r
    await stop_running(r)


async def test_fifty_clients_mixed_load(stack: Running) -> None:
    bench = bench_module()
    rng = np.random.default_rng(0)
    tracks = []
    for i in range(200):
        v = rng.standard_normal(512).astype(np.float32)
        tracks.append(
            {
                "track_id": f"load-seed-{i}",
                "metadata": {"name": f"Seed {i}"},
                "text_embedding": (v / np.linalg.norm(v)).tolist(),
            }
        )
    for start in range(0, len(tracks), 100):
        status, reply = await stack.api.call(
            "POST", "/tracks/batch-upsert", {"tracks": tracks[start : start + 100]}
        )
        assert status == 200 and reply["failed"] == 0

    result = await bench.run_load(stack.api.base, CLIENTS, SECONDS)
    print(
        f"\nload: {result['clients']} clients, {result['seconds']} s, {result['requests']} "
        f"requests ({result['rps']}/s), p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"errors {result['errors']}, 5xx {result['http_5xx']}"
    )
    for op, r in result["per_op"].items():
        print(f"  {op:<11} n={r['n']:<6} p50 {r['p50_ms']:>7.2f} ms  p99 {r['p99_ms']:>7.2f} ms")

    assert result["errors"] == 0, result["error_samples"]
    assert result["http_5xx"] == 0
    assert result["seconds"] <= SECONDS + 15
    for op, r in result["per_op"].items():
        assert r["n"] >= CLIENTS, (op, r)  # every client got through each operation
    # the service is still healthy and every session's audio was counted
    status, health = await stack.api.call("GET", "/health")
    assert status == 200 and health["status"] == "healthy"
    status, stats = await stack.api.call("GET", "/storage/stats")
    assert stats["stats"]["text_collection_count"] == 200  # frames/embed-text store nothing
