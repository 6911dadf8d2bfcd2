"""The worker's state: settings, model pool, store and the services built on them.

The only mutable state of a worker lives here, built by ``cli.py``; handlers receive it as
their first argument. Missing parts (no model, store down) are reported, never fatal: the
worker starts, answers health as ``degraded`` and says how to fix it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insight import __version__
from insight.config import Settings
from insight.errors import MODEL_HINT, ModelNotLoaded, StorageNotReady
from insight.schemas import SearchFilter
from insight.tasks import cancel_and_wait

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext

    from insight.inference.pool import InferencePool
    from insight.storage.base import VectorStore
    from insight.storage.spaces import Spaces

log = logging.getLogger("insight.app")


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = __version__
        self.worker_id = uuid.uuid4().hex[:12]
        self.started_at = time.time()
        self.pool: InferencePool | None = None
        self.model_error: str | None = MODEL_HINT
        self.store: VectorStore | None = None  # the loaded model's space
        self.spaces: Spaces | None = None
        self.store_error: str | None = "storage not opened yet"
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.services: dict[str, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        from insight.history import ListeningHistory
        from insight.library import Library
        from insight.models_service import ModelsService
        from insight.mood import create as create_mood
        from insight.playlists.service import get_playlists

        await self.open_store()
        history = ListeningHistory(self.settings.storage.data_dir / "history.db")
        await history.open()
        self.services["history"] = history
        self.services["library"] = Library(self)
        await get_playlists(self)
        await create_mood(self)  # before the model: its load hook caches the prompts
        await self.load_configured_model()
        self.services["models"] = ModelsService(self)
        if (
            self.pool is None
            and self.settings.model.path is None
            and self.settings.model.auto_download
        ):
            self.spawn(self.download_and_load(), name="auto-download")
        await self.start_watcher()

    async def download_and_load(self) -> None:
        """First start with no model: fetch the configured one in the background, then load it."""
        models = self.services["models"]
        name = self.settings.model.name
        try:
            started = models.start_download(name)
            if started.download_id is not None:
                self.model_error = f"model {name} is downloading (GET /api/v1/models/downloads)"
                job = await models.downloads.wait(started.download_id)
                if job.error:
                    self.model_error = (
                        f"download of {name} failed: {job.error.rstrip('.')}. {MODEL_HINT}"
                    )
                    return
            await models.load(name)
        except Exception as exc:
            self.model_error = f"automatic download of {name} failed: {exc}. {MODEL_HINT}"
            log.warning("auto_download_failed model=%s error=%s", name, exc)

    async def start_watcher(self) -> None:
        """The folder watcher (``watcher`` extra): workers always, scanning when enabled."""
        try:
            from insight.watcher.service import WatcherService
        except ImportError:  # installed without the `watcher` extra
            log.info("watcher_unavailable reason=extra_not_installed")
            return
        watcher = WatcherService(self)
        self.services["watcher"] = watcher
        await watcher.open()

    async def close(self) -> None:
        await cancel_and_wait(list(self._tasks))
        for svc in reversed(list(self.services.values())):
            closer = getattr(svc, "close", None)
            if closer is not None:
                await closer()
        if self.pool is not None:
            await self.pool.close()
        if self.spaces is not None:
            await self.spaces.close()  # every open model space, the current one too

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a background task owned by the app (cancelled on close, errors logged)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def _done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("task %s failed: %r", name, t.exception())

        task.add_done_callback(_done)
        return task

    @cached_property
    def instance_id(self) -> str:
        """A stable id of this data dir (kept in ``instance-id``), unlike ``worker_id``."""
        path = self.settings.storage.data_dir / "instance-id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(uuid.uuid4().hex[:12])
            return path.read_text().strip()

    # --- storage -----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """The loaded model's dimension, else the open space's."""
        if self.pool is not None:
            return self.pool.model.dim
        return self.store.dim if self.store is not None else 512

    async def open_store(self) -> None:
        """The model space used last (no model is known yet: loading one may switch spaces)."""
        if not self.settings.storage.enabled:
            self.store_error = "storage disabled (INSIGHT_STORAGE__ENABLED=false)"
            return
        from insight.storage.spaces import Spaces

        self.spaces = Spaces(self.settings.storage)
        try:
            store = await self.spaces.open_initial()
        except Exception as exc:
            self.store_error = f"storage not ready: {exc}"
            log.warning("storage_unavailable mode=%s error=%s", self.settings.storage.mode, exc)
            return
        self.store, self.store_error = store, None
        log.info("storage_ready mode=%s", store.mode)

    def require_store(self) -> VectorStore:
        if self.store is None:
            raise StorageNotReady(self.store_error or "storage not ready")
        return self.store

    # --- model -------------------------------------------------------------------------

    def configured_model_dir(self) -> Path | None:
        """A local folder for the configured model: INSIGHT_MODEL__PATH or the hub cache."""
        if self.settings.model.path is not None:
            return self.settings.model.path
        from insight.inference.download import cached_model_dir

        return cached_model_dir(self.settings.model.name, self.settings.models_dir)

    def configured_model_id(self) -> str:
        """The id recorded with every vector: the configured name, or for a local folder given
        without a name, ``local/<folder>`` (not the default hub id it may not be)."""
        from insight.inference.model_dir import local_model_id

        return local_model_id(self.settings.model) or self.settings.model.name

    async def load_configured_model(self) -> None:
        model_dir = self.configured_model_dir()
        if model_dir is None or not model_dir.is_dir():
            where = f"folder {model_dir} does not exist" if model_dir else "is not downloaded"
            self.model_error = f"model {self.settings.model.name}: {where}. {MODEL_HINT}"
            log.warning("model_missing name=%s", self.settings.model.name)
            return
        try:
            await self.load_model(model_dir, self.configured_model_id())
        except Exception as exc:
            self.model_error = f"model could not be loaded from {model_dir}: {exc}. {MODEL_HINT}"
            log.warning("model_load_failed dir=%s error=%s", model_dir, exc)

    async def load_model(self, model_dir: Path, model_id: str | None = None) -> None:
        """Load (or hot-swap to) the model in ``model_dir``."""
        from insight.inference.families import load_model
        from insight.inference.pool import InferencePool

        model = await asyncio.to_thread(
            load_model,
            model_dir,
            self.settings.model,
            model_id or self.settings.model.name,
            self.settings.storage.data_dir / "graphs",
        )
        await asyncio.to_thread(model.embed_text, ["warm up"])  # sessions built before use
        store = None
        if self.spaces is not None and self.store is not None:
            # the model's own collections, made with its dimension (the old space stays)
            store = await self.spaces.for_model(model.model_id, model.dim)
        if self.pool is None:
            self.pool = InferencePool(model, self.settings.inference)
            await self.pool.start()
        else:
            await self.pool.swap(model)
        if store is not None:
            self.store = store
        self.model_error = None
        for svc in self.services.values():
            hook = getattr(svc, "on_model_loaded", None)
            if hook is not None:
                await hook(model)
        log.info(
            "model_loaded id=%s family=%s device=%s dim=%d",
            model.model_id,
            model.family,
            model.device,
            model.dim,
        )

    def in_model_space(self, f: SearchFilter | None) -> SearchFilter | None:
        """``f`` limited to vectors of the loaded model: spaces of two models never mix."""
        if self.pool is None or (f is not None and f.model_id is not None):
            return f
        base = f.model_copy() if f is not None else SearchFilter()
        base.model_id = self.pool.model.model_id
        return base

    def require_pool(self) -> InferencePool:
        if self.pool is None:
            raise ModelNotLoaded(self.model_error or MODEL_HINT)
        return self.pool
