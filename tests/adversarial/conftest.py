"""A real `insight serve` child process to attack over loopback, with its RSS and shutdown time.

Every adversarial test runs against the process a user starts (`python -m insight.cli serve`),
never an in-process stack: what matters is what a hostile neighbour can do to that process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from insight.bus.embedded import free_port
from tests.conftest import wait_for_health

SHUTDOWN_BOUND_S = 10.0


@dataclass
class Served:
    """One running `insight serve`: its port, data dir, process and captured log."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def rss_bytes(self) -> int:
        """Resident memory of the serve process (not its nats-server child)."""
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def nats_url(self) -> str:
        """The embedded bus's URL, as the start log gives it."""
        found = re.search(r"nats_embedded_started url=(\S+)", self.log())
        assert found, "no embedded nats-server in the log"
        return found.group(1)

    def bus_credentials(self) -> dict[str, str]:
        """``nats.connect`` keyword arguments for the embedded bus (its generated auth.env)."""
        from insight.bus.auth import read_auth_file

        auth = read_auth_file(self.data_dir / "nats" / "auth.env")
        assert auth is not None, "no generated credentials (user-given ones in the env?)"
        return auth.client_options()

    def stop(self) -> float:
        """SIGTERM, wait for exit; returns the seconds shutdown took (fails past the bound)."""
        if self.proc.poll() is not None:
            return 0.0
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=SHUTDOWN_BOUND_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"shutdown took over {SHUTDOWN_BOUND_S}s\n{self.log()[-4000:]}")
        took = time.monotonic() - start
        assert code == 0, f"exit code {code}\n{self.log()[-4000:]}"
        return took


def call(served: Served, method: str, path: str, body: Any = None) -> Any:
    """One JSON request to the served bridge; the decoded reply (an HTTP error raises)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{served.base}{path}",
        data=data,
        method=method,
        headers={"Accept": "application/json", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)


def start_served(
    tmp_path: Path,
    model_dir: Path | None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Served:
    """Start `insight serve` on ``port`` (a free loopback one by default), wait for health."""
    port = port or free_port()
    data_dir = tmp_path / "data"
    log_path = tmp_path / "serve.log"
    full_env = {
        **os.environ,
        "INSIGHT_STORAGE__DATA_DIR": str(data_dir),
        "INSIGHT_SERVER__HOST": "127.0.0.1",
        "INSIGHT_SERVER__PORT": str(port),
        "INSIGHT_MODEL__PATH": str(model_dir) if model_dir else "",
        "INSIGHT_NATS__URL": "",
        **(env or {}),
    }
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "insight.cli", "serve"],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = Served(proc, port, data_dir, log_path, env or {})
    try:
        wait_for_health(port, timeout=30)
    except BaseException:
        proc.kill()
        raise
    return served


@pytest.fixture
def served(tmp_path: Path, tiny_model_dir: Path) -> Iterator[Served]:
    """`insight serve` with the tiny model; the test must leave it able to stop within 10 s."""
    s = start_served(tmp_path, tiny_model_dir)
    yield s
    s.stop()


def served_with(tmp_path: Path, tiny_model_dir: Path, **env: Any) -> Served:
    """A variant with extra environment (e.g. an API key); the caller stops it."""
    return start_served(tmp_path, tiny_model_dir, {k: str(v) for k, v in env.items()})
