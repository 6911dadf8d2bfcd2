"""Starting the bus-side components of a worker (JetStream streams and consumers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from insight.bus.streams import ensure_streams
from insight.ingest.events import EventConsumers
from insight.ingest.sessions import SessionManager
from insight.observability import MetricsCollector

if TYPE_CHECKING:
    from insight.app import App


async def start_components(app: App) -> list[Any]:
    """Create streams/buckets and start consumers; returns objects with ``stop()``."""
    assert app.js is not None
    await ensure_streams(app.js, app.settings.nats.replicas)
    sessions = SessionManager(app)
    await sessions.start()
    app.services["sessions"] = sessions
    events = EventConsumers(app)
    await events.start()
    collector = await MetricsCollector(app).start()
    return [sessions, events, collector]
