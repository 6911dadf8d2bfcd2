"""INSIGHT_MODEL__PATH is its own model (``local/<folder>``), never the default hub id.

The issue: with a local folder configured, ``/models`` listed the default hub id as downloaded
at that folder; loading it relabelled the local model (every vector stale, search empty) and
the local model could not be loaded back without a restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import Running, start_running, stop_running
from fake_hub import FakeHub, hub_layout

from insight.config import DEFAULT_MODEL, ModelSettings, Settings
from insight.inference.model_dir import local_model_id
from insight.testing.tiny_clap import build_tiny_clap

NOW = {"switch": "now"}  # the immediate swap: this test is about which model is which


@pytest.fixture(scope="module")
def hub_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clap(tmp_path_factory.mktemp("hub-model"), seed=3)


@pytest_asyncio.fixture
async def hub(hub_model_dir: Path) -> AsyncIterator[FakeHub]:
    h = await FakeHub(repos={DEFAULT_MODEL: hub_layout(hub_model_dir)}).start()
    yield h
    await h.stop()


@pytest_asyncio.fixture
async def stack(tmp_path: Path, tiny_model_dir: Path, hub: FakeHub) -> AsyncIterator[Running]:
    # as a user sets it: a folder, no INSIGHT_MODEL__NAME
    settings = Settings(
        storage={"data_dir": tmp_path / "data"},
        server={"host": "127.0.0.1", "port": 0},
        model={"path": tiny_model_dir, "auto_download": False, "hub_endpoint": hub.url},
        nats={"url": ""},
    )
    r = await start_running(settings)
    yield r
    await stop_running(r)


async def models_by_id(r: Running) -> dict[str, dict[str, Any]]:
    status, body = await r.api.call("GET", "/models")
    assert status == 200, body
    return {m["model_id"]: m for m in body["models"]}


async def stale(r: Running) -> int:
    r.app.services.models._stale = None
    _, stats = await r.api.call("GET", "/storage/stats")
    return int(stats["stats"]["stale_vectors"])


async def found(r: Running) -> list[str]:
    status, body = await r.api.call("POST", "/tracks/search-text", {"query": "song", "limit": 10})
    assert status == 200, body
    return sorted(x["track_id"] for x in body["results"])


async def test_local_folder_is_its_own_model(stack: Running, tiny_model_dir: Path) -> None:
    local = local_model_id(ModelSettings(path=tiny_model_dir))
    assert local == f"local/{tiny_model_dir.name}"
    api = stack.api
    for i in range(3):
        status, body = await api.call(
            "POST",
            "/tracks/embed-text",
            {"track_id": f"t{i}", "metadata": {"name": f"Song {i}", "artists": ["X"]}},
        )
        assert status == 200, body
    ids = ["t0", "t1", "t2"]
    assert await found(stack) == ids

    models = await models_by_id(stack)
    assert models[local]["status"] == "loaded"
    assert models[local]["cache_path"] == str(tiny_model_dir)
    assert models[local]["is_current"] is True
    assert "INSIGHT_MODEL__PATH" in models[local]["description"]
    hub_entry = models[DEFAULT_MODEL]
    assert (hub_entry["status"], hub_entry["cache_path"], hub_entry["is_current"]) == (
        "not_downloaded",
        None,
        False,
    )

    # the step: load the hub id. It is not downloaded, so nothing is relabelled.
    status, body = await api.call("POST", f"/models/{DEFAULT_MODEL}/load", NOW)
    assert status == 400 and body["error"]["code"] == "MODEL_NOT_DOWNLOADED", body
    assert stack.app.pool.model.model_id == local
    assert await stale(stack) == 0
    assert await found(stack) == ids

    # download it for real (from the hub): now it is a model of its own, in the hub cache
    status, body = await api.call("POST", "/models/download", {"model_id": DEFAULT_MODEL})
    assert status == 200 and body["already_exists"] is False, body
    for _ in range(400):
        if (await models_by_id(stack))[DEFAULT_MODEL]["status"] == "downloaded":
            break
        await asyncio.sleep(0.05)
    models = await models_by_id(stack)
    assert models[DEFAULT_MODEL]["status"] == "downloaded"
    assert models[DEFAULT_MODEL]["cache_path"] != str(tiny_model_dir)
    assert str(stack.app.settings.models_dir) in models[DEFAULT_MODEL]["cache_path"]
    status, body = await api.call("POST", f"/models/{DEFAULT_MODEL}/load", NOW)
    assert status == 200 and body["stale_vectors"] == 3, body  # really another model
    assert await found(stack) == []

    # and the local folder loads back without a restart: its vectors are fresh again
    status, body = await api.call("POST", f"/models/{local}/load", NOW)
    assert status == 200 and body["stale_vectors"] == 0, body
    assert stack.app.pool.model.model_id == local
    assert await stale(stack) == 0
    assert await found(stack) == ids
    models = await models_by_id(stack)
    assert (models[local]["status"], models[DEFAULT_MODEL]["status"]) == ("loaded", "downloaded")

    # the local folder is never downloaded over nor deleted
    status, body = await api.call("POST", "/models/download", {"model_id": local})
    assert status == 200 and body["already_exists"] is True, body
    status, body = await api.call("POST", f"/models/{DEFAULT_MODEL}/load", NOW)
    assert status == 200, body
    status, body = await api.call("DELETE", f"/models/{local}")
    assert status == 400 and body["error"]["code"] == "LOCAL_MODEL", body
    assert (tiny_model_dir / "tokenizer.json").is_file()


def test_local_model_id(tmp_path: Path) -> None:
    plain = tmp_path / "clap-onnx"
    odd = tmp_path / "my model (v2)"
    assert local_model_id(ModelSettings()) is None
    assert local_model_id(ModelSettings(path=plain)) == "local/clap-onnx"
    assert local_model_id(ModelSettings(path=odd)) == "local/my-model-v2"
    assert local_model_id(ModelSettings(path=plain, name="me/clap")) == "me/clap"


def test_cli_lists_the_local_folder_as_its_own_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "INSIGHT_STORAGE__DATA_DIR": str(tmp_path / "data"),
        "INSIGHT_MODEL__PATH": str(tiny_model_dir),
    }
    env.pop("INSIGHT_MODEL__NAME", None)
    done = subprocess.run(
        [sys.executable, "-m", "insight.cli", "models", "list"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in done.stdout.decode().splitlines()[1:-1]}
    assert rows[DEFAULT_MODEL][0] == "not_downloaded"  # not starred, not the folder
    assert rows[f"local/{tiny_model_dir.name}"] == ["local", "*"]
