"""Health, configuration, status and storage statistics."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from insight.api import Router
from insight.config import redact_url
from insight.schemas import (
    AudioConfigInfo,
    ConfigResponse,
    Empty,
    HealthResponse,
    HealthStatus,
    ModelConfigInfo,
    ModelDetail,
    ModelStatus,
    ServerConfigInfo,
    StorageConfigInfo,
    StorageStats,
    StorageStatsResponse,
    SystemStatus,
)
from insight.storage.base import TASTE_PROFILES, TRACKS_AUDIO, TRACKS_TEXT

if TYPE_CHECKING:
    from insight.app import App

router = Router(tag="system")


def health_of(app: App) -> HealthResponse:
    problems = [m for m in (app.model_error, app.store_error) if m]
    return HealthResponse(
        status=HealthStatus.DEGRADED if problems else HealthStatus.HEALTHY,
        version=app.version,
        model_loaded=app.pool is not None,
        storage_ready=app.store is not None,
        message=" ".join(problems) or None,
    )


async def storage_stats(app: App) -> StorageStats:
    mode = app.settings.storage.mode.value
    if app.store is None:
        return StorageStats(mode=mode, connected=False, message=app.store_error)
    stats = await app.store.stats()
    counts = stats.collections
    text, audio = counts.get(TRACKS_TEXT, 0), counts.get(TRACKS_AUDIO, 0)
    models = app.services.models
    return StorageStats(
        mode=stats.mode,
        connected=stats.connected,
        text_collection_count=text,
        audio_collection_count=audio,
        profile_count=counts.get(TASTE_PROFILES, 0),
        total_tracks=max(text, audio),
        index_size_bytes=stats.index_size_bytes,
        stale_vectors=await models.stale_count(),
        message=stats.message,
    )


def loaded_model_detail(app: App) -> ModelDetail | None:
    if app.pool is None:
        return None
    model = app.pool.model
    return ModelDetail(
        model_id=model.model_id,
        name=model.model_id,
        status=ModelStatus.LOADED,
        cache_path=str(model.model_dir),
        is_current=True,
        device=model.device,
    )


@router.endpoint("health", "GET", "/health")
async def health(app: App, req: Empty) -> HealthResponse:
    """Health check: healthy when a model is loaded and storage is ready."""
    return health_of(app)


@router.endpoint("config", "GET", "/config")
async def config(app: App, req: Empty) -> ConfigResponse:
    """Current configuration (secrets are never included)."""
    s = app.settings
    return ConfigResponse(
        model=ModelConfigInfo(
            name=app.pool.model.model_id if app.pool else s.model.name,
            cuda_enabled=s.model.enable_cuda,
            loaded=app.pool is not None,
            device=app.pool.model.device if app.pool else None,
        ),
        audio=AudioConfigInfo(window_size_s=s.audio.window_size_s, hop_size_s=s.audio.hop_size_s),
        server=ServerConfigInfo(host=s.server.host, port=s.server.port),
        storage=StorageConfigInfo(
            url=redact_url(s.storage.url),
            enabled=s.storage.enabled,
            connected=app.store is not None,
            mode=s.storage.mode.value,
        ),
    )


@router.endpoint("status", "GET", "/status")
async def status(app: App, req: Empty) -> SystemStatus:
    """Full system status: health, model, storage, features."""
    health_info = health_of(app)
    features = ["inference", "storage", "audio", "bus", f"storage-{app.settings.storage.mode}"]
    if app.services.watcher is not None:
        features.append("watcher")
    if app.pool is not None and app.pool.model.device != "CPU":
        features.append(app.pool.model.device.lower())
    services = app.built_services
    staged = services.models.migrations if services is not None else None
    return SystemStatus(
        version=app.version,
        health=health_info.status,
        uptime_seconds=int(time.time() - app.started_at),
        model=loaded_model_detail(app),
        storage=await storage_stats(app),
        features=features,
        message=health_info.message,
        migration=staged.status(running_only=True) if staged is not None else None,
    )


@router.endpoint("storage.stats", "GET", "/storage/stats")
async def stats(app: App, req: Empty) -> StorageStatsResponse:
    """Storage statistics: mode, connection, per-collection counts, index size."""
    return StorageStatsResponse(stats=await storage_stats(app))
