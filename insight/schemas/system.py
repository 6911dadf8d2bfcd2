"""Health, config, storage stats and system status replies."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from insight.schemas.base import Schema
from insight.schemas.enums import HealthStatus, ModelStatus


class HealthResponse(Schema):
    status: HealthStatus
    version: str
    model_loaded: bool
    storage_ready: bool
    message: str | None = None


class ModelConfigInfo(Schema):
    name: str
    cuda_enabled: bool
    loaded: bool
    device: str | None = None


class AudioConfigInfo(Schema):
    window_size_s: float
    hop_size_s: float


class ServerConfigInfo(Schema):
    host: str
    port: int


class StorageConfigInfo(Schema):
    url: str
    enabled: bool
    connected: bool
    mode: str


class ConfigResponse(Schema):
    model: ModelConfigInfo
    audio: AudioConfigInfo
    server: ServerConfigInfo
    storage: StorageConfigInfo


class StorageStats(Schema):
    mode: str
    connected: bool
    text_collection_count: int = 0
    audio_collection_count: int = 0
    profile_count: int = 0
    total_tracks: int = 0
    index_size_bytes: int | None = None
    stale_vectors: int = 0
    message: str | None = None


class StorageStatsResponse(Schema):
    stats: StorageStats


class ModelDetail(Schema):
    model_id: str
    name: str
    description: str | None = None
    status: ModelStatus
    estimated_size_bytes: int | None = None
    actual_size_bytes: int | None = None
    cache_path: str | None = None
    recommended: bool = False
    is_current: bool = False
    device: str | None = None
    license: str | None = None
    onnx_on_hub: bool = True
    note: str | None = None


class MigrationStatus(Schema):
    """A staged switch to another model: its space is filled while the old one serves."""

    model_id: str
    from_model_id: str | None = None
    space: str
    from_space: str
    phase: Literal["resuming", "text", "audio", "switching", "done", "cancelled", "failed"] = Field(
        description="resuming: recorded before a restart, its model is loading again"
    )
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


class SystemStatus(Schema):
    version: str
    health: HealthStatus
    uptime_seconds: int
    model: ModelDetail | None = None
    storage: StorageStats
    features: list[str]
    workers: int = 1
    message: str | None = None
    migration: MigrationStatus | None = None  # the running model migration
