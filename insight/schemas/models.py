"""Model list, downloads, switching and re-embedding."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from insight.schemas.base import Schema
from insight.schemas.enums import DownloadStatus
from insight.schemas.system import MigrationStatus, ModelDetail


class ModelsResponse(Schema):
    models: list[ModelDetail]
    current_model: str | None = None


class ModelRef(Schema):
    model_id: Annotated[str, Field(min_length=1, max_length=256)]


class DownloadResponse(Schema):
    download_id: str | None = None
    model_id: str
    message: str
    already_exists: bool


class DownloadProgress(Schema):
    download_id: str
    model_id: str
    status: DownloadStatus
    bytes_downloaded: int
    total_bytes: int | None = None
    error: str | None = None
    started_at: int
    current_file: str | None = None
    completed_at: int | None = None


class DownloadsResponse(Schema):
    downloads: list[DownloadProgress]


class DownloadRef(Schema):
    download_id: str


class ModelLoadRequest(ModelRef):
    switch: Literal["migrate", "now"] = Field(
        default="migrate",
        description=(
            "migrate: when the loaded model's space holds vectors, fill the new model's space "
            "first (both models in memory meanwhile) while the old one keeps serving, then "
            "switch; now: switch at once to the new model's space (empty until re-embedded)"
        ),
    )


class ModelActionResponse(Schema):
    model_id: str
    success: bool
    message: str
    stale_vectors: int = 0
    migration: MigrationStatus | None = None


class ReembedRequest(Schema):
    drop_unrecoverable: bool = Field(
        default=False,
        description="Delete stale audio vectors that cannot be rebuilt (no known file)",
    )


class ReembedResponse(Schema):
    reembedded_text: int
    reembedded_audio: int
    remaining_stale: int
    message: str
    dropped_audio: int = 0
