"""Model management: list, download (progress, cancel), load (hot swap), delete, re-embed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.errors import NotFound
from insight.schemas import (
    DownloadProgress,
    DownloadRef,
    DownloadResponse,
    DownloadsResponse,
    Empty,
    MigrationStatus,
    ModelActionResponse,
    ModelLoadRequest,
    ModelRef,
    ModelsResponse,
    ReembedRequest,
    ReembedResponse,
)

if TYPE_CHECKING:
    from insight.app import App
    from insight.models.service import ModelsService
    from insight.models.staging import Migrations

router = Router(tag="models")


def models(app: App) -> ModelsService:
    return app.services.models


@router.endpoint("models.list", "GET", "/models")
async def list_models(app: App, req: Empty) -> ModelsResponse:
    """Known and cached models with status, size on disk and the current one."""
    return models(app).list_models()


@router.endpoint("models.download", "POST", "/models/download", errors=(400, 409))
async def download(app: App, req: ModelRef) -> DownloadResponse:
    """Start a background download from the hub (progress in GET /models/downloads)."""
    return models(app).start_download(req.model_id)


@router.endpoint("models.downloads", "GET", "/models/downloads")
async def downloads(app: App, req: Empty) -> DownloadsResponse:
    """Downloads running or finished in the last hour."""
    return DownloadsResponse(downloads=[j.progress() for j in models(app).downloads.list()])


@router.endpoint(
    "models.downloads.cancel", "DELETE", "/models/downloads/{download_id}", errors=(404,)
)
async def cancel_download(app: App, req: DownloadRef) -> DownloadProgress:
    """Cancel a download; finished files stay cached and are reused by the next try."""
    return models(app).downloads.cancel(req.download_id).progress()


@router.endpoint("models.reembed", "POST", "/models/reembed", body="optional")
async def reembed(app: App, req: ReembedRequest) -> ReembedResponse:
    """Re-embed vectors made by another model: text now, audio via the folder watcher."""
    return await models(app).reembed(req.drop_unrecoverable)


@router.endpoint(
    "models.load", "POST", "/models/{model_id:.+}/load", body="optional", errors=(400, 404)
)
async def load(app: App, req: ModelLoadRequest) -> ModelActionResponse:
    """Load a downloaded model; by default the old one serves until the new space is filled.

    A staged switch (GET /models/migration) when the loaded model's space holds vectors;
    ``"switch": "now"`` switches at once (the new space starts empty until re-embedded)."""
    return await models(app).load(req.model_id, req.switch)


def migrations(app: App) -> Migrations:
    m = models(app).migrations
    if m is None:
        raise NotFound("model migrations are not available in this worker")
    return m


@router.endpoint("models.migration", "GET", "/models/migration", errors=(404,))
async def migration(app: App, req: Empty) -> MigrationStatus:
    """The running (or last) model migration: phase, done/total per collection, ETA."""
    status = migrations(app).status()
    if status is None:
        raise NotFound("no model migration has run since start")
    return status


@router.endpoint("models.migration.cancel", "DELETE", "/models/migration", errors=(404,))
async def cancel_migration(app: App, req: Empty) -> MigrationStatus:
    """Cancel the running migration: the loaded model keeps serving, both spaces stay."""
    return await migrations(app).cancel()


@router.endpoint("models.delete", "DELETE", "/models/{model_id:.+}", errors=(400, 404, 409))
async def delete(app: App, req: ModelRef) -> ModelActionResponse:
    """Delete a cached model (never the loaded one)."""
    return models(app).delete(req.model_id)
