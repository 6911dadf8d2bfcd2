"""Taste profiles from interactions, and recommendations from them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, Field, model_validator

from insight.schema_types import Finite, Id, TrackId, Vector
from insight.schemas.base import Schema
from insight.schemas.enums import SignalType
from insight.schemas.search import SearchResult
from insight.schemas.shapes import SearchFilter, UserRef


class UserInteraction(Schema):
    """Either SPEC's aggregate form or the original sidecar's event form."""

    track_id: TrackId
    play_count: int | None = Field(default=None, ge=0)
    skip_count: int | None = Field(default=None, ge=0)
    is_favorite: bool | None = None
    last_played: int | None = None
    timestamp: int | None = None
    signal_type: SignalType | None = None
    seconds_played: Finite | None = Field(default=None, ge=0)
    duration: Finite | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_form(self) -> UserInteraction:
        aggregate = any(v is not None for v in (self.play_count, self.skip_count, self.is_favorite))
        if not aggregate and self.signal_type is None:
            raise ValueError(
                "an interaction needs play_count/skip_count/is_favorite or a signal_type"
            )
        return self


def _profile_type(v: Any) -> Any:
    """Accept "global", "mood:<id>" and the original's tagged {"type": "Mood", "value": ...}."""
    if isinstance(v, dict):
        kind = str(v.get("type", "")).lower()
        return f"{kind}:{v['value']}" if v.get("value") else kind
    return v


ProfileType = Annotated[
    str,
    BeforeValidator(_profile_type),
    Field(pattern=r"^(global|all|distaste|mood(:[a-z_]+)?)$"),
]


class ComputeProfileRequest(UserRef):
    interactions: list[UserInteraction] | None = Field(default=None, max_length=100_000)
    cutoff_days: int | None = Field(default=None, ge=1, le=36_500)
    profile_type: ProfileType = Field(
        default="all", description="all = global + one profile per liked primary mood"
    )


class ProfileSummary(Schema):
    profile_type: str
    track_count: int
    confidence: float
    updated_at: int


class ComputeProfileResponse(Schema):
    user_id: str
    profiles: list[ProfileSummary]
    missing_tracks: list[str] = Field(default_factory=list)


class RecommendRequest(UserRef):
    limit: int = Field(default=25, ge=1, le=500)
    profile_type: ProfileType = "global"
    exclude_ids: list[Id] = Field(default_factory=list)
    filter: SearchFilter | None = None
    diversity: float = Field(default=0.3, ge=0, le=1, description="0 = pure relevance (MMR)")
    max_per_artist: int | None = Field(default=3, ge=1)
    exclude_recent: bool = True


class RecommendResponse(Schema):
    tracks: list[SearchResult]
    profile_confidence: float


class ProfileRequest(UserRef):
    profile_type: ProfileType = "global"


class TasteProfile(Schema):
    user_id: str
    profile_type: str
    embedding: Vector
    track_count: int
    confidence: float
    updated_at: int


class TasteVectorResponse(Schema):
    profile: TasteProfile


class DeletedResponse(Schema):
    deleted: bool
    message: str
