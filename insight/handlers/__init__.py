"""Request handlers, one module per capability; ``ROUTERS`` is the endpoint table."""

from insight.api import Endpoint
from insight.handlers import (
    embed,
    mood,
    playlists,
    similar,
    spaces,
    stream,
    system,
    taste,
    tracks,
    views,
)
from insight.handlers import listens as listens_handlers
from insight.handlers import watcher as watcher_handlers
from insight.models import handlers as models_handlers
from insight.search import handlers as search_handlers

ROUTERS = [
    system.router,
    embed.router,
    tracks.router,
    search_handlers.router,
    stream.router,
    mood.router,
    taste.router,
    listens_handlers.router,
    similar.router,
    models_handlers.router,
    spaces.router,
    watcher_handlers.router,
    playlists.router,
    views.router,
]


def all_endpoints() -> list[Endpoint]:
    """Every endpoint of every capability, in a stable order."""
    return [ep for router in ROUTERS for ep in router.endpoints]
