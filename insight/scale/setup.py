"""A store node's scale-out parts, started by the composition root (insight.compose)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from insight.scale.remote import RemoteInference
from insight.scale.scan import ScanConsumer, ScanDispatch

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext

    from insight.config import Settings
    from insight.state import ModelSlot
    from insight.watcher.service import WatcherService


async def start_remote(
    settings: Settings,
    loaded: ModelSlot,
    nc: NATS,
    js: JetStreamContext,
    worker_id: str,
    watcher: WatcherService | None,
) -> list[Any]:
    """A store node's scale-out parts (objects with ``stop()``): the inference dispatcher
    (unless ``INSIGHT_INFERENCE__REMOTE=off``) and, with a watcher, the distributed scan.
    Each part gets only the settings sections, slot and bus handles it uses."""
    if settings.inference.remote == "off":
        return []
    replicas = settings.nats.replicas
    remote = RemoteInference(settings.inference, settings.nats.max_payload_mb, loaded, nc)
    parts: list[Any] = [await remote.start()]
    if watcher is not None:
        cfg = settings.watcher
        if cfg.scan_here:
            consumer = ScanConsumer(
                cfg,
                settings.audio,
                loaded,
                nc,
                js,
                worker_id,
                cfg.workers,
                lambda: watcher.executor,
                replicas=replicas,
                processes=lambda: watcher.files.processes,
            )
            parts.append(await consumer.start())
        dispatch = ScanDispatch(cfg, loaded, nc, js, worker_id, remote, watcher, replicas=replicas)
        parts.append(await dispatch.start())
    return parts
