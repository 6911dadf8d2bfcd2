"""What insight believes a user listened to."""

from __future__ import annotations

from pydantic import Field

from insight.schemas.base import Schema
from insight.schemas.shapes import UserRef


class ListensRequest(UserRef):
    since: int = Field(default=0, ge=0, description="only plays that started at/after (unix s)")
    limit: int = Field(default=1000, ge=1, le=10_000, description="newest plays first")


class ListenedPlay(Schema):
    track_id: str
    started_at: int
    seconds_played: float
    duration: float
    fully_played: bool
    skipped: bool


class OpenListen(Schema):
    track_id: str
    started_at: int
    position: float
    playing: bool


class ListensResponse(Schema):
    """What insight believes a user did: plays and skips (newest first), favorites, and the
    listen still open (not booked until its item ends)."""

    user_id: str
    plays: list[ListenedPlay]
    play_count: int = Field(description="plays among those returned (not skips)")
    skip_count: int = Field(description="skips among those returned")
    favorites: list[str]
    listening: OpenListen | None = None
