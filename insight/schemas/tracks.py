"""Track reads, deletes and (batch) upserts, with and without text embedding."""

from __future__ import annotations

from pydantic import Field, model_validator

from insight.schema_types import TrackId, Vector
from insight.schemas.base import Schema
from insight.schemas.shapes import HashedMetadata, IngestMetadata, TrackMetadata, TrackRef


class GetTrackRequest(TrackRef):
    include_text: bool = False
    include_audio: bool = False


class TrackResponse(Schema):
    track_id: str
    metadata: TrackMetadata | None
    has_text: bool
    has_audio: bool
    text_embedding: Vector | None = None
    audio_embedding: Vector | None = None


class DeleteTrackRequest(TrackRef):
    text: bool = True
    audio: bool = True


class DeleteTrackResponse(Schema):
    track_id: str
    text_deleted: bool
    audio_deleted: bool


class UpsertRequest(Schema):
    track_id: TrackId
    metadata: IngestMetadata
    text_embedding: Vector | None = None
    audio_embedding: Vector | None = None

    @model_validator(mode="after")
    def _some_vector(self) -> UpsertRequest:
        if self.text_embedding is None and self.audio_embedding is None:
            raise ValueError("At least one embedding (text or audio) must be provided")
        return self


class UpsertResponse(Schema):
    track_id: str
    text_stored: bool
    audio_stored: bool


MAX_BATCH = 100


class BatchUpsertRequest(Schema):
    tracks: list[UpsertRequest] = Field(max_length=MAX_BATCH)


class BatchItemResult(Schema):
    track_id: str
    success: bool
    error: str | None = None
    text_stored: bool = False
    audio_stored: bool = False
    text: str | None = None


class BatchResponse(Schema):
    results: list[BatchItemResult]
    total: int
    succeeded: int
    failed: int


class EmbedTextAndStoreRequest(Schema):
    track_id: TrackId
    metadata: HashedMetadata


class EmbedTextAndStoreResponse(Schema):
    track_id: str
    stored: bool
    text: str
    primary_mood: str | None = None


class BatchEmbedTextRequest(Schema):
    tracks: list[EmbedTextAndStoreRequest] = Field(max_length=MAX_BATCH)
