"""Progress of ``insight scan`` on stderr: a tqdm bar on a terminal, plain lines elsewhere.

On a terminal the bar is tqdm's, and log lines are printed above it (``logging_redirect_tqdm``)
instead of breaking into it. When stderr is a pipe or a file (systemd, ``2>scan.log``, a test)
there is no bar and no carriage return: one plain line every ``every_s`` seconds and one at
the end, so the log stays readable.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

BAR_FORMAT = "{l_bar}{bar}| {n_fmt}/{total_fmt} tracks [{elapsed}<{remaining}{postfix}]"


class ScanProgress:
    """``with ScanProgress() as p: p.show(done, total, failed, current_file)``."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._printed = self.started  # plain lines: the first after every_s
        self._last: tuple[int, int, int] = (0, 0, 0)
        self._bar: Any = None
        self._exit = contextlib.ExitStack()

    def __enter__(self) -> ScanProgress:
        if self.tty:
            self._exit.enter_context(logging_redirect_tqdm())
            self._bar = tqdm(
                total=0, unit="track", file=self.stream, dynamic_ncols=True, bar_format=BAR_FORMAT
            )
            self._exit.callback(self._bar.close)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit.close()
        if not self.tty:
            self._line(*self._last)

    def show(self, done: int, total: int, failed: int, current: str | None) -> None:
        self._last = (done, total, failed)
        if self._bar is not None:
            name = Path(current).name[:30] if current else ""
            self._bar.total = total
            self._bar.set_postfix_str(f"({failed} failed) {name}", refresh=False)
            if done > self._bar.n:
                self._bar.update(done - self._bar.n)  # tqdm's smoothed rate and ETA
            else:
                self._bar.refresh()
        elif time.monotonic() - self._printed >= self.every_s:
            self._line(done, total, failed)

    def _line(self, done: int, total: int, failed: int) -> None:
        elapsed = time.monotonic() - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = tqdm.format_interval((total - done) / rate) if rate > 0 else "?"
        self.stream.write(
            f"scan: {done}/{total} tracks ({failed} failed), {rate * 3600:,.0f}/h, "
            f"elapsed {tqdm.format_interval(elapsed)}, ETA {eta}\n"
        )
        self.stream.flush()
        self._printed = time.monotonic()
