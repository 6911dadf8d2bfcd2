"""Live file-system changes (live.py's debounced batches) applied to the watcher.

A move keeps its track's id and vectors; a new or changed file is queued; a deletion is
checked by a survey of its folder (scanner.py) instead of being believed: a file moved into a
folder made a moment before (what beets or Picard do when they sort a library) reaches us as
a deletion, its new folder not watched yet, and the survey finds it again by its content.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from insight.watcher.files import Job
from insight.watcher.live import Change
from insight.watcher.scanner import is_audio, path_is_dir, path_is_file, walk

if TYPE_CHECKING:
    from insight.schemas import WatchedFolder
    from insight.watcher.files import FileWork
    from insight.watcher.state import WatcherState

ORDER = {"moved": 0, "changed": 1, "deleted": 2}


class WatcherService(Protocol):
    """What the changes need of the watcher service (insight/watcher/service.py)."""

    exts: frozenset[str]
    folders: dict[str, WatchedFolder]
    state: WatcherState
    files: FileWork

    def folder_of(self, path: Path) -> Path | None: ...

    def enqueue(self, job: Job) -> int: ...

    async def resurvey(self, folders: list[WatchedFolder]) -> None: ...


async def apply_changes(svc: WatcherService, changes: list[Change]) -> None:
    surveyed: set[str] = set()  # watched folders with a deletion
    for c in sorted(changes, key=lambda c: ORDER[c.kind]):
        if c.kind == "moved" and c.dest is not None:
            await apply_move(svc, Path(c.path), Path(c.dest), c.is_dir)
        elif c.kind == "changed":
            p = Path(c.path)
            folder = svc.folder_of(p)
            if folder is not None and is_audio(p, svc.exts) and path_is_file(p):
                svc.enqueue(Job(p, folder))
        elif c.kind == "deleted" and known(svc, c.path):
            surveyed.add(str(svc.folder_of(Path(c.path))))
    folders = [svc.folders[f] for f in sorted(surveyed) if f in svc.folders]
    if folders:
        await svc.resurvey(folders)


def known(svc: WatcherService, path: str) -> bool:
    """A path the watcher has rows for (a temp file, a cover image: no survey)."""
    return svc.folder_of(Path(path)) is not None and bool(
        svc.state.get(path) or svc.state.under(path)
    )


async def apply_move(svc: WatcherService, src: Path, dest: Path, is_dir: bool) -> None:
    rows = svc.state.under(str(src)) if is_dir else [r for r in [svc.state.get(str(src))] if r]
    if is_dir and not rows and path_is_dir(dest):
        for p in walk(dest, svc.exts):
            if (folder := svc.folder_of(p)) is not None:
                svc.enqueue(Job(p, folder))
    for row in rows:
        new = dest / Path(row.path).relative_to(src) if is_dir else dest
        folder = svc.folder_of(new)
        if folder is None or not is_audio(new, svc.exts):
            await svc.files.forget(row)
            continue
        with contextlib.suppress(OSError):
            await svc.files.apply_move(row.path, str(new), folder, new.stat().st_mtime_ns)
    if (
        not is_dir
        and not rows
        and (folder := svc.folder_of(dest)) is not None
        and is_audio(dest, svc.exts)
    ):
        svc.enqueue(Job(dest, folder))
