"""Vector, text, similar, multi-similar and radio search."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from insight.schema_types import TrackId, Vector
from insight.schemas.base import Schema
from insight.schemas.enums import Collection
from insight.schemas.shapes import SearchFilter, TrackMetadata, TrackRef


class SearchRequest(Schema):
    embedding: Vector
    collection: Collection = "text"
    limit: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None


class TextSearchRequest(Schema):
    query: str = Field(min_length=1, max_length=10_000)
    limit: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None


class SimilarRequest(TrackRef):
    limit: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None
    collection: Literal["auto", "text", "audio"] = "auto"


class MultiSimilarRequest(Schema):
    track_ids: list[TrackId] = Field(min_length=1, max_length=50)
    negative_ids: list[TrackId] = Field(default_factory=list, max_length=50)
    limit: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None


class RadioRequest(Schema):
    seed_ids: list[TrackId] = Field(min_length=1, max_length=50)
    recent_ids: list[TrackId] = Field(default_factory=list, max_length=1000)
    count: int = Field(default=10, ge=1, le=100)
    filter: SearchFilter | None = None
    max_per_artist: int = Field(default=2, ge=1)


class SearchResult(Schema):
    track_id: str
    score: float
    metadata: TrackMetadata
    reason: str | None = None


class SearchResponse(Schema):
    results: list[SearchResult]
    count: int
