"""Model downloads against a loopback stand-in for the hub: progress, cut connections,
verification, cancel, offline, id validation, and the HTTP endpoints."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from conftest import make_settings, start_running, stop_running
from fake_hub import FakeHub, hub_layout

from insight.config import ModelSettings
from insight.errors import BadRequest
from insight.inference.clap import ClapModel
from insight.models.download import (
    DownloadManager,
    cached_model_dir,
    cached_size,
    delete_cached,
    manifest_path,
)
from insight.models.registry import validate_model_id
from insight.schemas import DownloadStatus

REPO = "test-org/tiny-clap"


@pytest_asyncio.fixture
async def hub(tiny_model_dir: Path) -> AsyncIterator[FakeHub]:
    h = await FakeHub(repos={REPO: hub_layout(tiny_model_dir)}).start()
    yield h
    await h.stop()


async def finish(mgr: DownloadManager, model_id: str = REPO) -> DownloadStatus:
    job = mgr.start(model_id)
    await asyncio.wait_for(mgr.wait(job.download_id), 60)
    return job.status


async def start_with_models(settings):  # type: ignore[no-untyped-def]
    """A running stack (its app builds the models service)."""
    return await start_running(settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_download_verifies_and_loads(hub: FakeHub, tmp_path: Path) -> None:
    mgr = DownloadManager(tmp_path, endpoint=hub.url)
    job = mgr.start(REPO)
    await mgr.wait(job.download_id)
    assert job.status == DownloadStatus.COMPLETED, job.error
    progress = job.progress()
    total = sum(len(d) for n, d in hub.repos[REPO].items() if n != "README.md")
    assert progress.total_bytes == progress.bytes_downloaded == total
    root = cached_model_dir(REPO, tmp_path)
    assert root is not None and (root / "onnx" / "audio_model.onnx").is_file()
    assert not (root / "README.md").exists()  # only the files a model folder needs
    assert cached_size(REPO, tmp_path) == total
    model = ClapModel.load(root, ModelSettings(), REPO)
    assert model.embed_text(["hello"]).shape == (1, 512)
    # Already complete: a second download fetches nothing.
    before = sum(hub.requests[n] for n in hub.repos[REPO])
    assert await finish(mgr) == DownloadStatus.COMPLETED
    assert sum(hub.requests[n] for n in hub.repos[REPO]) == before


async def test_connection_cut_mid_file_is_resumed(hub: FakeHub, tmp_path: Path) -> None:
    hub.cut_once["onnx/audio_model.onnx"] = 200_000
    mgr = DownloadManager(tmp_path, endpoint=hub.url)
    assert await finish(mgr) == DownloadStatus.COMPLETED
    assert hub.requests["onnx/audio_model.onnx"] == 2  # resumed with a range request
    root = cached_model_dir(REPO, tmp_path)
    assert root is not None
    data = (root / "onnx" / "audio_model.onnx").read_bytes()
    assert data == hub.repos[REPO]["onnx/audio_model.onnx"]


async def test_truncated_download_never_counts(hub: FakeHub, tmp_path: Path) -> None:
    hub.cut_always["onnx/audio_model.onnx"] = 100_000
    mgr = DownloadManager(tmp_path, endpoint=hub.url)
    job = mgr.start(REPO)
    await asyncio.wait_for(mgr.wait(job.download_id), 120)
    assert job.status == DownloadStatus.FAILED
    assert job.error
    assert cached_model_dir(REPO, tmp_path) is None
    assert not manifest_path(REPO, tmp_path).exists()
    # Retry once the network is back: the text tower finished before is not fetched again.
    text_fetches = hub.requests["onnx/text_model.onnx"]
    hub.cut_always.clear()
    assert await finish(mgr) == DownloadStatus.COMPLETED
    assert hub.requests["onnx/text_model.onnx"] == text_fetches
    assert cached_model_dir(REPO, tmp_path) is not None


async def test_corrupt_file_fails_verification(hub: FakeHub, tmp_path: Path) -> None:
    hub.corrupt.add("onnx/text_model.onnx")
    mgr = DownloadManager(tmp_path, endpoint=hub.url)
    job = mgr.start(REPO)
    await mgr.wait(job.download_id)
    assert job.status == DownloadStatus.FAILED
    assert "sha256" in (job.error or "")
    assert cached_model_dir(REPO, tmp_path) is None
    hub.corrupt.clear()
    assert await finish(mgr) == DownloadStatus.COMPLETED


async def test_cancel(hub: FakeHub, tmp_path: Path) -> None:
    hub.throttle_s = 0.05
    mgr = DownloadManager(tmp_path, endpoint=hub.url)
    job = mgr.start(REPO)
    for _ in range(200):
        if job.progress().bytes_downloaded > 0:
            break
        await asyncio.sleep(0.02)
    assert job.status == DownloadStatus.DOWNLOADING
    mgr.cancel(job.download_id)
    await asyncio.wait_for(mgr.wait(job.download_id), 30)
    assert job.status == DownloadStatus.CANCELLED
    assert cached_model_dir(REPO, tmp_path) is None


async def test_hub_unreachable_is_a_clear_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    mgr = DownloadManager(tmp_path, endpoint=f"http://127.0.0.1:{free_port()}")
    job = mgr.start(REPO)
    await asyncio.wait_for(mgr.wait(job.download_id), 120)
    assert job.status == DownloadStatus.FAILED
    assert "unreachable" in (job.error or "")


async def test_unknown_repo(hub: FakeHub, tmp_path: Path) -> None:
    mgr = DownloadManager(tmp_path, endpoint=hub.url)
    job = mgr.start("test-org/nothing-here")
    await mgr.wait(job.download_id)
    assert job.status == DownloadStatus.FAILED
    assert "not found" in (job.error or "")


async def test_repo_without_onnx(hub: FakeHub, tmp_path: Path) -> None:
    hub.repos["laion/larger_clap_music"] = {"config.json": b"{}", "model.safetensors": b"x"}
    mgr = DownloadManager(tmp_path, endpoint=hub.url)
    job = mgr.start("laion/larger_clap_music")
    await mgr.wait(job.download_id)
    assert job.status == DownloadStatus.FAILED
    assert "insight models export" in (job.error or "")


@pytest.mark.parametrize(
    "bad",
    [
        "../etc",
        "a/../../b",
        "/abs/path",
        "owner",
        "a/b/c",
        "a/.hidden",
        "a/b c",
        "a/b;rm",
        "a--b/c",
        "../..",
        "a/..",
        "a/b\\c",
        "ö/x",
    ],
)
def test_invalid_ids_refused(bad: str) -> None:
    with pytest.raises(BadRequest):
        validate_model_id(bad)


def test_valid_ids() -> None:
    for ok in ("Xenova/clap-htsat-unfused", "laion/larger_clap_music", "a.b/c_d-1.0"):
        assert validate_model_id(ok) == ok


async def test_delete_cached(hub: FakeHub, tmp_path: Path) -> None:
    mgr = DownloadManager(tmp_path, endpoint=hub.url)
    assert await finish(mgr) == DownloadStatus.COMPLETED
    assert delete_cached(REPO, tmp_path)
    assert cached_model_dir(REPO, tmp_path) is None
    assert not delete_cached(REPO, tmp_path)


# --- over HTTP --------------------------------------------------------------------------------


async def test_download_endpoints(hub: FakeHub, tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = make_settings(tmp_path / "data", tiny_model_dir, model={"hub_endpoint": hub.url})
    r = await start_with_models(settings)
    try:
        api = r.api
        status, body = await api.call("POST", "/models/download", {"model_id": REPO})
        assert status == 200, body
        assert body["already_exists"] is False
        download_id = body["download_id"]
        for _ in range(300):
            _, listing = await api.call("GET", "/models/downloads")
            mine = [d for d in listing["downloads"] if d["download_id"] == download_id]
            if mine and mine[0]["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert mine[0]["status"] == "completed", mine
        assert mine[0]["bytes_downloaded"] == mine[0]["total_bytes"] > 0
        _, models = await api.call("GET", "/models")
        by_id = {m["model_id"]: m for m in models["models"]}
        assert by_id[REPO]["status"] == "downloaded"
        assert by_id[REPO]["actual_size_bytes"] > 0
        status, body = await api.call("POST", "/models/download", {"model_id": REPO})
        assert status == 200 and body["already_exists"] is True
        for bad in ("../../etc", "/etc/passwd", "a/b/c", "x/.."):
            status, body = await api.call("POST", "/models/download", {"model_id": bad})
            assert status == 400, (bad, body)
        status, _ = await api.call("DELETE", "/models/downloads/nope")
        assert status == 404
        # a slow download can be cancelled over HTTP
        hub.throttle_s = 0.05
        delete_cached(REPO, settings.models_dir)
        status, body = await api.call("POST", "/models/download", {"model_id": REPO})
        download_id = body["download_id"]
        status, again = await api.call("POST", "/models/download", {"model_id": REPO})
        assert status == 409, again
        status, body = await api.call("DELETE", f"/models/downloads/{download_id}")
        assert status == 200, body
        for _ in range(300):
            _, listing = await api.call("GET", "/models/downloads")
            mine = [d for d in listing["downloads"] if d["download_id"] == download_id]
            if mine[0]["status"] == "cancelled":
                break
            await asyncio.sleep(0.05)
        assert mine[0]["status"] == "cancelled"
    finally:
        await stop_running(r)


async def test_offline_download_error_over_http(tmp_path: Path, tiny_model_dir: Path) -> None:
    settings = make_settings(
        tmp_path / "data", tiny_model_dir, model={"hub_endpoint": f"http://127.0.0.1:{free_port()}"}
    )
    r = await start_with_models(settings)
    try:
        status, _body = await r.api.call("POST", "/models/download", {"model_id": REPO})
        assert status == 200
        for _ in range(600):
            _, listing = await r.api.call("GET", "/models/downloads")
            if listing["downloads"][0]["status"] == "failed":
                break
            await asyncio.sleep(0.05)
        assert "unreachable" in listing["downloads"][0]["error"]
        # the configured local model still serves requests with no network
        status, _ = await r.api.call("POST", "/embed/text", {"text": "offline"})
        assert status == 200
    finally:
        await stop_running(r)


async def test_cli_download_and_list(
    hub: FakeHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse

    from insight.models.cli import add_commands

    monkeypatch.setenv("INSIGHT_STORAGE__DATA_DIR", str(tmp_path / "cli"))
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["download", REPO, "--endpoint", hub.url])
    assert await asyncio.to_thread(args.func, args) == 0
    assert "downloaded and verified" in capsys.readouterr().out
    args = parser.parse_args(["list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert REPO in out and "downloaded" in out and "insight models export" in out
    args = parser.parse_args(["download", "../x", "--endpoint", hub.url])
    assert args.func(args) == 2
    args = parser.parse_args(["download", REPO, "--endpoint", f"http://127.0.0.1:{free_port()}"])
    monkeypatch.setenv("INSIGHT_STORAGE__DATA_DIR", str(tmp_path / "cli2"))
    assert await asyncio.to_thread(args.func, args) == 1
    assert "unreachable" in capsys.readouterr().err


async def test_first_start_downloads_and_loads_the_configured_model(
    hub: FakeHub, tmp_path: Path
) -> None:
    """No model anywhere: the worker fetches the configured one and becomes healthy."""
    settings = make_settings(
        tmp_path / "data",
        None,
        model={"name": REPO, "auto_download": True, "hub_endpoint": hub.url},
    )
    r = await start_running(settings)
    try:
        for _ in range(200):
            status, health = await r.api.call("GET", "/health")
            if health["model_loaded"]:
                break
            await asyncio.sleep(0.05)
        assert status == 200 and health["status"] == "healthy"
        assert r.app.pool.model.model_id == REPO
        status, reply = await r.api.call("POST", "/embed/text", {"text": "first start"})
        assert status == 200 and len(reply["embedding"]) == 512
    finally:
        await stop_running(r)
