"""Shapes several capabilities share: track metadata, the search filter, track and user refs."""

from __future__ import annotations

from pydantic import Field

from insight.schema_types import Finite, Id, TrackId
from insight.schemas.base import Schema


class IngestMetadata(Schema):
    name: str = Field(max_length=4096)
    artists: list[str] = Field(default_factory=list)
    album: str | None = None
    genres: list[str] = Field(default_factory=list)


class HashedMetadata(IngestMetadata):
    metadata_hash: str | None = None


class TrackMetadata(Schema):
    """Stored payload of a track, as returned by get/search."""

    track_id: str
    name: str = ""
    artists: list[str] = Field(default_factory=list)
    album: str | None = None
    genres: list[str] = Field(default_factory=list)
    file_path: str | None = None
    updated_at: int = 0
    primary_mood: str | None = None
    moods: list[str] | None = None
    mood_scores: dict[str, float] | None = None
    valence: float | None = None
    arousal: float | None = None
    metadata_hash: str | None = None
    source: str | None = None
    model_id: str | None = None
    version: str | None = None
    year: int | None = None
    mbid: str | None = None
    external_ids: dict[str, str] | None = None
    bpm: float | None = None
    key: str | None = None


class SearchFilter(Schema):
    artists: list[str] | None = None
    genres: list[str] | None = None
    album: str | None = None
    exclude_ids: list[Id] | None = None
    moods: list[str] | None = None
    exclude_moods: list[str] | None = None
    min_valence: Finite | None = None
    max_valence: Finite | None = None
    min_arousal: Finite | None = None
    max_arousal: Finite | None = None
    model_id: str | None = Field(
        default=None,
        description="Only vectors made by this model; search pins it to the loaded model",
    )
    min_bpm: float | None = Field(default=None, ge=0, le=1000)
    max_bpm: float | None = Field(default=None, ge=0, le=1000)
    keys: list[str] | None = Field(
        default=None, max_length=64, description="Musical key, any of (case-insensitive)"
    )


class TrackRef(Schema):
    track_id: TrackId


class UserRef(Schema):
    user_id: Id
