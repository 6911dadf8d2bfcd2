"""Moves the live watcher cannot see as moves: a file moved into a folder made a moment
before reaches it as a deletion (its new folder not watched yet), and the survey of the
folder that every deletion of a known file gets finds it again by its content."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import pytest_asyncio
from conftest import Running, stop_running
from test_watcher import make_library, start_stack, watcher_of

from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT
from insight.watcher.changes import apply_changes
from insight.watcher.live import Change


@pytest_asyncio.fixture
async def scanned(tmp_path: Path, tiny_model_dir: Path) -> AsyncIterator[tuple[Running, Path]]:
    """A library scanned once, live watching off: only the changes a test applies happen."""
    root = tmp_path / "music"
    make_library(root)
    r = await start_stack(tmp_path / "data", tiny_model_dir, folders=[str(root)])
    w = watcher_of(r)
    w.scan()
    await w.wait_idle(60)
    yield r, root
    await stop_running(r)


async def vectors(r: Running, track_id: str) -> list[Any]:
    return list(await r.app.store.get(TRACKS_AUDIO, [track_id], with_vectors=True))


async def test_a_move_that_reads_as_a_deletion_keeps_its_track(
    scanned: tuple[Running, Path],
) -> None:
    r, root = scanned
    w = watcher_of(r)
    analyzed = w.outcomes["analyzed"]
    src, dest = root / "No Tags Here.flac", root / "Sorted" / "No Tags Here.flac"
    track_id = w.state.get(str(src)).track_id  # type: ignore[union-attr]
    (before,) = await vectors(r, track_id)
    dest.parent.mkdir()
    src.rename(dest)
    await apply_changes(w, [Change("deleted", str(src))])  # no event for the new path
    (after,) = await vectors(r, track_id)
    assert after.payload["file_path"] == str(dest)
    assert np.array_equal(after.vector, before.vector)
    (text,) = await r.app.store.get(TRACKS_TEXT, [track_id])
    assert text.payload["file_path"] == str(dest)
    assert w.state.get(str(src)) is None
    assert w.state.get(str(dest)).track_id == track_id  # type: ignore[union-attr]
    await w.wait_idle(30)
    assert w.outcomes["analyzed"] == analyzed  # moved, not analysed again


async def test_a_real_deletion_is_still_a_deletion(scanned: tuple[Running, Path]) -> None:
    r, root = scanned
    w = watcher_of(r)
    src = root / "No Tags Here.flac"
    track_id = w.state.get(str(src)).track_id  # type: ignore[union-attr]
    src.unlink()
    await apply_changes(w, [Change("deleted", str(src))])
    assert await vectors(r, track_id) == []
    assert not await r.app.store.get(TRACKS_TEXT, [track_id])
    assert w.state.get(str(src)) is None


async def test_unknown_deletions_cost_no_survey(
    scanned: tuple[Running, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """A temp file or a cover image was never a track: its deletion surveys nothing."""
    r, root = scanned
    w = watcher_of(r)

    def surveys() -> int:  # each survey of a folder ends with this line
        return sum("scan_queued" in rec.getMessage() for rec in caplog.records)

    with caplog.at_level(logging.INFO, logger="insight.watcher"):
        (root / "cover.jpg").write_bytes(b"x")
        (root / "cover.jpg").unlink()
        await apply_changes(w, [Change("deleted", str(root / "cover.jpg"))])
        await apply_changes(w, [Change("deleted", "/elsewhere/track.mp3")])
        assert surveys() == 0
        (root / "No Tags Here.flac").unlink()
        await apply_changes(w, [Change("deleted", str(root / "No Tags Here.flac"))])
        assert surveys() == 1


async def test_a_survey_and_a_worker_never_apply_one_move_twice(
    scanned: tuple[Running, Path],
) -> None:
    """The new path queued (a created event) and the old one deleted, in one batch: the
    worker and the survey both pair the file with its row; it moves once, keeps its id."""
    r, root = scanned
    w = watcher_of(r)
    analyzed = w.outcomes["analyzed"]
    src, dest = root / "No Tags Here.flac", root / "Sorted" / "No Tags Here.flac"
    track_id = w.state.get(str(src)).track_id  # type: ignore[union-attr]
    dest.parent.mkdir()
    src.rename(dest)
    await apply_changes(w, [Change("changed", str(dest)), Change("deleted", str(src))])
    await w.wait_idle(30)
    await asyncio.sleep(0.2)
    row = w.state.get(str(dest))
    assert row is not None and row.track_id == track_id
    assert w.outcomes["analyzed"] == analyzed
    (after,) = await vectors(r, track_id)
    assert after.payload["file_path"] == str(dest)
    assert len(w.state.by_track(track_id)) == 1


async def test_a_queued_file_moved_before_its_turn_keeps_its_track(
    scanned: tuple[Running, Path],
) -> None:
    """A file queued again (touched), then moved into a new folder before a worker took it:
    the worker finds nothing at the old path and leaves the deletion to the survey, which
    finds the file again; deleting the track there made it a new track with a new id."""
    r, root = scanned
    w = watcher_of(r)
    analyzed = w.outcomes["analyzed"]
    src, dest = root / "No Tags Here.flac", root / "Sorted" / "No Tags Here.flac"
    track_id = w.state.get(str(src)).track_id  # type: ignore[union-attr]
    w.pause()
    os.utime(src)  # same content, new mtime: queued again
    await apply_changes(w, [Change("changed", str(src))])
    dest.parent.mkdir()
    src.rename(dest)
    w.resume()
    await w.wait_idle(30)  # the worker met no file at the old path
    assert w.state.get(str(src)) is not None  # not deleted by the worker
    await apply_changes(w, [Change("deleted", str(src))])
    await w.wait_idle(30)
    row = w.state.get(str(dest))
    assert row is not None and row.track_id == track_id
    (after,) = await vectors(r, track_id)
    assert after.payload["file_path"] == str(dest)
    assert w.outcomes["analyzed"] == analyzed
