"""nats-server's own log, read from its pipe and forwarded to ours without flooding it.

A pipe nobody reads fills at 64 KiB and then blocks the server's logging, and with it every
connection that logs (1 500 bad connections do it in under a second). A thread reads the pipe
to the end; lines go to the ``insight.nats`` logger, at most ``burst`` warnings per window,
the rest counted and summarised, so a hostile client cannot flood our log either.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from typing import IO

log = logging.getLogger("insight.nats")

# "[1234] 2026/11/30 00:29:54.901905 [INF] message"
LINE = re.compile(r"^\[\d+\] \S+ \S+ \[([A-Z]{3})\] (.*)$")
LEVELS = {
    "TRC": logging.DEBUG,
    "DBG": logging.DEBUG,
    "INF": logging.DEBUG,  # its start banner and routine notes
    "WRN": logging.WARNING,
    "ERR": logging.WARNING,  # mostly a client's fault: auth errors, parser errors
    "FTL": logging.ERROR,
}
MAX_LINE = 500
READY = "Server is ready"
# Expected with our 0600 config files: the client side keeps the password in clear anyway.
QUIET = ("Plaintext passwords detected",)


def parse(raw: bytes) -> tuple[int, str]:
    """The level and the printable message of one line of nats-server's log."""
    text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
    text = "".join(c if c.isprintable() else "?" for c in text)[:MAX_LINE]
    m = LINE.match(text)
    if m is None:
        return logging.INFO, text
    message = m.group(2)
    if message.startswith(QUIET):
        return logging.DEBUG, message
    return LEVELS.get(m.group(1), logging.INFO), message


class ServerLogDrain:
    """Reads ``stream`` to its end in a daemon thread and logs each line, rate-limited."""

    def __init__(self, stream: IO[bytes], burst: int = 20, window_s: float = 10.0) -> None:
        self.stream = stream
        self.burst, self.window_s = burst, window_s
        self.tail: deque[str] = deque(maxlen=20)  # for the error of a failed start
        self.ready = threading.Event()  # set when the server says it listens
        self.lines = 0
        self.suppressed = 0  # in the current window
        self.suppressed_total = 0
        self._window_start = time.monotonic()
        self._in_window = 0
        self._thread = threading.Thread(target=self._run, name="nats-server-log", daemon=True)

    def start(self) -> ServerLogDrain:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            for raw in iter(self.stream.readline, b""):
                self.lines += 1
                level, message = parse(raw)
                self.tail.append(message)
                if message == READY:
                    self.ready.set()
                self._forward(level, message)
        except (OSError, ValueError):  # the pipe closed under us at shutdown
            pass
        finally:
            self._summarise()

    def _forward(self, level: int, message: str) -> None:
        if level != logging.WARNING:  # debug notes are cheap, a fatal error always shows
            log.log(level, "nats_server %s", message)
            return
        now = time.monotonic()
        if now - self._window_start >= self.window_s:
            self._summarise()
            self._window_start, self._in_window = now, 0
        self._in_window += 1
        if self._in_window <= self.burst:
            log.log(level, "nats_server %s", message)
        else:
            self.suppressed += 1
            self.suppressed_total += 1

    def _summarise(self) -> None:
        if self.suppressed:
            log.warning(
                "nats_server_log_suppressed lines=%d window_s=%g (more than %d warnings)",
                self.suppressed,
                self.window_s,
                self.burst,
            )
            self.suppressed = 0
