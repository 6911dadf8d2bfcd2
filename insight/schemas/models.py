"""Model list, downloads, switching and re-embedding."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from insight.schemas.base import Schema
from insight.schemas.enums import DownloadStatus
from insight.schemas.system import ModelDetail


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


class MigrationStatus(Schema):
    """A staged switch to another model: its space is filled while the old one serves."""

    model_id: str
    from_model_id: str | None = None
    space: str
    from_space: str
    phase: Literal["text", "audio", "switching", "done", "cancelled", "failed"]
    text_total: int = 0
    text_done: int = 0
    audio_total: int = 0
    audio_done: int = 0
    unrecoverable: int = Field(
        default=0,
        description="Audio vectors with no file to analyse again (stay in the old space)",
    )
    unrecoverable_ids: list[str] = Field(default_factory=list, description="The first 100")
    started_at: int
    finished_at: int | None = None
    eta_s: float | None = None
    error: str | None = None


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
