"""Track metadata from file tags (mutagen), with container metadata and file name fallbacks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insight.watcher.guard import open_regular

log = logging.getLogger("insight.watcher.tags")


@dataclass
class TrackTags:
    name: str
    artists: list[str] = field(default_factory=list)
    album: str | None = None
    genres: list[str] = field(default_factory=list)
    musicbrainz_track_id: str | None = None
    has_tags: bool = False


def split_values(values: list[str]) -> list[str]:
    """The original sidecar's rule: split on ';' if present, else on ' / '; trim; dedupe."""
    out: list[str] = []
    for raw in values:
        text = str(raw)
        parts = text.split(";") if ";" in text else text.split(" / ") if " / " in text else [text]
        for p in parts:
            p = p.strip().strip("\x00")
            if p and p not in out:
                out.append(p)
    return out


def _easy(path: Path) -> dict[str, list[str]]:
    import mutagen

    try:
        with open_regular(path) as fh:  # never a FIFO or a device (see guard)
            f = mutagen.File(fh, easy=True)  # type: ignore[attr-defined]
    except Exception as exc:  # mutagen raises many kinds on odd files
        log.debug("tags_unreadable path=%s error=%s", path, exc)
        return {}
    if f is None or f.tags is None:
        return {}
    out: dict[str, list[str]] = {}
    try:
        for key in f.tags.keys():  # noqa: SIM118 (iterating Vorbis comments gives pairs)
            value = f.tags[key]
            items = value if isinstance(value, list) else [value]
            out[str(key).lower()] = [str(v) for v in items]
    except Exception as exc:
        log.debug("tags_unreadable path=%s error=%s", path, exc)
    return out


def read_tags(path: Path, container: dict[str, Any] | None = None) -> TrackTags:
    """Tags of ``path``; ``container`` is PyAV's ``container.metadata`` (for WAV INFO etc.)."""
    tags = _easy(path)
    for key, value in (container or {}).items():
        tags.setdefault(str(key).lower(), [str(value)])

    def first(*keys: str) -> str | None:
        for k in keys:
            for v in tags.get(k, []):
                if str(v).strip():
                    return str(v).strip()
        return None

    artists = split_values(
        tags.get("artist", []) or tags.get("albumartist", []) or tags.get("album_artist", [])
    )
    title = first("title")
    mbid = first("musicbrainz_trackid", "musicbrainz_recordingid", "musicbrainz track id")
    return TrackTags(
        name=title or path.stem,
        artists=artists,
        album=first("album"),
        genres=split_values(tags.get("genre", [])),
        musicbrainz_track_id=mbid.lower() if mbid else None,
        has_tags=bool(title or artists),
    )
