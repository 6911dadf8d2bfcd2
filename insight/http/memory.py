"""Giving freed memory back to the system after large request bodies.

A body is read into blocks that glibc's malloc keeps in its arenas after they are freed (its
mmap threshold grows with the first large frees), so twenty stalled 15 MB bodies stayed in
RSS long after their connections closed. ``malloc_trim(0)`` returns the free pages of every
arena; it runs once, shortly after the last large body of a burst, never on the request path.
Elsewhere than glibc it is a no-op.
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


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        fn = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


_TRIM = _load_trim()


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
