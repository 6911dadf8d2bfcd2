"""A hostile library and hostile folders against a real `insight serve`.

A FIFO named ``song.mp3`` used to hang the watcher (and SIGTERM) forever, a symlink to
``/dev/zero`` burned a core forever, and ``watcher.folders.add /etc`` was accepted.
"""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path
from typing import Any

from tests.adversarial.conftest import Served, start_served


def write_wav(path: Path, seconds: float = 3.0, freq: float = 440.0, rate: int = 44100) -> Path:
    """A mono 16-bit tone (stdlib only)."""
    n = int(seconds * rate)
    frames = b"".join(
        struct.pack("<h", int(9000 * math.sin(2 * math.pi * freq * i / rate))) for i in range(n)
    )
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def call(served: Served, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        served.base + path,
        data=data,
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_status(served: Served, done: int, failed: int, within_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, body = call(served, "GET", "/watcher/status")
        if body.get("done") == done and body.get("failed") == failed and not body["pending"]:
            return body
        time.sleep(0.2)
    raise AssertionError(f"watcher never reached done={done} failed={failed}: {body}")


def test_fifo_and_device_symlink_are_skipped_and_shutdown_is_bounded(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    music = tmp_path / "music"
    music.mkdir()
    write_wav(music / "real.wav")
    os.mkfifo(music / "song.mp3")
    os.symlink("/dev/zero", music / "x.flac")
    served = start_served(
        tmp_path,
        tiny_model_dir,
        {
            "INSIGHT_WATCHER__ENABLED": "true",
            "INSIGHT_WATCHER__FOLDERS": json.dumps([str(music)]),
            "INSIGHT_WATCHER__SCAN_INTERVAL_S": "0",
            "INSIGHT_WATCHER__DEBOUNCE_S": "0.2",
        },
    )
    try:
        status = wait_status(served, done=1, failed=2)
        reasons = {Path(f["path"]).name: f["error"] for f in status["recent_failures"]}
        assert reasons == {
            "song.mp3": "skipped: not a regular file: it is a FIFO",
            "x.flac": "skipped: not a regular file: it is a character device",
        }
        # the real file is searchable, with its path hidden from search results by default
        code, found = call(served, "POST", "/tracks/search-text", {"query": "real", "limit": 5})
        assert code == 200, found
        assert [r["metadata"]["name"] for r in found["results"]] == ["real"]
        assert found["results"][0]["metadata"]["file_path"] is None
        # a rescan does not touch the odd files again (their state says why they were skipped)
        assert call(served, "POST", "/watcher/scan")[0] == 200
        status = wait_status(served, done=1, failed=2)
        assert "file_skipped" in served.log()
        # nothing keeps reading /dev/zero: the idle server does not burn a core
        before = cpu_seconds(served.proc.pid)
        time.sleep(2.0)
        assert cpu_seconds(served.proc.pid) - before < 1.0
    finally:
        took = served.stop()
    assert took < 10


def test_system_folders_are_refused_over_the_api(tmp_path: Path, tiny_model_dir: Path) -> None:
    served = start_served(tmp_path, tiny_model_dir)
    try:
        for path, why in [
            ("/", "/ is a system root"),
            ("/etc", "/etc is a system folder (/etc)"),
            ("/proc/self", "is a system folder (/proc)"),
            ("/sys/kernel", "/sys/kernel is a system folder (/sys)"),
            ("/dev/shm", "/dev/shm is a system folder (/dev)"),
            ("/usr/share", "/usr/share is a system folder (/usr)"),
        ]:
            code, body = call(served, "POST", "/watcher/folders", {"path": path})
            assert code == 400, (path, body)
            assert body["error"]["code"] == "FOLDER_REFUSED", body
            assert why in body["error"]["message"], body
        code, body = call(served, "POST", "/watcher/folders", {"path": "/tmp/a\x00b"})
        assert code == 400 and "NUL" in body["error"]["message"], body
        code, body = call(served, "DELETE", "/watcher/folders/tmp%00x")
        assert code == 400 and "NUL" in body["error"]["message"], body
        ok = tmp_path / "music"
        ok.mkdir()
        code, body = call(served, "POST", "/watcher/folders", {"path": str(ok)})
        assert (code, body["path"]) == (200, str(ok.resolve()))
        _, listed = call(served, "GET", "/watcher/folders")
        assert [f["path"] for f in listed["folders"]] == [str(ok.resolve())]
    finally:
        assert served.stop() < 10


def test_system_folder_in_config_stops_the_start(tmp_path: Path, tiny_model_dir: Path) -> None:
    env = {
        **os.environ,
        "INSIGHT_STORAGE__DATA_DIR": str(tmp_path / "data"),
        "INSIGHT_SERVER__HOST": "127.0.0.1",
        "INSIGHT_SERVER__PORT": "0",
        "INSIGHT_MODEL__PATH": str(tiny_model_dir),
        "INSIGHT_NATS__URL": "",
        "INSIGHT_WATCHER__FOLDERS": '["/etc"]',
    }
    done = subprocess.run(
        [sys.executable, "-m", "insight.cli", "serve"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    err = done.stderr.decode()
    assert done.returncode != 0
    assert "INSIGHT_WATCHER__FOLDERS" in err, err
    assert "watch folder /etc is refused: /etc is a system folder (/etc)" in err, err
