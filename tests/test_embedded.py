"""The embedded nats-server and `insight serve` as a newcomer runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import nats
import pytest

from insight.bus.embedded import EmbeddedNats, free_port
from tests.conftest import start_serve, wait_for_health


def nats_server_pids(parent: int | None = None) -> set[int]:
    args = ["pgrep", "-f", "nats-server"] + (["-P", str(parent)] if parent else [])
    out = subprocess.run(args, capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


async def test_embedded_server_has_jetstream_and_leaves_nothing(tmp_path: Path) -> None:
    server = EmbeddedNats(tmp_path / "nats")
    await server.start()
    assert server.proc is not None and server.proc.pid in nats_server_pids()
    nc = await nats.connect(server.url)
    info = await nc.jetstream().account_info()
    assert info.limits is not None
    assert nc.max_payload == 8 * 1024 * 1024
    await nc.close()
    server.stop()
    assert server.proc.poll() is not None
    assert server.proc.pid not in nats_server_pids()
    assert (tmp_path / "nats" / "jetstream").is_dir()  # store under the data dir


def test_serve_answers_health_and_stops_cleanly(tmp_path: Path, tiny_model_dir: Path) -> None:
    port = free_port()
    proc = start_serve(
        tmp_path / "data", tiny_model_dir, port, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        health = wait_for_health(port, timeout=15)
        assert health["status"] == "healthy" and health["model_loaded"] is True
        children = nats_server_pids(parent=proc.pid)
        assert len(children) == 1
        summary = subprocess.run(
            [
                sys.executable,
                "-m",
                "insight.cli",
                "status",
                "--url",
                f"http://127.0.0.1:{port}/api/v1/status",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert summary.returncode == 0, summary.stderr
        assert (
            "health   healthy" in summary.stdout
            and f"local/{tiny_model_dir.name}" in summary.stdout
        )
        assert "storage  file connected=True" in summary.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    logs = proc.stdout.read().decode() if proc.stdout else ""
    assert "bridge_listening" in logs and "nats_embedded_started" in logs
    assert "worker_stopped" in logs
    assert not children & nats_server_pids()


async def test_a_taken_port_is_an_error_not_someone_elses_server(tmp_path: Path) -> None:
    first = EmbeddedNats(tmp_path / "a")
    await first.start()
    try:
        second = EmbeddedNats(tmp_path / "b", port=first.port)
        with pytest.raises(RuntimeError, match="address already in use"):
            await second.start()
        assert second.proc is not None and second.proc.poll() is not None
    finally:
        first.stop()
