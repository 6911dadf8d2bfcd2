"""The closed vocabularies of the wire (SPEC "Data Types")."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

# the wire names it, the decoder owns it
from insight.audio_format import AudioFormat as AudioFormat


class HealthStatus(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


class MoodTier(StrEnum):
    PRIMARY = "primary"
    REFINED = "refined"
    CONTEXTUAL = "contextual"


class SignalType(StrEnum):
    FULL_PLAY = "full_play"
    PARTIAL_PLAY = "partial_play"
    SKIP = "skip"
    REPEAT = "repeat"
    FAVORITE = "favorite"
    DISLIKE = "dislike"
    SAVE = "save"


class SessionStatus(StrEnum):
    ACTIVE = "active"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ERROR = "error"


class ModelStatus(StrEnum):
    NOT_DOWNLOADED = "not_downloaded"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    LOADED = "loaded"
    FAILED = "failed"


class DownloadStatus(StrEnum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


Collection = Literal["text", "audio"]
