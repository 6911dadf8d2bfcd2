"""Cutting a stream of samples (at the model rate) into windows as it arrives.

Gives exactly the windows ``split_windows`` gives for the whole audio at once (same starts,
same repeat-padded tail), while holding at most one window plus one chunk in memory.
"""

from __future__ import annotations

import numpy as np

from insight.inference.audio import repeat_pad


class WindowCutter:
    def __init__(self, window: int, hop: int, padding: str = "repeatpad") -> None:
        self.window, self.hop, self.padding = window, hop, padding
        self.buf = np.zeros(0, dtype=np.float32)
        self.total = 0  # samples seen
        self.emitted = 0  # full windows cut so far
        self._skip = 0  # samples still to drop when hop > window

    def push(self, x: np.ndarray) -> np.ndarray:
        """Add samples; return the full windows they complete, ``[k, window]``."""
        self.total += x.shape[0]
        if self._skip:
            drop = min(self._skip, x.shape[0])
            x, self._skip = x[drop:], self._skip - drop
        self.buf = np.concatenate([self.buf, x]) if self.buf.size else x.astype(np.float32)
        out = []
        while self.buf.shape[0] >= self.window:
            out.append(self.buf[: self.window].copy())
            self.emitted += 1
            if self.hop <= self.buf.shape[0]:
                self.buf = self.buf[self.hop :]
            else:
                self._skip = self.hop - self.buf.shape[0]
                self.buf = np.zeros(0, dtype=np.float32)
        return np.stack(out) if out else np.zeros((0, self.window), dtype=np.float32)

    def tail(self) -> np.ndarray | None:
        """The last, repeat-padded window once the stream has ended (None if there is none)."""
        if self.emitted == 0:
            return repeat_pad(self.buf, self.window, self.padding) if self.buf.size else None
        last_end_gap = self.buf.shape[0] + self.hop - self.window - self._skip
        if self.buf.size and last_end_gap > 0:
            return repeat_pad(self.buf, self.window, self.padding)
        return None
