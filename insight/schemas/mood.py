"""Mood classification and the mood list."""

from __future__ import annotations

from pydantic import Field, model_validator

from insight.schema_types import Id, Vector
from insight.schemas.base import Schema
from insight.schemas.enums import MoodTier


class MoodClassifyRequest(Schema):
    embedding: Vector | None = None
    track_id: Id | None = None
    tiers: list[MoodTier] = Field(default_factory=lambda: [MoodTier.PRIMARY, MoodTier.REFINED])
    top_k: int = Field(default=3, ge=1, le=26)
    include_va: bool = True

    @model_validator(mode="after")
    def _one_given(self) -> MoodClassifyRequest:
        if self.embedding is None and self.track_id is None:
            raise ValueError("Either 'embedding' or 'track_id' must be provided")
        return self


class MoodScore(Schema):
    mood: str
    name: str
    confidence: float
    tier: MoodTier


class MoodClassification(Schema):
    primary_mood: str | None = None
    moods: list[str]
    mood_scores: dict[str, float]
    valence: float | None = None
    arousal: float | None = None
    details: list[MoodScore] = Field(default_factory=list)
    source: str | None = None


class MoodInfo(Schema):
    id: str
    name: str
    tier: MoodTier
    valence_hint: float
    arousal_hint: float
    prompt: str


class MoodListResponse(Schema):
    moods: list[MoodInfo]
    counts: dict[str, int]
