"""Folder watcher: status, start/stop, pause/resume, scan, watched folders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.errors import NotReady
from insight.schemas import (
    Empty,
    FolderRef,
    FoldersResponse,
    ScanRequest,
    WatchedFolder,
    WatcherActionResponse,
    WatcherStatus,
)

if TYPE_CHECKING:
    from insight.app import App
    from insight.watcher.service import WatcherService

router = Router(tag="watcher")


def watcher(app: App) -> WatcherService:
    svc = app.services.watcher
    if svc is None:
        raise NotReady(
            "the folder watcher is not available in this worker "
            "(install the `watcher` extra: pip install insight[watcher])"
        )
    return svc


def ok(message: str) -> WatcherActionResponse:
    return WatcherActionResponse(success=True, message=message)


@router.endpoint("watcher.status", "GET", "/watcher/status")
async def status(app: App, req: Empty) -> WatcherStatus:
    """State, counts (done/pending/failed), current file, rate and ETA."""
    return watcher(app).status()


@router.endpoint("watcher.start", "POST", "/watcher/start", body="optional")
async def start(app: App, req: Empty) -> WatcherActionResponse:
    """Scan the watched folders and watch them for changes."""
    await watcher(app).start()
    return ok("watching")


@router.endpoint("watcher.stop", "POST", "/watcher/stop", body="optional")
async def stop(app: App, req: Empty) -> WatcherActionResponse:
    """Stop watching and scanning (files not started yet are dropped)."""
    await watcher(app).stop()
    return ok("stopped")


@router.endpoint("watcher.pause", "POST", "/watcher/pause", body="optional")
async def pause(app: App, req: Empty) -> WatcherActionResponse:
    """Hold processing after the current file; changes are still collected."""
    watcher(app).pause()
    return ok("paused")


@router.endpoint("watcher.resume", "POST", "/watcher/resume", body="optional")
async def resume(app: App, req: Empty) -> WatcherActionResponse:
    """Continue processing."""
    watcher(app).resume()
    return ok("resumed")


@router.endpoint("watcher.scan", "POST", "/watcher/scan", body="optional")
async def scan(app: App, req: ScanRequest) -> WatcherActionResponse:
    """Scan every watched folder now (force: re-analyse files already done)."""
    watcher(app).scan(force=req.force)
    return ok("forced scan started" if req.force else "scan started")


@router.endpoint("watcher.folders", "GET", "/watcher/folders")
async def folders(app: App, req: Empty) -> FoldersResponse:
    """Watched folders."""
    return FoldersResponse(folders=list(watcher(app).folders.values()))


@router.endpoint("watcher.folders.add", "POST", "/watcher/folders", errors=(400, 409))
async def add_folder(app: App, req: WatchedFolder) -> WatchedFolder:
    """Watch a folder (must exist; normalised; duplicates and sub-folders refused)."""
    return watcher(app).add_folder(req.path, req.recursive, req.label)


@router.endpoint("watcher.folders.remove", "DELETE", "/watcher/folders/{path:.+}", errors=(404,))
async def remove_folder(app: App, req: FolderRef) -> WatchedFolder:
    """Stop watching a folder (its tracks stay stored)."""
    return watcher(app).remove_folder(req.path)
