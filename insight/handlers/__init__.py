"""Request handlers, one module per capability; ``ROUTERS`` is the endpoint table."""

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
from insight.handlers import models as models_handlers
from insight.handlers import watcher as watcher_handlers

ROUTERS = [
    system.router,
    embed.router,
    tracks.router,
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
