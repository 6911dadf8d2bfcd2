"""Music Assistant library events."""

from __future__ import annotations

from pydantic import Field

from insight.schemas.shapes import HashedMetadata


class EventTrackMetadata(HashedMetadata):
    """What a Music Assistant track adds to the text and the payload: its ``version`` (a
    "Live" take is another text), album year, MusicBrainz recording id and all external ids,
    and ``audio_metadata`` bpm / musical key (filterable)."""

    version: str | None = Field(default=None, max_length=4096)
    year: int | None = Field(default=None, ge=0, le=9999)
    mbid: str | None = Field(default=None, max_length=256)
    external_ids: dict[str, str] | None = None
    bpm: float | None = Field(default=None, ge=0, le=1000)
    key: str | None = Field(default=None, max_length=64)
