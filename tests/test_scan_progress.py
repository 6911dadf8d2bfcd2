"""``insight scan``'s progress: tqdm's bar on a terminal with log lines above it, plain lines
elsewhere (see insight/watcher/progress.py)."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest

from insight.watcher.progress import ScanProgress


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr does in an interactive shell."""

    def isatty(self) -> bool:
        return True


def screen_lines(text: str) -> list[str]:
    """What stays readable: the pieces between carriage returns and newlines."""
    return [p.strip() for p in re.split(r"[\r\n]", text) if p.strip()]


def test_bar_on_a_terminal_keeps_log_lines_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    handler = logging.StreamHandler(sys.stderr)  # as insight.logs.setup_logging does
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [handler])
    monkeypatch.setattr(root, "level", logging.INFO)
    log = logging.getLogger("insight.watcher")
    with ScanProgress() as p:
        p.show(1, 4, 0, "/music/a/one.flac")
        log.warning("file_failed path=/music/a/two.flac error=boom")
        p.show(4, 4, 1, "/music/a/four.flac")
    lines = screen_lines(term.getvalue())
    assert "file_failed path=/music/a/two.flac error=boom" in lines  # a line of its own
    bars = [ln for ln in lines if "tracks [" in ln]
    assert bars and bars[-1].startswith("100%") and "4/4 tracks" in bars[-1]
    assert "(1 failed) four.flac" in bars[-1]
    assert root.handlers == [handler]  # the redirect is undone after the scan


def test_plain_lines_when_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    clock = iter([0.0, 1.0, 11.0, 11.0, 11.0, 12.0, 30.0, 30.0])
    monkeypatch.setattr("insight.watcher.progress.time.monotonic", lambda: next(clock))
    with ScanProgress(out, every_s=10.0) as p:
        p.show(1, 10, 0, "a.flac")  # t=1: too soon for a line
        p.show(5, 10, 1, "b.flac")  # t=11: a line (5 tracks in 11 s)
        p.show(6, 10, 1, "c.flac")  # t=12: too soon again
    text = out.getvalue()
    assert "\r" not in text
    assert text.splitlines() == [
        "scan: 5/10 tracks (1 failed), 1,636/h, elapsed 00:11, ETA 00:11",
        "scan: 6/10 tracks (1 failed), 720/h, elapsed 00:30, ETA 00:20",
    ]
