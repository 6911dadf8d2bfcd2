"""The embedded nats-server a SIGKILLed ``insight serve`` left behind, found and stopped.

``EmbeddedNats`` records its child's pid in ``<data dir>/nats/nats-server.pid``. When the parent
dies without stopping it (OOM killer, ``kill -9``), the server keeps its port and JetStream store
and the next start would fail. Before starting, we stop that leftover, but only when
``/proc/<pid>`` proves it is our nats-server with this data dir's config: the pid may have been
reused by any other process, which is never signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

log = logging.getLogger("insight.bus.embedded")

PID_FILE = "nats-server.pid"
TERM_WAIT_S = 5.0
KILL_WAIT_S = 2.0


def _gone(pid: int) -> bool:
    """No such process any more, or only a zombie waiting for its reaper."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def is_our_server(pid: int, conf: Path) -> bool:
    """Whether ``pid`` runs a ``nats-server -c <conf>`` of our user (argv and executable)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        exe = os.readlink(f"/proc/{pid}/exe")
        uid = Path(f"/proc/{pid}").stat().st_uid
    except OSError:
        return False
    if argv and argv[-1] == b"":
        argv = argv[:-1]
    if uid != os.getuid() or not Path(exe).name.startswith("nats-server"):
        return False
    return (
        len(argv) == 3
        and Path(os.fsdecode(argv[0])).name == "nats-server"
        and argv[1:] == [b"-c", os.fsencode(str(conf))]
    )


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdecimal() and int(text) > 1 else None


def stop_orphan(pid_file: Path, conf: Path) -> int | None:
    """Stop the recorded server if it is still ours (TERM, then KILL); returns its pid if stopped.

    A pid that is not our nats-server is left alone, and so is the stale file's content: the
    caller overwrites it when its own server has started.
    """
    pid = read_pid(pid_file)
    if pid is None or pid == os.getpid() or _gone(pid) or not is_our_server(pid, conf):
        return None
    try:
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, TERM_WAIT_S):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, KILL_WAIT_S)
    except ProcessLookupError:
        pass
    if not _gone(pid):
        raise RuntimeError(f"the previous nats-server of this data dir (pid {pid}) did not stop")
    log.warning("nats_embedded_orphan_stopped pid=%d conf=%s", pid, conf)
    return pid
