"""Starting, switching, cancelling and resuming model migrations (see migration.py).

Memory: a migration holds two models (the serving one and the next one, each with its
inference pool) until it switches; the old one is released at the switch or at cancel.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insight.errors import NotFound
from insight.inference.pool import InferencePool
from insight.models.migration import Migration
from insight.schemas.system import MigrationStatus
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from insight.config import Settings
    from insight.inference.model import EmbeddingModel
    from insight.library import Library
    from insight.state import ModelSlot, StoreSlot
    from insight.watcher.service import WatcherService

    BuildModel = Callable[[Path, str], Awaitable[EmbeddingModel]]
    UseModel = Callable[[EmbeddingModel], Awaitable[None]]

log = logging.getLogger("insight.models.migration")

STOP_WAIT_S = 30.0


class Migrations:
    """The worker's migration: at most one runs; the last one's status stays readable."""

    def __init__(
        self,
        settings: Settings,
        loaded: ModelSlot,
        stores: StoreSlot,
        library: Library,
        watcher: WatcherService | None,
        build_model: BuildModel,
        use_model: UseModel,
    ) -> None:
        self.settings, self.loaded, self.stores, self.library = settings, loaded, stores, library
        self.watcher, self.build_model, self.use_model = watcher, build_model, use_model
        self.file = MigrationFile(settings.storage.data_dir, settings.storage.collection_prefix)
        self.last: Migration | None = None
        self.resuming: dict[str, Any] | None = None  # migration.json until resume() ends
        self.resuming_since = 0.0
        self.resume_cancelled = False
        self.cancelled_resume: MigrationStatus | None = None  # what GET shows after that cancel
        self.step: Callable[[list[str]], Awaitable[None]] | None = None  # tests: mid-batch

    @property
    def running(self) -> Migration | None:
        m = self.last
        return m if m is not None and m.active else None

    def expect_resume(self) -> None:
        """At start, before requests are served: the recorded migration shows as resuming
        while its model loads again, instead of as none at all."""
        self.resuming, self.resuming_since = self.file.read(), time.time()

    def status(self, running_only: bool = False) -> MigrationStatus | None:
        """The running (or, unless ``running_only``, the last) migration, or the one about
        to resume."""
        m = self.running if running_only else self.last
        if m is not None:
            return m.status()
        saved, spaces = self.resuming, self.stores.spaces
        if saved is None:
            return None if running_only else self.cancelled_resume
        current = spaces.current if spaces is not None else None
        return MigrationStatus(
            model_id=str(saved["model_id"]),
            from_model_id=saved.get("from_model_id"),
            space=str(saved.get("space") or "default"),
            from_space=(current.key if current is not None else None) or "default",
            phase="resuming",
            started_at=int(self.resuming_since),
        )

    async def needed(self) -> bool:
        """A staged switch only pays when the serving space holds vectors."""
        store, spaces = self.stores.store, self.stores.spaces
        if store is None or spaces is None or self.loaded.pool is None:
            return False
        return bool(await store.count(TRACKS_TEXT) or await store.count(TRACKS_AUDIO))

    async def begin(
        self, path: Path, model_id: str, wanted: Callable[[], bool] = lambda: True
    ) -> Migration | None:
        """Load ``model_id`` beside the serving model and start filling its space; ``None``
        when its space is the serving one (then it was switched to at once), or when
        ``wanted()`` turned false while the model loaded (a resume cancelled meanwhile)."""
        spaces, source = self.stores.spaces, self.stores.require_store()
        assert spaces is not None and spaces.current is not None
        model = await self.build_model(path, model_id)
        if not wanted():
            return None
        key, target = await spaces.prepare(model.model_id, model.dim)
        if key == spaces.current.key:
            if wanted():
                await self.use_model(model)
            return None
        spaces.staging = key  # before anything that can fail: never dropped while it fills
        m = Migration(model, key, source, target, self.loaded, self.watcher)
        m.from_space, m.step = spaces.current.key, self.step
        try:
            pool = InferencePool(model, self.settings.inference)
            m.loaded.pool, m.loaded.error = pool, None
            await pool.start()
            await m.mood.on_model_loaded(model)
            if not wanted():  # the last check: no await from here to `self.last = m` below
                await self._release(m)
                return None
            self.file.write(model.model_id, key, m.from_model_id)
        except BaseException:
            await self._release(m)
            raise
        self.library.mirror = m
        self.last = m
        m.task = asyncio.create_task(m.run(self._switch, self._failed), name="model-migration")
        log.info(
            "migration_started model=%s space=%s from=%s (two models in memory until it ends)",
            model.model_id,
            key,
            m.from_space or "default",
        )
        return m

    async def _switch(self, m: Migration) -> None:
        """Done: the serving slot to the next model and space in one step, the old released."""
        async with self.library.gate.exclusive():  # no write between embedding and upsert
            await self.use_model(m.model)  # the serving pool swaps models; the space is current
            self.library.mirror = None
        self.file.clear()
        own, m.loaded.pool = m.loaded.pool, self.loaded.pool  # files still queued: served pool
        if own is not None and own is not self.loaded.pool:
            await own.close()

    async def cancel(self) -> MigrationStatus:
        """Stop the running migration, or the one about to resume; the old model keeps
        serving, both spaces stay."""
        m, resuming = self.running, self.status(running_only=True)
        if m is None and resuming is not None:  # its model is loading again: it never begins
            self.resuming, self.resume_cancelled = None, True
            self.file.clear()
            log.info("migration_cancelled model=%s before_resume=true", resuming.model_id)
            self.cancelled_resume = resuming.model_copy(
                update={"phase": "cancelled", "finished_at": int(time.time())}
            )
            return self.cancelled_resume
        if m is None:
            raise NotFound("no model migration is running")
        await self._stop(m, "cancelled")
        self.file.clear()
        log.info("migration_cancelled model=%s", m.model_id)
        return m.status()

    async def _stop(self, m: Migration, phase: str) -> None:
        m.stop.set()
        if self.library.mirror is m:
            self.library.mirror = None
        task = m.task
        if task is not None and not task.done():
            # the loops end at their next batch or tick: a write is never cut in half; a switch
            # under way is waited for (a next load must not run beside ``use_model``)
            await asyncio.wait({task}, timeout=None if m.phase == "switching" else STOP_WAIT_S)
            if not task.done() and m.phase != "switching":  # a batch that never ends
                task.cancel()
                await asyncio.wait({task}, timeout=STOP_WAIT_S)
        if m.active:
            m.phase, m.finished = phase, time.time()
        await self._release(m)

    async def _failed(self, m: Migration) -> None:
        """A migration that failed: the old model keeps serving, nothing is resumed."""
        self.file.clear()
        await self._release(m)

    async def _release(self, m: Migration) -> None:
        """Writes stop going to the next space, which may be dropped; its pool is closed."""
        if self.library.mirror is m:
            self.library.mirror = None
        if self.watcher is not None:  # its queued files: a next migration queues its own
            self.watcher.withdraw(m)
        spaces = self.stores.spaces
        if spaces is not None and spaces.staging == m.space:
            spaces.staging = None
        pool, m.loaded.pool = m.loaded.pool, None
        if pool is not None and pool is not self.loaded.pool:
            await pool.close()

    async def resume(self, model_dir: Callable[[str], Path | None]) -> Migration | None:
        """At start: the migration ``migration.json`` records, begun again (what the next
        space already holds is kept and skipped) when the model it started from serves;
        called under the models service's load lock (``ModelsService.resume_migration``)."""
        try:
            return await self._resume(model_dir)
        finally:
            self.resuming, self.resume_cancelled = None, False

    async def _resume(self, model_dir: Callable[[str], Path | None]) -> Migration | None:
        saved = self.file.read()
        if saved is None or self.running is not None:  # a load began one meanwhile
            return None
        model_id = str(saved["model_id"])
        if model_id == self.loaded.model_id or not await self.needed():
            self.file.clear()  # switched to it already, or nothing to move
            return None
        if saved.get("from_model_id") != self.loaded.model_id:
            log.warning(
                "migration_not_resumed model=%s reason=serving_model_changed from=%s serving=%s",
                model_id,
                saved.get("from_model_id"),
                self.loaded.model_id,
            )
            self.file.clear()
            return None
        path = model_dir(model_id)
        if path is None:
            log.warning("migration_not_resumed model=%s reason=not_downloaded", model_id)
            return None
        log.info("migration_resumed model=%s", model_id)
        return await self.begin(path, model_id, lambda: not self.resume_cancelled)

    async def close(self) -> None:
        """Shutdown: the running migration stops; ``migration.json`` stays for the restart."""
        m = self.running
        if m is not None:
            await self._stop(m, "cancelled")


class MigrationFile:
    """``migration.json``: the target of the running migration, read again at start."""

    def __init__(self, data_dir: Path, base: str = "") -> None:
        self.path = Path(data_dir) / (f"migration.{base}.json" if base else "migration.json")

    def read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("model_id"), str) else None

    def write(self, model_id: str, space: str, from_model_id: str | None) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = {"model_id": model_id, "space": space, "from_model_id": from_model_id}
        tmp.write_text(json.dumps(body))
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
