"""Root of every wire schema: unknown fields are ignored, bytes travel as base64 in JSON."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    model_config = ConfigDict(extra="ignore", ser_json_bytes="base64", val_json_bytes="base64")


class Empty(Schema):
    """Request with no fields (GET endpoints without parameters)."""
