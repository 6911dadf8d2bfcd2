"""Model spaces: the collections of each model that this data dir holds."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from insight.schemas.base import Schema


class SpaceInfo(Schema):
    space: str = Field(description='"default" (the unkeyed collections) or the space key')
    dim: int
    model_id: str | None = None
    current: bool = False
    migrating: bool = Field(default=False, description="being filled by a model migration")
    counts: dict[str, int] = Field(default_factory=dict, description="vectors per collection")


class SpacesResponse(Schema):
    spaces: list[SpaceInfo]


class SpaceRef(Schema):
    space: Annotated[str, Field(min_length=1, max_length=128)]


class SpaceDropResponse(Schema):
    space: str
    dim: int
    model_id: str | None = None
    message: str
