"""Giving freed memory back to the system after large request bodies.

glibc's malloc serves a block of more than 128 KiB with its own mapping, returned on free, but
raises that threshold up to 32 MiB as such blocks are freed: from then on request bodies,
PCM and windows come from arenas that keep the pages, so twenty stalled 15 MB bodies stayed
in RSS long after their connections closed. ``keep_mmap_threshold()`` pins the threshold at
its initial 128 KiB (large blocks stay separate mappings, given back on free), and
``MemoryReturner`` runs ``malloc_trim(0)`` shortly after large requests, which returns the
free pages left in every arena. Elsewhere than glibc both are no-ops.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger("insight.http")

LARGE_BODY = 64 * 1024  # bodies from this size on schedule a trim
TRIM_DELAY_S = 1.0


M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD = 128 * 1024


def _libc(symbol: str, *argtypes: type) -> Callable[..., int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = getattr(ctypes.CDLL(name), symbol)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_TRIM = _libc("malloc_trim", ctypes.c_size_t)
_MALLOPT = _libc("mallopt", ctypes.c_int, ctypes.c_int)


def keep_mmap_threshold() -> bool:
    """Pin glibc's mmap threshold (process-wide); True when it was set."""
    return _MALLOPT is not None and _MALLOPT(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1


class MemoryReturner:
    """Debounced ``malloc_trim``: call ``large_body_done()`` after each large body is gone."""

    def __init__(self, delay_s: float = TRIM_DELAY_S) -> None:
        self.delay_s = delay_s
        self._handle: asyncio.TimerHandle | None = None
        self.trims = 0

    def large_body_done(self) -> None:
        """Trim ``delay_s`` from now unless a trim is already due (at most one per delay)."""
        if _TRIM is not None and self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.delay_s, self._trim)

    def _trim(self) -> None:
        self._handle = None
        if _TRIM is not None:
            # ctypes drops the GIL: the trim (milliseconds on a large heap) runs beside the loop
            asyncio.get_running_loop().run_in_executor(None, _TRIM, 0)
            self.trims += 1

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
