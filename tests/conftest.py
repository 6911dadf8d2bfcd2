"""Shared fixtures: a real nats-server, the tiny CLAP model, a running stack (bus + bridge),
an events-ready bus client and an in-process worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from insight.bus.client import BusClient
from insight.bus.embedded import EmbeddedNats
from insight.bus.streams import ensure_streams
from insight.codec import Format, pack, unpack
from insight.config import Settings
from insight.runtime import Stack, Worker


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from insight.testing.tiny_clap import build_tiny_clap

    return build_tiny_clap(tmp_path_factory.mktemp("tiny-clap"))


@pytest_asyncio.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    yield server
    server.stop()


def make_settings(data_dir: Path, model_dir: Path | None, **sections: dict[str, Any]) -> Settings:
    """Settings for a test stack: loopback, free ports, tmp data, the tiny model."""
    base: dict[str, Any] = {
        "storage": {"data_dir": data_dir},
        "server": {"host": "127.0.0.1", "port": 0},
        "model": {"path": model_dir, "name": "insight/tiny-clap", "auto_download": False},
        "nats": {"url": ""},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Settings(**base)


class Api:
    """A small HTTP client for the bridge, msgpack by default."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base = session, base

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        fmt: Format = Format.MSGPACK,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        hdrs = {"Accept": fmt.content_type, **(headers or {})}
        data = raw
        if body is not None:
            data = pack(body, fmt)
            hdrs.setdefault("Content-Type", fmt.content_type)
        async with self.session.request(method, self.base + path, data=data, headers=hdrs) as r:
            content = await r.read()
            ctype = r.headers.get("Content-Type", "")
            if not content:
                return r.status, None
            if "msgpack" in ctype:
                return r.status, unpack(content, Format.MSGPACK)
            if "json" in ctype:
                return r.status, unpack(content, Format.JSON)
            return r.status, content


class Running:
    """A started stack plus clients for its bridge and its bus."""

    def __init__(self, stack: Stack, api: Api, bus: BusClient) -> None:
        self.stack, self.api, self.bus = stack, api, bus

    @property
    def app(self) -> Any:
        assert self.stack.worker is not None
        return self.stack.worker.app


async def start_running(settings: Settings) -> Running:
    stack = Stack(settings)
    await stack.start()
    assert stack.bridge is not None and stack.bridge.nc is not None
    session = aiohttp.ClientSession()
    api = Api(session, f"http://127.0.0.1:{stack.bridge.port}/api/v1")
    return Running(stack, api, BusClient(stack.bridge.nc))


async def stop_running(running: Running) -> None:
    await running.api.session.close()
    await running.stack.stop()


@pytest_asyncio.fixture
async def running(tmp_path: Path, tiny_model_dir: Path) -> AsyncIterator[Running]:
    """A full stack (embedded NATS, worker with the tiny model, bridge) on free ports."""
    r = await start_running(make_settings(tmp_path / "data", tiny_model_dir))
    yield r
    await stop_running(r)


def start_serve(
    data_dir: Path, model_dir: Path, port: int, **popen: Any
) -> subprocess.Popen[bytes]:
    """``insight serve`` as a user starts it: a child process on loopback."""
    env = {
        **os.environ,
        "INSIGHT_STORAGE__DATA_DIR": str(data_dir),
        "INSIGHT_SERVER__HOST": "127.0.0.1",
        "INSIGHT_SERVER__PORT": str(port),
        "INSIGHT_MODEL__PATH": str(model_dir),
        "INSIGHT_NATS__URL": "",
    }
    return subprocess.Popen([sys.executable, "-m", "insight.cli", "serve"], env=env, **popen)


def wait_for_health(port: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/health", headers={"Accept": "application/json"}
    )
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(req, timeout=1) as resp:
                return dict(json.load(resp))
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"no health answer on port {port} within {timeout}s")


@pytest_asyncio.fixture
async def running_no_model(tmp_path: Path) -> AsyncIterator[Running]:
    """A full stack with no model available (health is degraded)."""
    r = await start_running(make_settings(tmp_path / "data", tmp_path / "no-model"))
    yield r
    await stop_running(r)


@pytest_asyncio.fixture
async def bus(nats_server: EmbeddedNats) -> AsyncIterator[NATS]:
    """A client of the test server with insight's JetStream streams in place."""
    nc = await nats.connect(nats_server.url)
    await ensure_streams(nc.jetstream())
    yield nc
    await nc.close()


@pytest_asyncio.fixture
async def worker(
    nats_server: EmbeddedNats, tmp_path: Path, tiny_model_dir: Path
) -> AsyncIterator[Worker]:
    """An in-process worker on the test server, its data under ``tmp_path / "w"``."""
    from tests.busutil import in_process_worker  # busutil imports this module

    w = await in_process_worker(nats_server.url, tmp_path / "w", tiny_model_dir)
    yield w
    await w.stop()
