"""The worker's state: settings, model pool, store, bus connection and the typed services.

The only mutable state of a worker lives here; ``insight.compose`` builds its services and
starts and stops them; handlers receive the app as their first argument and reach services
as ``app.services.<name>``. Services themselves never get the app: only the slots, settings
and other services they use. Missing parts (no model, store down) are reported, never fatal:
the worker starts, answers health as ``degraded`` and says how to fix it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Coroutine
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insight import __version__
from insight.config import Settings
from insight.errors import MODEL_HINT
from insight.schemas import SearchFilter
from insight.state import ModelListener, ModelSlot, StoreSlot
from insight.tasks import TaskSet

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.js import JetStreamContext

    from insight.inference.model import EmbeddingModel
    from insight.inference.pool import InferencePool
    from insight.services import Services
    from insight.storage.base import VectorStore
    from insight.storage.spaces import Spaces

log = logging.getLogger("insight.app")


def read_or_create_id(path: Path) -> str:
    """The id in ``path``, made at first use. Processes that start together on a new shared
    data dir (compose's services share a volume) get one id: the file appears whole, by a
    hard link of a written file, and the first link wins."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:6]}")
    tmp.write_text(uuid.uuid4().hex[:12])
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:  # a filesystem without hard links
        if not path.exists():
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.version = __version__
        self.worker_id = uuid.uuid4().hex[:12]
        self.started_at = time.time()
        self.loaded = ModelSlot()  # pool + why none is loaded; read through .pool/.model_error
        self.stores = StoreSlot()  # store + why it is not open; read through .store/.store_error
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.tasks = TaskSet()
        self.model_listeners: list[ModelListener] = []  # told after every load, in this order
        self._services: Services | None = None

    # --- shared state (services hold the slots, not the app) -----------------------------

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("services are not built yet: insight.compose.start(app) builds them")
        return self._services

    @services.setter
    def services(self, services: Services) -> None:
        self._services = services

    @property
    def built_services(self) -> Services | None:
        """The services, or None before ``compose.start`` built them (a failed start)."""
        return self._services

    @property
    def pool(self) -> InferencePool | None:
        return self.loaded.pool

    @pool.setter
    def pool(self, pool: InferencePool | None) -> None:
        self.loaded.pool = pool

    @property
    def model_error(self) -> str | None:
        return self.loaded.error

    @model_error.setter
    def model_error(self, error: str | None) -> None:
        self.loaded.error = error

    @property
    def store(self) -> VectorStore | None:
        return self.stores.store

    @store.setter
    def store(self, store: VectorStore | None) -> None:
        self.stores.store = store

    @property
    def spaces(self) -> Spaces | None:
        """Every model space's collections opened so far; ``store`` is the loaded model's."""
        return self.stores.spaces

    @spaces.setter
    def spaces(self, spaces: Spaces | None) -> None:
        self.stores.spaces = spaces

    @property
    def store_error(self) -> str | None:
        return self.stores.error

    @store_error.setter
    def store_error(self, error: str | None) -> None:
        self.stores.error = error

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a background task owned by the app (cancelled at stop, errors logged)."""
        return self.tasks.spawn(coro, name)

    @cached_property
    def instance_id(self) -> str:
        """A stable id of this data dir (kept in ``instance-id``), unlike ``worker_id``."""
        return read_or_create_id(self.settings.storage.data_dir / "instance-id")

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
        return self.stores.require_store()

    # --- model -------------------------------------------------------------------------

    def configured_model_dir(self) -> Path | None:
        """A local folder for the configured model: INSIGHT_MODEL__PATH or the hub cache."""
        if self.settings.model.path is not None:
            return self.settings.model.path
        from insight.models.download import cached_model_dir

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
        await self.use_model(await self.build_model(model_dir, model_id))

    async def build_model(self, model_dir: Path, model_id: str | None = None) -> EmbeddingModel:
        """The model in ``model_dir``, loaded and warm, not used yet."""
        from insight.inference.families import load_model

        model = await asyncio.to_thread(
            load_model,
            model_dir,
            self.settings.model,
            model_id or self.settings.model.name,
            self.settings.storage.data_dir / "graphs",
        )
        await asyncio.to_thread(model.embed_text, ["warm up"])  # sessions built before use
        return model

    async def use_model(self, model: EmbeddingModel) -> None:
        """Serve ``model`` and its space from now on (hot swap; the listeners are told)."""
        from insight.inference.pool import InferencePool

        spaces = self.spaces if self.store is not None else None
        if spaces is not None:
            # the model's own collections, made with its dimension (the old space stays); made
            # current only after the swap: the space ``self.store`` serves is never droppable
            await spaces.prepare(model.model_id, model.dim)
        if self.pool is None:
            self.pool = InferencePool(model, self.settings.inference)
            await self.pool.start()
        else:
            await self.pool.swap(model)
        if spaces is not None:
            self.store = await spaces.for_model(model.model_id, model.dim)
        self.model_error = None
        for listener in self.model_listeners:
            await listener.on_model_loaded(model)
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
        return self.loaded.require_pool()
