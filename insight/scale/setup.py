"""A store node's scale-out parts, started by the composition root (insight.compose)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from insight.scale.remote import RemoteInference
from insight.scale.scan import ScanConsumer, ScanDispatch

if TYPE_CHECKING:
    from insight.app import App


async def start_remote(app: App) -> list[Any]:
    """A store node's scale-out parts (objects with ``stop()``): the inference dispatcher
    (unless ``INSIGHT_INFERENCE__REMOTE=off``) and, with a watcher, the distributed scan."""
    if app.settings.inference.remote == "off":
        return []
    remote = await RemoteInference(app).start()
    parts: list[Any] = [remote]
    watcher = app.services.watcher
    if watcher is not None:
        if app.settings.watcher.scan_here:
            slots = app.settings.watcher.workers
            parts.append(await ScanConsumer(app, slots, lambda: watcher.executor).start())
        parts.append(await ScanDispatch(app, remote, watcher).start())
    return parts
