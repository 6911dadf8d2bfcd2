"""The typed container of a worker's services, built by ``insight.compose``.

Handlers reach a service as ``app.services.<name>``; services that need another one get it
in their constructor (see compose.py for the order), never by looking it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from insight.history import ListeningHistory
    from insight.ingest.events import EventConsumers
    from insight.ingest.sessions import SessionManager
    from insight.library import Library
    from insight.mapview.service import MapService
    from insight.models.service import ModelsService
    from insight.mood.classifier import MoodClassifier
    from insight.observability import MetricsCollector
    from insight.playlists.service import PlaylistService
    from insight.watcher.service import WatcherService


@dataclass
class Services:
    history: ListeningHistory
    mood: MoodClassifier
    library: Library
    playlists: PlaylistService
    map: MapService
    models: ModelsService
    watcher: WatcherService | None = None  # None: installed without the `watcher` extra
    # bus-side components: only in a worker connected to NATS (not in `insight scan`)
    sessions: SessionManager | None = None
    events: EventConsumers | None = None
    metrics: MetricsCollector | None = None
    # scale-out (insight.scale): remote inference and the distributed scan, each with stop()
    scale: list[Any] = field(default_factory=list)
