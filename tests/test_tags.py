"""File tags read by mutagen for every container the watcher reads, multi-valued fields too,
without PyAV's container metadata (which joins or drops repeated Vorbis comments)."""

from __future__ import annotations

import logging
from pathlib import Path

import mutagen
import pytest

from insight.watcher.tags import read_tags
from tests.audio_files import write_track

MBID = "0f2a3e91-4b0c-4d7e-9a53-6c1b2d3e4f50"


@pytest.mark.parametrize("ext", [".flac", ".ogg", ".mp3", ".m4a"])
def test_tags_come_from_the_file_itself(
    tmp_path: Path, ext: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_track(tmp_path / f"x{ext}", seconds=1.0)
    f = mutagen.File(path, easy=True)  # type: ignore[attr-defined]
    if f.tags is None:
        f.add_tags()
    f.tags["title"] = "Night Drive"
    f.tags["artist"] = ["Ada Lovelace", "Grace Hopper"]  # two values, not one joined string
    f.tags["album"] = "Engines"
    f.tags["genre"] = ["Synthwave", "Ambient"]
    f.tags["musicbrainz_trackid"] = MBID.upper()
    f.save()
    with caplog.at_level(logging.DEBUG, logger="insight.watcher.tags"):
        tags = read_tags(path)  # no container metadata: only what mutagen reads
    assert not [r for r in caplog.records if "tags_unreadable" in r.getMessage()]
    assert tags.name == "Night Drive" and tags.album == "Engines" and tags.has_tags
    assert tags.artists == ["Ada Lovelace", "Grace Hopper"]
    assert tags.genres == ["Synthwave", "Ambient"]
    assert tags.musicbrainz_track_id == MBID
