"""Streaming sessions: start, frames, end, status, abort."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from insight.schema_types import Pcm, SampleRate, TrackId
from insight.schemas.base import Schema
from insight.schemas.enums import AudioFormat, SessionStatus
from insight.schemas.shapes import IngestMetadata


class StartStreamRequest(Schema):
    track_id: TrackId
    metadata: IngestMetadata
    format: AudioFormat
    sample_rate: SampleRate
    channels: int = Field(ge=1, le=2)
    replace_existing: bool = True


class StartStreamResponse(Schema):
    session_id: str
    window_samples: int


class SessionRef(Schema):
    session_id: Annotated[str, Field(min_length=1, max_length=128)]


class FramesRequest(SessionRef):
    data: Pcm
    offset: int | None = Field(
        default=None,
        ge=0,
        le=1 << 40,
        description="Byte offset of this data in the session's audio (the bytes sent before "
        "it). With it a retry is safe: bytes already stored are not stored again, and a gap "
        "is refused (409) with the offset to resend from",
    )
    remaining_bytes: int | None = Field(
        default=None,
        ge=0,
        description="Bytes of the whole frames body from this chunk on, set by the bridge: "
        "the body is refused as a whole before its first chunk is stored",
    )


class FramesResponse(Schema):
    buffered_seconds: float
    windows_completed: int


class EndStreamRequest(SessionRef):
    store: bool = True
    min_duration_s: float = Field(default=3.0, ge=0)


class EndStreamResponse(Schema):
    track_id: str
    duration_s: float
    windows_processed: int
    text_stored: bool
    audio_stored: bool
    primary_mood: str | None = None


class StreamStatusResponse(Schema):
    session_id: str
    track_id: str
    status: SessionStatus
    buffered_seconds: float
    windows_completed: int
    age_seconds: float


class AbortResponse(Schema):
    session_id: str
    aborted: bool
