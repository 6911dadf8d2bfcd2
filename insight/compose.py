"""The composition root: every service of a worker built, started and stopped here, in order.

Nothing below this module imports it (tests/test_architecture.py checks); services get only
the slots, settings sections, bus handles and other services they use, never the app.

Start order (``start``), each step using only what the steps before it made:

1. the store (``App.open_store``; down or disabled → the worker runs degraded);
2. the listening history (a SQLite file in the data dir);
3. the services: mood, library, playlists (+ its refresh task), map, watcher (optional
   extra), models; the model listeners are mood then models;
4. the configured model (absent → degraded; the listeners cache what they need per model);
5. the watcher's workers (and its scan, when enabled), then (a worker on the bus) a model
   migration that a restart interrupted (``migration.json``), begun again in the background;
6. the background download of the configured model when none is loaded and it may fetch one;
7. with a bus: JetStream streams and buckets, stream sessions, event consumers, metrics, and
   scale-out (remote inference through inference workers, the distributed scan).

``stop`` runs the same steps backwards: bus components, background tasks, services (models
with its migration, watcher, playlists, history), the inference pool, the store.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING

from insight.app import App
from insight.errors import MODEL_HINT
from insight.history import ListeningHistory
from insight.library import Library
from insight.mapview.service import MapService
from insight.models.service import ModelsService
from insight.mood.classifier import MoodClassifier
from insight.playlists.service import PlaylistService
from insight.services import Services
from insight.state import ModelSlot

if TYPE_CHECKING:
    from insight.watcher.service import WatcherService

log = logging.getLogger("insight.compose")


async def start(app: App, *, background: bool = True) -> Services:
    """Build and start every service of ``app`` (steps 1-7 above); returns them, also set as
    ``app.services``. ``background``: the watcher's threads yield to requests (serve);
    ``insight scan`` passes False to use every core. A store or model the caller set on the
    app before (a benchmark's own) is kept."""
    s = app.settings
    if app.store is None:
        await app.open_store()
    history = ListeningHistory(s.storage.data_dir / "history.db")
    await history.open()
    mood = MoodClassifier(app.loaded)
    library = Library(app.loaded, app.stores, mood, app.nc)
    playlists = PlaylistService(s.storage.data_dir, app.loaded, app.stores, app.tasks, app.nc)
    await playlists.open()
    watcher = build_watcher(app, library, background)
    models = ModelsService(
        s, app.loaded, app.stores, app.load_model, library, watcher, app.build_model, app.use_model
    )
    app.services = services = Services(
        history=history,
        mood=mood,
        library=library,
        playlists=playlists,
        map=MapService(s.storage.data_dir, app.loaded, app.stores, app.tasks),
        models=models,
        watcher=watcher,
    )
    app.model_listeners = [mood, models]
    if app.pool is None:
        await app.load_configured_model()
    if watcher is not None:
        await watcher.open()
    if models.migrations is not None and app.pool is not None and app.nc is not None:
        # one a restart interrupted, in a serving worker (never a one-shot `insight scan`)
        models.migrations.expect_resume()
        app.spawn(models.resume_migration(), name="migration-resume")
    if app.pool is None and s.model.path is None and s.model.auto_download:
        app.spawn(download_and_load(models, app.loaded, s.model.name), name="auto-download")
    if app.nc is not None and app.js is not None:
        await start_bus_components(app, services)
    return services


def build_watcher(app: App, library: Library, background: bool) -> WatcherService | None:
    """The folder watcher (``watcher`` extra): workers always, scanning when enabled."""
    try:
        from insight.watcher.service import WatcherService
    except ImportError:  # installed without the `watcher` extra
        log.info("watcher_unavailable reason=extra_not_installed")
        return None
    from insight.watcher.files import WatcherIO

    io = WatcherIO(app.loaded, app.stores, library)
    return WatcherService(app.settings, io, background=background)


async def start_bus_components(app: App, services: Services) -> None:
    """JetStream streams and buckets, then the consumers of the bus (a connected worker)."""
    from insight.bus.streams import ensure_streams
    from insight.ingest.events import EventConsumers
    from insight.ingest.sessions import SessionManager
    from insight.observability import MetricsCollector

    assert app.nc is not None and app.js is not None
    s = app.settings
    await ensure_streams(app.js, s.nats.replicas)
    services.sessions = SessionManager(
        s.stream,
        s.audio,
        app.loaded,
        app.stores,
        services.library,
        app.nc,
        app.js,
        app.worker_id,
        replicas=s.nats.replicas,
    )
    await services.sessions.start()
    services.events = EventConsumers(
        app.nc,
        app.js,
        app.instance_id,
        app.loaded,
        app.stores,
        services.library,
        services.history,
        replicas=s.nats.replicas,
    )
    await services.events.start()
    services.metrics = await MetricsCollector(app.stores, app.js, app.instance_id).start()
    from insight.scale.setup import start_remote

    services.scale = await start_remote(
        s, app.loaded, app.nc, app.js, app.worker_id, services.watcher
    )


async def stop(app: App) -> None:
    """Stop what ``start`` started, in reverse order; safe after a partial start."""
    services = app.built_services
    if services is not None:
        for component in (
            *reversed(services.scale),
            services.metrics,
            services.events,
            services.sessions,
        ):
            if component is not None:
                with contextlib.suppress(Exception):
                    await component.stop()
    await app.tasks.close()
    if services is not None:
        await services.models.close()  # a migration stops before the watcher drops its files
        if services.watcher is not None:
            await services.watcher.close()
        await services.playlists.close()
        await services.history.close()
    if app.pool is not None:
        await app.pool.close()
    if app.spaces is not None:
        await app.spaces.close()  # every open model space, the current one too
    elif app.store is not None:
        await app.store.close()


async def download_and_load(models: ModelsService, loaded: ModelSlot, name: str) -> None:
    """First start with no model: fetch the configured one in the background, then load it."""
    try:
        started = models.start_download(name)
        if started.download_id is not None:
            loaded.error = f"model {name} is downloading (GET /api/v1/models/downloads)"
            job = await models.downloads.wait(started.download_id)
            if job.error:
                loaded.error = f"download of {name} failed: {job.error.rstrip('.')}. {MODEL_HINT}"
                return
        await models.load(name)
    except Exception as exc:
        loaded.error = f"automatic download of {name} failed: {exc}. {MODEL_HINT}"
        log.warning("auto_download_failed model=%s error=%s", name, exc)
