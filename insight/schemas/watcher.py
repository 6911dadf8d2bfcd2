"""The folder watcher: folders, status, actions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from insight.schema_types import FolderPath
from insight.schemas.base import Schema


class WatchedFolder(Schema):
    path: FolderPath
    recursive: bool = True
    label: str | None = None
    enabled: bool = True


class WatcherFailure(Schema):
    path: str
    error: str


class WatcherStatus(Schema):
    state: Literal["stopped", "scanning", "watching", "paused", "disabled"]
    folders: list[WatchedFolder]
    done: int = 0
    pending: int = 0
    failed: int = 0
    current_file: str | None = None
    rate_per_min: float = 0.0
    eta_s: float | None = None
    mode: str = "full"
    recent_failures: list[WatcherFailure] = Field(
        default_factory=list, description="The last failed or skipped files, with the reason"
    )


class WatcherActionResponse(Schema):
    success: bool
    message: str


class ScanRequest(Schema):
    force: bool = False


class FolderRef(Schema):
    path: FolderPath


class FoldersResponse(Schema):
    folders: list[WatchedFolder]
