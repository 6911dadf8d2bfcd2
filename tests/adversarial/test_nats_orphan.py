"""`insight serve` SIGKILLed (OOM killer, `kill -9`): the next start on the same data dir works.

The nats-server child is killed with its parent (PDEATHSIG through `setpriv`), and a server
left behind anyway (one started without it) is stopped at the next start, but only when
/proc proves it is this data dir's nats-server: any other process in the pid file is left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats

from insight.bus import subjects
from insight.bus.embedded import free_port, nats_server_binary
from insight.bus.orphan import PID_FILE, is_our_server, read_pid
from tests.adversarial.conftest import Served, start_served

TRACK = {"track_id": "orphan-1", "metadata": {"name": "Survivor"}, "text_embedding": [0.1] * 512}


def http(served: Served, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        served.base + path,
        data=data,
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def alive(pid: int) -> bool:
    """Running, not merely a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_until(cond: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return bool(cond())


async def publish_to_dlq(served: Served, payload: bytes) -> int:
    nc = await nats.connect(served.nats_url(), allow_reconnect=False, **served.bus_credentials())
    try:
        ack = await nc.jetstream().publish(f"{subjects.DLQ_PREFIX}.orphan-test", payload)
        return int(ack.seq)
    finally:
        await nc.close()


async def read_dlq(served: Served, seq: int) -> bytes:
    nc = await nats.connect(served.nats_url(), allow_reconnect=False, **served.bus_credentials())
    try:
        return bytes((await nc.jetstream().get_msg(subjects.DLQ_STREAM, seq)).data or b"")
    finally:
        await nc.close()


def start(tmp_path: Path, model: Path, http_port: int, nats_port: int) -> Served:
    return start_served(tmp_path, model, {"INSIGHT_NATS__PORT": str(nats_port)}, port=http_port)


async def test_restart_after_sigkill_of_serve_keeps_the_data(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    http_port, nats_port = free_port(), free_port()
    first = start(tmp_path, tiny_model_dir, http_port, nats_port)
    try:
        assert http(first, "POST", "/tracks/upsert", TRACK)[1]["text_stored"] is True
        seq = await publish_to_dlq(first, b"kept across a SIGKILL")
        nats_dir = first.data_dir / "nats"
        old_pid = read_pid(nats_dir / PID_FILE)
        assert old_pid is not None and is_our_server(old_pid, nats_dir / "nats-embedded.conf")
    finally:
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
    # PDEATHSIG: the kernel kills the child with its parent
    if not wait_until(lambda: not alive(old_pid), 10):
        os.kill(old_pid, signal.SIGKILL)  # leave nothing behind, then fail
        raise AssertionError("nats-server outlived its parent")

    second = start(tmp_path, tiny_model_dir, http_port, nats_port)
    try:
        assert second.nats_url() == f"nats://127.0.0.1:{nats_port}"
        new_pid = read_pid(nats_dir / PID_FILE)
        assert new_pid is not None and new_pid != old_pid and alive(new_pid)
        status, track = http(second, "GET", "/tracks/orphan-1")
        assert status == 200 and track["metadata"]["name"] == "Survivor"
        assert await read_dlq(second, seq) == b"kept across a SIGKILL"
    finally:
        assert second.stop() < 10
    assert not (nats_dir / PID_FILE).exists()  # a clean stop removes it


async def test_a_leftover_server_of_this_data_dir_is_stopped_at_start(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    http_port, nats_port = free_port(), free_port()
    first = start(tmp_path, tiny_model_dir, http_port, nats_port)
    seq = await publish_to_dlq(first, b"kept across an orphan")
    assert first.stop() < 10
    nats_dir = first.data_dir / "nats"
    conf = nats_dir / "nats-embedded.conf"
    # a server that outlived its parent without PDEATHSIG: no setpriv, or another thread spawned
    # it. Started by a shell that exits at once, so it is nobody's child here.
    out = subprocess.run(  # noqa: ASYNC221 (the shell exits at once)
        ["sh", "-c", f'"{nats_server_binary()}" -c "{conf}" >/dev/null 2>&1 & echo $!'],
        capture_output=True,
        check=True,
        timeout=10,
    )
    orphan = int(out.stdout)
    try:
        (nats_dir / PID_FILE).write_text(f"{orphan}\n")
        assert wait_until(lambda: is_our_server(orphan, conf), 5)
        assert not is_our_server(orphan, tmp_path / "elsewhere" / "nats-embedded.conf")

        second = start(tmp_path, tiny_model_dir, http_port, nats_port)
        try:
            assert f"nats_embedded_orphan_stopped pid={orphan} " in second.log()
            assert not alive(orphan)
            assert read_pid(nats_dir / PID_FILE) not in (None, orphan)
            assert await read_dlq(second, seq) == b"kept across an orphan"
        finally:
            assert second.stop() < 10
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)


def test_a_process_that_is_not_our_server_is_left_alone(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    nats_dir = tmp_path / "data" / "nats"
    nats_dir.mkdir(parents=True)
    decoy = subprocess.Popen(["sleep", "300"])
    try:
        (nats_dir / PID_FILE).write_text(f"{decoy.pid}\n")
        served = start_served(tmp_path, tiny_model_dir)
        try:
            assert alive(decoy.pid) and decoy.poll() is None
            assert "nats_embedded_orphan_stopped" not in served.log()
            assert read_pid(nats_dir / PID_FILE) not in (None, decoy.pid)
        finally:
            assert served.stop() < 10
        assert decoy.poll() is None  # still running after a whole start and stop
    finally:
        decoy.kill()
        decoy.wait()
