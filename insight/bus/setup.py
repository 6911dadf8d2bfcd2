"""Starting the bus-side components of a worker (JetStream streams and consumers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from insight.app import App


async def start_components(app: App) -> list[Any]:
    """Create streams/buckets and start consumers; returns objects with ``stop()``."""
    return []
