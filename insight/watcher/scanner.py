"""Which files are audio, walking a folder, a file's fingerprint and its track id."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

from insight.watcher.guard import Interrupted, Refused, open_regular
from insight.watcher.roots import pseudo_mount_points
from insight.watcher.state import DONE, PENDING, FileRow, WatcherState

HEAD_TAIL = 64 * 1024


# One stat each, called from the event loop on purpose (cheap; kept out of async bodies for
# ruff's ASYNC240): the watcher and its file work share these.
def path_exists(path: str | Path) -> bool:
    return os.path.exists(path)


def path_is_file(path: Path) -> bool:
    return path.is_file()


def path_is_dir(path: Path) -> bool:
    return path.is_dir()


def normalise_extensions(exts: list[str]) -> frozenset[str]:
    return frozenset("." + e.lower().lstrip(".") for e in exts if e.strip())


def is_audio(path: str | Path, exts: frozenset[str]) -> bool:
    name = os.path.basename(str(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in exts


def walk(
    folder: Path, exts: frozenset[str], recursive: bool = True, skip: frozenset[str] | None = None
) -> Iterator[Path]:
    """Audio files under ``folder`` (hidden files and folders skipped), sorted per folder.

    Sub-folders in ``skip`` (default: mount points of pseudo filesystems, e.g. a bind mount of
    ``/proc`` inside the library) are not entered."""
    if skip is None:
        skip = pseudo_mount_points()
    if not recursive:
        for p in sorted(folder.iterdir()):
            if not p.is_dir() and is_audio(p, exts):  # odd files too: the worker says why
                yield p
        return
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and os.path.join(root, d) not in skip
        )
        for name in sorted(files):
            if is_audio(name, exts):
                yield Path(root) / name


def fingerprint(path: Path, size: int) -> str:
    """sha1 of the size, the first and the last 64 KiB: recognises a file after a move."""
    h = hashlib.sha1(str(size).encode())
    with open_regular(path) as f:  # Refused for a FIFO or device: never blocks
        h.update(f.read(HEAD_TAIL))
        if size > 2 * HEAD_TAIL:
            f.seek(-HEAD_TAIL, os.SEEK_END)
            h.update(f.read(HEAD_TAIL))
    return h.hexdigest()


def path_track_id(folder: Path, path: Path) -> str:
    """``file:`` + sha256 of the path relative to the watched folder (posix), 32 hex digits.

    Relative, so the id survives mounting the library somewhere else.
    """
    try:
        rel = path.relative_to(folder).as_posix()
    except ValueError:
        rel = path.as_posix()
    return "file:" + hashlib.sha256(rel.encode()).hexdigest()[:32]


def track_id_for(folder: Path, path: Path, musicbrainz_id: str | None) -> str:
    return f"mb:{musicbrainz_id}" if musicbrainz_id else path_track_id(folder, path)


def survey(
    state: WatcherState,
    root: Path,
    exts: frozenset[str],
    recursive: bool,
    force: bool,
    stop: threading.Event | None = None,
) -> tuple[list[Path], list[tuple[str, str, int]], list[FileRow]]:
    """Compare ``root`` with what ``state`` knows: (files to analyse, moves (old, new, mtime),
    rows whose file is gone). Blocking: run it in a thread; ``stop`` ends it (``Interrupted``)."""
    known = {r.path: r for r in state.under(str(root))}
    seen: set[str] = set()
    new: list[tuple[Path, os.stat_result]] = []
    todo: list[Path] = []
    for p in walk(root, exts, recursive):
        if stop is not None and stop.is_set():
            raise Interrupted("the watcher is stopping")
        key = str(p)
        seen.add(key)
        try:
            st = p.stat()
        except OSError:
            continue
        row = known.get(key)
        if row is None and not stat.S_ISREG(st.st_mode):
            todo.append(p)  # a FIFO or device: never opened here, the worker records why
        elif row is None:
            new.append((p, st))
        elif (
            force
            or row.status == PENDING
            or (row.size, row.mtime_ns) != (st.st_size, st.st_mtime_ns)
        ):
            todo.append(p)
    missing = {k: r for k, r in known.items() if k not in seen and r.status == DONE}
    by_fp = {(r.size, r.content_hash): r for r in missing.values() if r.content_hash}
    moves: list[tuple[str, str, int]] = []
    sizes = {size for size, _ in by_fp}  # only a file of a missing file's size can be it
    for p, st in new:
        old = None
        if st.st_size in sizes and not force:
            with contextlib.suppress(OSError, Refused):  # swapped for a FIFO: not opened
                old = by_fp.pop((st.st_size, fingerprint(p, st.st_size)), None)
        if old is not None:
            moves.append((old.path, str(p), st.st_mtime_ns))
            missing.pop(old.path, None)
        else:
            todo.append(p)
    moved = {m[0] for m in moves}
    gone = [r for k, r in known.items() if k not in seen and k not in moved]
    return todo, moves, gone
