"""What the watcher may open: regular files only, within a size budget, and a decode budget.

A FIFO named ``song.mp3`` blocks ``open()`` until a writer comes (forever); a symlink to
``/dev/zero`` never ends. So a file is checked with ``stat`` (which follows symlinks, so a link
to a device counts as the device), and every open goes through ``open_regular``: ``O_NONBLOCK``
(a FIFO opens at once instead of waiting) and ``fstat`` on the opened descriptor, so a file
swapped for a FIFO or a device between the check and the open is refused too.

``Budget`` bounds the decoding of one file: a wall-clock limit and a stop flag the service sets
at shutdown; the decode loop calls ``check()`` per packet.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

MB = 1024 * 1024

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
    stat.S_IFLNK: "a symlink",
}


class Refused(Exception):
    """The file is not one the watcher analyses; the message says why."""


class OverBudget(Exception):
    """Decoding the file took longer than its time budget."""


class Interrupted(Exception):
    """Decoding stopped because the watcher is shutting down (not the file's fault)."""


def kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_regular(st: os.stat_result, max_bytes: int | None) -> None:
    """``Refused`` unless ``st`` is a regular file within ``max_bytes``."""
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"not a regular file: it is {kind_of(st.st_mode)}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise Refused(
            f"larger than the size budget: {st.st_size / MB:.1f} MB > {max_bytes / MB:.1f} MB "
            "(INSIGHT_WATCHER__MAX_FILE_MB)"
        )


def regular_stat(path: Path, max_bytes: int | None = None) -> os.stat_result:
    """``stat`` (following symlinks) of a regular file within budget; ``Refused`` otherwise."""
    st = os.stat(path)
    check_regular(st, max_bytes)
    return st


def open_regular(path: Path, max_bytes: int | None = None) -> BinaryIO:
    """Open ``path`` for reading without ever blocking on a FIFO; ``Refused`` unless the opened
    file is regular (checked on the descriptor, so no race with a swapped path)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        check_regular(os.fstat(fd), max_bytes)
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    fh.raw.name = str(path)  # type: ignore[attr-defined]  # decoders guess the format by it
    return fh


@dataclass
class Budget:
    """Time budget of one file's decode, and the service's stop flag."""

    seconds: float | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        if self.stop.is_set():
            raise Interrupted("the watcher is stopping")
        if self.seconds is not None and time.monotonic() - self.started > self.seconds:
            raise OverBudget(
                f"decoding took over {self.seconds:g} s (INSIGHT_WATCHER__MAX_DECODE_S)"
            )
