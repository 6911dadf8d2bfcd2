"""Background work that yields: the watcher's threads run at low CPU and IO priority.

A scan in ``insight serve`` shares the box with music playback and with interactive requests,
so its decode and analysis threads lower their own priority when they start:

* CPU: ``setpriority(PRIO_PROCESS, <thread id>, nice)`` — on Linux the nice value belongs to the
  thread, and threads a decoder starts inherit it. Lowering is allowed to any user; raising it
  back is not, so only these dedicated threads are lowered, never a shared pool's.
* IO: ``ioprio_set`` (no Python binding: the raw syscall through ctypes) to the best-effort
  class at its lowest level 7. Not the idle class: under a busy disk idle-class IO can wait
  indefinitely, and a scan that never ends is worse than a slower one. Schedulers that ignore IO
  classes (``none``, ``mq-deadline``) make this a no-op, which is harmless.

Elsewhere (non-Linux, or a sandbox refusing the call) a failure is logged once and the
thread runs at normal priority. ``insight scan`` in the foreground does not use this.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("insight.watcher")

IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASS_BE = 2
IOPRIO_WHO_PROCESS = 1  # with a thread id: that thread only
_SYS_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "arm64": 30, "i686": 289, "armv7l": 314}
_warned = False
# Each file in flight holds its decoded audio (46 MB for 4 minutes, at most
# INSIGHT_WATCHER__MAX_AUDIO_S): a many-core box does not get one per core past this.
MAX_FILES_IN_FLIGHT = 16


def cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def default_threads(n_cores: int | None = None) -> int:
    """A quarter of the cores (at least one), as Music Assistant caps its own analysers."""
    return max(1, (n_cores or cores()) // 4)


def decode_processes(
    processes: int | None, threads: int, background: bool, n_cores: int | None = None
) -> int:
    """Processes that decode files (0: threads do): ``processes`` when configured; else in the
    background as many as its threads, in the foreground one per core up to
    ``MAX_FILES_IN_FLIGHT`` (each decodes one file at a time)."""
    if processes is not None:
        return processes
    if background:
        return threads or default_threads(n_cores)
    return min(MAX_FILES_IN_FLIGHT, n_cores or cores())


def _ioprio_lowest() -> None:
    nr = _SYS_IOPRIO_SET.get(platform.machine())
    if nr is None:
        raise OSError(f"ioprio_set: unknown syscall number on {platform.machine()}")
    libc = ctypes.CDLL(None, use_errno=True)
    prio = (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | 7
    if libc.syscall(nr, IOPRIO_WHO_PROCESS, threading.get_native_id(), prio) != 0:
        raise OSError(ctypes.get_errno(), "ioprio_set failed")


def lower_this_thread(nice: int) -> None:
    """Lower the calling thread's CPU priority to ``nice`` (if higher) and its IO priority."""
    global _warned
    try:
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        if platform.system() == "Linux":
            _ioprio_lowest()
    except (OSError, AttributeError) as exc:
        if not _warned:
            _warned = True
            log.warning("watcher_priority_unchanged error=%s", exc)


def polite_executor(threads: int, nice: int, name: str = "insight-watch") -> ThreadPoolExecutor:
    """``threads`` worker threads that each lower their own priority when they start."""
    return ThreadPoolExecutor(
        max_workers=threads,
        thread_name_prefix=name,
        initializer=lower_this_thread,
        initargs=(nice,),
    )


def watcher_executor(threads: int, nice: int, background: bool) -> ThreadPoolExecutor:
    """The watcher's threads: ``threads`` (0: a quarter of the cores) at ``nice`` in the
    background; in the foreground (``insight scan``) ``threads`` or every core, normal priority."""
    if background:
        return polite_executor(threads or default_threads(), nice)
    return ThreadPoolExecutor(max_workers=threads or cores(), thread_name_prefix="insight-scan")
