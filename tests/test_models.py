"""Model listing, hot swap under load, delete rules, stale vectors and re-embedding."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from conftest import Running, make_settings, start_running, stop_running
from fake_hub import FakeHub, hub_layout

from insight.storage.base import TRACKS_AUDIO
from insight.testing.tiny_clap import build_tiny_clap
from insight.watcher.service import WatcherService
from tests.audio_files import tagged, write_track

MODEL_B = "test-org/tiny-b"


@pytest.fixture(scope="module")
def model_b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("tiny-b"), seed=1)


@pytest_asyncio.fixture
async def hub(model_b_dir: Path) -> AsyncIterator[FakeHub]:
    h = await FakeHub(repos={MODEL_B: hub_layout(model_b_dir)}).start()
    yield h
    await h.stop()


@pytest_asyncio.fixture
async def stack(tmp_path: Path, tiny_model_dir: Path, hub: FakeHub) -> AsyncIterator[Running]:
    music = tmp_path / "music"
    write_track(music / "a.flac", tags=tagged("Alpha", "A", "AA", "Rock"), freq=300)
    write_track(music / "sub" / "b.mp3", tags=tagged("Beta", "B", "BB", "Jazz"), freq=600)
    settings = make_settings(
        tmp_path / "data",
        tiny_model_dir,
        model={"hub_endpoint": hub.url},
        watcher={"folders": [str(music)], "debounce_s": 0.2, "scan_interval_s": 0},
    )
    r = await start_running(settings)
    assert r.app.services.watcher is not None  # built by the app (watcher extra installed)
    yield r
    await stop_running(r)


async def download(r: Running, model_id: str = MODEL_B) -> None:
    status, body = await r.api.call("POST", "/models/download", {"model_id": model_id})
    assert status == 200, body
    for _ in range(400):
        _, models = await r.api.call("GET", "/models")
        entry = next(m for m in models["models"] if m["model_id"] == model_id)
        if entry["status"] == "downloaded":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"download did not finish: {entry}")


async def stale(r: Running) -> tuple[int, int]:
    _, stats = await r.api.call("GET", "/storage/stats")
    _, status = await r.api.call("GET", "/status")
    return stats["stats"]["stale_vectors"], status["storage"]["stale_vectors"]


async def test_listing(stack: Running) -> None:
    status, body = await stack.api.call("GET", "/models")
    assert status == 200
    by_id = {m["model_id"]: m for m in body["models"]}
    default = by_id["Xenova/clap-htsat-unfused"]
    assert default["status"] == "not_downloaded" and default["recommended"]
    assert default["onnx_on_hub"] is True and default["license"]
    music = by_id["laion/larger_clap_music"]
    assert music["onnx_on_hub"] is False
    assert "insight models export" in music["note"]
    current = by_id["insight/tiny-clap"]
    assert current["status"] == "loaded" and current["is_current"]
    assert current["actual_size_bytes"] > 0 and current["device"] == "CPU"
    assert body["current_model"] == "insight/tiny-clap"
    status, body = await stack.api.call(
        "POST", "/models/download", {"model_id": "laion/larger_clap_music"}
    )
    assert status == 400 and "insight models export" in body["error"]["message"]


async def test_ids_that_escape_are_refused(stack: Running) -> None:
    for path in ("/models/a/b/c/load", "/models/..%2F..%2Fetc/load", "/models/.x/y/load"):
        status, body = await stack.api.call("POST", path)
        assert status in (400, 404), (path, status, body)
        if status == 404:  # the router may refuse before us; never a 200
            assert body["error"]["code"] == "NOT_FOUND"
    status, body = await stack.api.call("DELETE", "/models/x/..")
    assert status in (400, 404)
    status, body = await stack.api.call("POST", "/models/a/b/c/load")
    assert status == 400
    status, body = await stack.api.call("POST", "/models/nobody/nothing/load")
    assert status == 400 and "not downloaded" in body["error"]["message"]


async def test_hot_swap_under_load(stack: Running) -> None:
    await download(stack)
    before = (await stack.app.pool.embed_texts(["swap test"]))[0]

    async def one(i: int) -> int:
        status, _body = await stack.api.call("POST", "/embed/text", {"text": f"request {i}"})
        return status

    requests = [asyncio.create_task(one(i)) for i in range(20)]
    await asyncio.sleep(0)  # requests are on their way
    status, body = await stack.api.call("POST", f"/models/{MODEL_B}/load")
    assert status == 200, body
    results = await asyncio.gather(*requests)
    assert results == [200] * 20
    assert stack.app.pool.model.model_id == MODEL_B
    after = (await stack.app.pool.embed_texts(["swap test"]))[0]
    assert float(np.dot(before, after)) < 0.99  # another vector space
    _, body = await stack.api.call("GET", "/models")
    assert body["current_model"] == MODEL_B
    # the loaded model cannot be deleted; the other one can come back and B can go
    status, body = await stack.api.call("DELETE", f"/models/{MODEL_B}")
    assert status == 409, body
    status, body = await stack.api.call("POST", "/models/insight%2Ftiny-clap/load")
    assert status == 200, body
    status, body = await stack.api.call("DELETE", "/models/test-org%2Ftiny-b")
    assert status == 200, body
    status, body = await stack.api.call("DELETE", f"/models/{MODEL_B}")
    assert status == 404, body


async def test_stale_vectors_and_reembed(stack: Running) -> None:
    api = stack.api
    for i in range(3):
        status, _ = await api.call(
            "POST",
            "/tracks/embed-text",
            {"track_id": f"ma-{i}", "metadata": {"name": f"Song {i}", "artists": ["X"]}},
        )
        assert status == 200
    status, _ = await api.call(
        "POST",
        "/tracks/upsert",
        {
            "track_id": "streamed",
            "metadata": {"name": "Streamed"},
            "audio_embedding": [1.0] + [0.0] * 511,
        },
    )
    assert status == 200
    watcher: WatcherService = stack.app.services.watcher
    await watcher.start()
    await watcher.wait_idle(60)
    assert await stale(stack) == (0, 0)
    await download(stack)
    status, body = await api.call("POST", f"/models/{MODEL_B}/load", {"switch": "now"})
    assert status == 200, body
    # text: 3 + 2 files; audio: 2 files + 1 streamed
    assert body["stale_vectors"] == 8
    assert await stale(stack) == (8, 8)
    status, body = await api.call("POST", "/models/reembed")
    assert status == 200, body
    assert body["reembedded_text"] == 5
    assert body["reembedded_audio"] == 2
    await watcher.wait_idle(60)
    stack.app.services.models._stale = None
    assert await stale(stack) == (1, 1)  # the streamed audio vector has no file
    status, body = await api.call("POST", "/models/reembed", {"drop_unrecoverable": True})
    assert status == 200 and body["dropped_audio"] == 1 and body["remaining_stale"] == 0
    assert await stale(stack) == (0, 0)
    points, _ = await stack.app.store.scroll(TRACKS_AUDIO, limit=100)
    assert {p.payload["model_id"] for p in points} == {MODEL_B}


async def test_configured_path_needs_no_network(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = make_settings(
        tmp_path / "d", tiny_model_dir, model={"hub_endpoint": "http://127.0.0.1:9"}
    )
    r = await start_running(settings)
    try:
        assert r.app.pool is not None
        status, body = await r.api.call("GET", "/models")
        assert status == 200 and body["current_model"] == "insight/tiny-clap"
    finally:
        await stop_running(r)
