"""Text and audio embedding requests and replies."""

from __future__ import annotations

from pydantic import Field, model_validator

from insight.schema_types import Pcm, SampleRate, Vector
from insight.schemas.base import Schema
from insight.schemas.enums import AudioFormat
from insight.schemas.shapes import IngestMetadata


class TextEmbedRequest(Schema):
    text: str | None = Field(default=None, max_length=100_000)
    metadata: IngestMetadata | None = None

    @model_validator(mode="after")
    def _one_given(self) -> TextEmbedRequest:
        if self.text is None and self.metadata is None:
            raise ValueError("Either 'text' or 'metadata' must be provided")
        return self


class TextEmbedResponse(Schema):
    embedding: Vector
    text: str


class AudioEmbedRequest(Schema):
    format: AudioFormat
    sample_rate: SampleRate
    channels: int = Field(ge=1, le=2)
    data: Pcm


class AudioEmbedResponse(Schema):
    embedding: Vector
    duration_s: float
    windows: int = 1
