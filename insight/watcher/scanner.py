"""Which files are audio, walking a folder, a file's fingerprint and its track id."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from insight.watcher.guard import open_regular

HEAD_TAIL = 64 * 1024


def normalise_extensions(exts: list[str]) -> frozenset[str]:
    return frozenset("." + e.lower().lstrip(".") for e in exts if e.strip())


def is_audio(path: str | Path, exts: frozenset[str]) -> bool:
    name = os.path.basename(str(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in exts


def walk(folder: Path, exts: frozenset[str], recursive: bool = True) -> Iterator[Path]:
    """Audio files under ``folder`` (hidden files and folders skipped), sorted per folder."""
    if not recursive:
        for p in sorted(folder.iterdir()):
            if p.is_file() and is_audio(p, exts):
                yield p
        return
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
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
