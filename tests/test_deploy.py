"""Deployment files: nats.conf, run for real with nats-server (users, permissions, limits).
The compose files and the Dockerfiles: test_deploy_compose.py."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
import pytest_asyncio
from nats.aio.client import Client as NATS

from insight.bus import subjects
from insight.bus.connection import flush_subscriptions
from insight.bus.embedded import free_port, nats_server_binary

ROOT = Path(__file__).resolve().parent.parent
PASSWORDS = {"INSIGHT_NATS_PASSWORD": "insight-secret", "MA_NATS_PASSWORD": "ma-secret"}


# --- nats.conf ------------------------------------------------------------------------------


def test_nats_conf_is_valid_and_needs_the_passwords() -> None:
    binary = str(nats_server_binary())
    env = {**os.environ, **PASSWORDS}
    ok = subprocess.run(
        [binary, "-t", "-c", str(ROOT / "nats.conf")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ok.returncode == 0, ok.stderr
    bare = {k: v for k, v in os.environ.items() if k not in PASSWORDS}
    missing = subprocess.run(
        [binary, "-t", "-c", str(ROOT / "nats.conf")],
        env=bare,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode != 0
    assert "INSIGHT_NATS_PASSWORD" in missing.stderr + missing.stdout


def test_nats_conf_settings() -> None:
    conf = (ROOT / "nats.conf").read_text()
    active = "\n".join(ln for ln in conf.splitlines() if not ln.lstrip().startswith("#"))
    assert re.search(r"^max_payload:\s*8MB", active, re.M)
    assert re.search(r"^http:\s*8222", active, re.M)
    assert re.search(r'store_dir:\s*"/data/jetstream"', active)
    assert "max_file_store" in active and "max_memory_store" in active
    assert "$INSIGHT_NATS_PASSWORD" in active and "$MA_NATS_PASSWORD" in active
    assert re.search(r"^#\s*tls \{", conf, re.M) and "tls {" not in active  # documented, off


class NatsConf:
    """The real nats.conf on free ports, its JetStream store moved to a tmp dir."""

    def __init__(self, tmp: Path) -> None:
        self.port, self.http_port, self.tmp = free_port(), free_port(), tmp
        self.proc: asyncio.subprocess.Process | None = None

    def url(self, user: str, password: str) -> str:
        return f"nats://{user}:{password}@127.0.0.1:{self.port}"

    async def start(self) -> None:
        original = (ROOT / "nats.conf").read_text()
        text = original.replace('store_dir: "/data/jetstream"', f'store_dir: "{self.tmp}/js"')
        assert text != original
        conf = self.tmp / "nats.conf"
        conf.write_text(text)
        self.proc = await asyncio.create_subprocess_exec(
            str(nats_server_binary()),
            "-c",
            str(conf),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-m",
            str(self.http_port),
            env={**os.environ, **PASSWORDS},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(200):
            if self.proc.returncode is not None:
                err = await self.proc.stderr.read() if self.proc.stderr else b""
                raise AssertionError(f"nats-server exited: {err.decode()}")
            try:
                _, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise TimeoutError("nats-server with nats.conf did not start")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@pytest_asyncio.fixture
async def conf_server(tmp_path: Path) -> AsyncIterator[NatsConf]:
    server = NatsConf(tmp_path)
    await server.start()
    yield server
    await server.stop()


async def connect(url: str, errors: list[str]) -> NATS:
    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    return await nats.connect(url, error_cb=on_error, allow_reconnect=False)


async def test_nats_conf_users_and_permissions(
    conf_server: NatsConf, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """A real worker runs as `insight`; `music_assistant` can do its job and nothing else."""
    from conftest import make_settings  # the shared test settings: free ports, tiny model

    from insight.runtime import Stack

    # The insight user: a whole worker + bridge (streams, consumers, KV, micro service).
    settings = make_settings(
        tmp_path / "data",
        tiny_model_dir,
        nats={
            "url": f"nats://127.0.0.1:{conf_server.port}",
            "user": "insight",
            "password": PASSWORDS["INSIGHT_NATS_PASSWORD"],
        },
    )
    stack = Stack(settings)
    await stack.start()
    ma_errors: list[str] = []
    ma = await connect(conf_server.url("music_assistant", PASSWORDS["MA_NATS_PASSWORD"]), ma_errors)
    try:
        # Requests to the service, replies on _INBOX.
        reply = await ma.request("insight.v1.health", b"", timeout=5)
        assert reply.data
        # JetStream publish of an event (ack comes back on _INBOX) and the worker applies it.
        from insight.codec import pack

        event = {
            "event": "media_item_added",
            "object_id": "library://track/conf-1",
            "data": {"name": "Conf Song", "artists": ["NATS"], "uri": "library://track/conf-1"},
        }
        ack = await ma.jetstream().publish(
            subjects.TRACK_ADDED, pack(event), headers={"Nats-Msg-Id": "conf-1"}
        )
        assert ack.stream == subjects.EVENTS_STREAM
        assert stack.worker is not None
        store = stack.worker.app.require_store()
        for _ in range(200):
            if await store.exists("tracks_text", "library://track/conf-1"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the worker (user insight) did not apply the MA user's event")
        # Notifications reach the MA user.
        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_notify(msg: Any) -> None:
            await got.put(msg.data)

        notify_sub = await ma.subscribe("insight.notify.>", cb=on_notify)
        await flush_subscriptions(ma)
        assert stack.worker.app.nc is not None
        await stack.worker.app.nc.publish(subjects.TRACK_ANALYZED, b"x")
        assert await asyncio.wait_for(got.get(), 5) == b"x"
        await notify_sub.unsubscribe()

        # What the MA user must not do: serve/eavesdrop insight.v1, write the DLQ, admin JS.
        await ma.subscribe("insight.v1.>")
        await ma.publish("insight.dlq.library.track.added", b"x")
        await ma.publish("$JS.API.STREAM.DELETE.INSIGHT_EVENTS", b"")
        await ma.subscribe("$KV.insight_sessions.>")
        await flush_subscriptions(ma)
        await asyncio.sleep(0.3)
        joined = "\n".join(ma_errors).lower()
        assert 'subscription to "insight.v1.>"' in joined
        assert 'publish to "insight.dlq.library.track.added"' in joined
        assert 'publish to "$js.api.stream.delete.insight_events"' in joined
        assert 'subscription to "$kv.insight_sessions.>"' in joined
        info = await stack.worker.app.js.stream_info(subjects.EVENTS_STREAM)  # type: ignore[union-attr]
        assert info.config.name == subjects.EVENTS_STREAM  # still there

        # Wrong password: refused. Monitoring endpoint answers.
        with pytest.raises(Exception):  # noqa: B017 - nats.py raises its own auth errors
            await connect(conf_server.url("music_assistant", "wrong"), [])
        healthz = f"http://127.0.0.1:{conf_server.http_port}/healthz"
        assert await asyncio.to_thread(lambda: urllib.request.urlopen(healthz).status) == 200
    finally:
        await ma.close()
        await stack.stop()
