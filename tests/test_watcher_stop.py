"""A stopped (or replaced) scan stops walking the disk: its survey's thread ends at its next
file instead of walking a large share to its end beside the next scan."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from types import FrameType

from conftest import stop_running
from test_watcher import start_stack, watcher_of


def _in_survey(frame: FrameType | None) -> bool:
    while frame is not None:
        code = frame.f_code
        if code.co_name == "survey" and code.co_filename.endswith("scanner.py"):
            return True
        frame = frame.f_back
    return False


def surveying() -> bool:
    """Whether some thread is inside ``scanner.survey`` right now."""
    return any(_in_survey(f) for f in sys._current_frames().values())


async def test_a_stopped_scan_stops_walking(tmp_path: Path, tiny_model_dir: Path) -> None:
    root = tmp_path / "music"
    for d in range(60):  # a walk of ~0.1 s on an idle core, longer on a busy one
        folder = root / f"album {d:03d}"
        folder.mkdir(parents=True)
        for i in range(100):
            (folder / f"{i:03d}.mp3").touch()
    r = await start_stack(tmp_path / "data", tiny_model_dir, folders=[str(root)])
    try:
        w = watcher_of(r)
        w.scan()
        for _ in range(1000):
            if surveying():
                break
            await asyncio.sleep(0.002)
        assert surveying(), "the scan never began walking"
        await w.stop()
        t0 = time.monotonic()
        for _ in range(2500):
            if not surveying():
                break
            await asyncio.sleep(0.002)
        assert time.monotonic() - t0 < 0.05  # it walked on to the end before
        assert w.status().pending == 0 and not w.state.under(str(root))  # nothing queued
    finally:
        await stop_running(r)
