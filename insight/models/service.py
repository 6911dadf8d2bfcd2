"""Models of one worker: status per model, downloads, hot swap, stale vectors, re-embedding.

Every stored point's payload carries ``model_id``, the model that made its vector. After a
swap to another model, points with a different ``model_id`` are *stale*: ``stale_count``
reports them (``/status``, ``/storage/stats``) and ``reembed`` rebuilds them: text vectors at
once from the stored metadata, audio vectors by re-analysing the files the folder watcher knows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from insight.errors import BadRequest, Conflict, NotFound
from insight.inference.model_dir import local_model_id
from insight.models.download import (
    DownloadManager,
    cached_model_dir,
    cached_model_ids,
    cached_size,
    delete_cached,
)
from insight.models.migration import Migration, text_item
from insight.models.registry import KNOWN_MODELS, known_model, validate_model_id
from insight.models.staging import Migrations
from insight.schemas import (
    DownloadResponse,
    DownloadStatus,
    ModelActionResponse,
    ModelDetail,
    ModelsResponse,
    ModelStatus,
    ReembedResponse,
)
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT, scroll_pages
from insight.storage.where import where

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from insight.config import Settings
    from insight.library import Library
    from insight.models.staging import BuildModel, UseModel
    from insight.state import ModelSlot, StoreSlot
    from insight.watcher.service import WatcherService

    LoadModel = Callable[[Path, str], Awaitable[None]]

log = logging.getLogger("insight.models")

STALE_TTL_S = 5.0
REEMBED_BATCH = 64


@dataclass
class StaleScan:
    """Stale points of the store, by collection."""

    text: list[Any] = field(default_factory=list)
    audio: list[Any] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.text) + len(self.audio)


class ModelsService:
    def __init__(
        self,
        settings: Settings,
        loaded: ModelSlot,
        stores: StoreSlot,
        load_model: LoadModel,
        library: Library,
        watcher: WatcherService | None = None,
        build_model: BuildModel | None = None,
        use_model: UseModel | None = None,
    ) -> None:
        """``load_model(dir, id)`` loads or hot-swaps the model (the app's; it tells the
        model listeners); ``watcher`` re-analyses audio files for ``reembed``;
        ``build_model`` + ``use_model`` (its two halves) let ``load`` stage a migration."""
        self.settings, self.loaded, self.stores = settings, loaded, stores
        self.load_model, self.library, self.watcher = load_model, library, watcher
        s = settings
        self.models_dir = s.models_dir
        self.downloads = DownloadManager(
            self.models_dir, s.model.hub_endpoint, s.model.quantized is True
        )
        self._load_lock = asyncio.Lock()
        self._stale: tuple[float, str | None, int] | None = None
        self.migrations: Migrations | None = None
        if build_model is not None and use_model is not None:
            self.migrations = Migrations(
                settings, loaded, stores, library, watcher, build_model, use_model
            )

    # --- status -----------------------------------------------------------------------

    @property
    def current_id(self) -> str | None:
        return self.loaded.model_id

    @property
    def local_id(self) -> str | None:
        """Id of the INSIGHT_MODEL__PATH folder (``local/<folder>`` unless NAME is set too)."""
        return local_model_id(self.settings.model)

    def model_dir(self, model_id: str) -> Path | None:
        """Where ``model_id`` is on disk: the INSIGHT_MODEL__PATH folder for its own id, the
        verified hub cache for any other (a hub id never means the local folder)."""
        path = self.settings.model.path
        if model_id == self.local_id and path is not None:
            return path if path.is_dir() else None
        pool = self.loaded.pool
        if pool is not None and pool.model.model_id == model_id:
            return pool.model.model_dir
        return cached_model_dir(model_id, self.models_dir)

    def status_of(self, model_id: str) -> ModelStatus:
        if model_id == self.current_id:
            return ModelStatus.LOADED
        if self.downloads.active_for(model_id) is not None:
            return ModelStatus.DOWNLOADING
        if self.model_dir(model_id) is not None:
            return ModelStatus.DOWNLOADED
        last = self.downloads.last_for(model_id)
        if last is not None and last.status == DownloadStatus.FAILED:
            return ModelStatus.FAILED
        return ModelStatus.NOT_DOWNLOADED

    def detail(self, model_id: str) -> ModelDetail:
        known = known_model(model_id)
        status = self.status_of(model_id)
        path = (
            self.model_dir(model_id)
            if status in (ModelStatus.LOADED, ModelStatus.DOWNLOADED)
            else None
        )
        size = cached_size(model_id, self.models_dir) if path is not None else None
        if path is not None and size is None:
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        last = self.downloads.last_for(model_id)
        note = known.note if known else None
        if status == ModelStatus.FAILED and last is not None:
            note = last.error
        is_current = status == ModelStatus.LOADED
        local = model_id == self.local_id
        description = known.description if known else None
        if local:
            description = f"Local model folder {self.settings.model.path} (INSIGHT_MODEL__PATH)"
        return ModelDetail(
            model_id=model_id,
            name=known.name if known else model_id,
            description=description,
            status=status,
            estimated_size_bytes=known.estimated_size_bytes if known else None,
            actual_size_bytes=size,
            cache_path=str(path) if path is not None else None,
            recommended=known.recommended if known else False,
            is_current=is_current,
            device=self.loaded.pool.model.device if is_current and self.loaded.pool else None,
            license=known.license if known else None,
            onnx_on_hub=known.onnx_on_hub if known else True,
            note=note,
        )

    def list_models(self) -> ModelsResponse:
        ids = [m.model_id for m in KNOWN_MODELS]
        extra = [*cached_model_ids(self.models_dir), *(j.model_id for j in self.downloads.list())]
        if self.current_id:
            extra.append(self.current_id)
        if self.local_id:
            extra.append(self.local_id)
        ids += sorted({i for i in extra if i not in ids})
        return ModelsResponse(models=[self.detail(i) for i in ids], current_model=self.current_id)

    # --- actions ------------------------------------------------------------------------

    def start_download(self, model_id: str) -> DownloadResponse:
        validate_model_id(model_id)
        if model_id == self.local_id and self.model_dir(model_id) is not None:
            return DownloadResponse(
                model_id=model_id,
                message="Model is the local folder INSIGHT_MODEL__PATH: nothing to download",
                already_exists=True,
            )
        known = known_model(model_id)
        if known is not None and not known.onnx_on_hub:
            raise BadRequest(
                known.note or f"{model_id} has no ONNX files on the hub", code="NO_ONNX"
            )
        if cached_model_dir(model_id, self.models_dir) is not None:
            return DownloadResponse(
                model_id=model_id, message="Model already downloaded", already_exists=True
            )
        job = self.downloads.start(model_id)
        return DownloadResponse(
            download_id=job.download_id,
            model_id=model_id,
            message="Download started",
            already_exists=False,
        )

    async def load(self, model_id: str, switch: str = "now") -> ModelActionResponse:
        """``now``: hot swap, requests in flight finish on the old model, new batches use the
        new one. ``migrate``: a staged switch when the serving space holds vectors."""
        validate_model_id(model_id)
        async with self._load_lock:
            running = self.migrations.running if self.migrations is not None else None
            if running is not None and running.model_id == model_id and switch == "migrate":
                return self._migrating(running)
            if running is not None and self.migrations is not None:
                await self.migrations.cancel()  # another model, or now: this one stops
            if model_id == self.current_id:
                return ModelActionResponse(
                    model_id=model_id,
                    success=True,
                    message="Model already loaded",
                    stale_vectors=await self.stale_count(),
                )
            path = self.model_dir(model_id)
            if path is None:
                raise BadRequest(
                    f"model {model_id} is not downloaded: POST /api/v1/models/download first "
                    "(or `insight models download`)",
                    code="MODEL_NOT_DOWNLOADED",
                )
            if switch == "migrate" and self.migrations and await self.migrations.needed():
                migration = await self.migrations.begin(path, model_id)  # None: switched
                if migration is not None:
                    return self._migrating(migration)
            else:
                await self.load_model(path, model_id)
        self._stale = None
        stale = await self.stale_count()
        message = "Model loaded successfully"
        if stale:
            message += (
                f"; {stale} stored vectors were made by another model: "
                "re-embed them with POST /api/v1/models/reembed (or `insight reembed`)"
            )
        return ModelActionResponse(
            model_id=model_id, success=True, message=message, stale_vectors=stale
        )

    def _migrating(self, m: Migration) -> ModelActionResponse:
        return ModelActionResponse(
            model_id=m.model_id,
            success=True,
            message=(
                f"Migrating to {m.model_id}: {m.from_model_id} keeps serving from its space "
                "until the new space is filled (GET /api/v1/models/migration; both models are "
                "in memory meanwhile), then the switch is made"
            ),
            migration=m.status(),
        )

    def delete(self, model_id: str) -> ModelActionResponse:
        validate_model_id(model_id)
        if model_id == self.current_id:
            raise Conflict(f"model {model_id} is loaded: load another model before deleting it")
        running = self.migrations.running if self.migrations is not None else None
        if running is not None and running.model_id == model_id:
            raise Conflict(f"a migration to {model_id} is running: DELETE /models/migration first")
        if self.downloads.active_for(model_id) is not None:
            raise Conflict(f"model {model_id} is being downloaded: cancel the download first")
        if model_id == self.local_id:
            raise BadRequest(
                f"model {model_id} is the local folder {self.settings.model.path} "
                "(INSIGHT_MODEL__PATH): insight never deletes it",
                code="LOCAL_MODEL",
            )
        if not delete_cached(model_id, self.models_dir):
            raise NotFound(f"model {model_id} is not cached")
        return ModelActionResponse(model_id=model_id, success=True, message="Model deleted")

    # --- stale vectors ------------------------------------------------------------------

    async def scan_stale(self) -> StaleScan:
        """Every point whose ``model_id`` is not the loaded model's (payloads only)."""
        out = StaleScan()
        current = self.current_id
        store = self.stores.store
        if current is None or store is None:
            return out
        for collection, bucket in ((TRACKS_TEXT, out.text), (TRACKS_AUDIO, out.audio)):
            async for points in scroll_pages(store, collection, limit=512):
                bucket.extend(p for p in points if p.payload.get("model_id") != current)
            if self.stores.spaces is not None:  # tracks other model spaces have and this one lacks
                bucket.extend(await self.stores.spaces.missing(collection))
        return out

    async def stale_count(self) -> int:
        """Stored text + audio vectors not made by the loaded model (cached a few seconds)."""
        now, current = time.monotonic(), self.current_id
        if (
            self._stale is not None
            and self._stale[1] == current
            and now - self._stale[0] < STALE_TTL_S
        ):
            return self._stale[2]
        count = await self._count_stale()
        self._stale = (now, current, count)
        return count

    async def _count_stale(self) -> int:
        """Points minus the loaded model's points, per collection: counted from the store's
        indexes, no payload is read (``/status`` used to scroll every payload for this)."""
        current, store = self.current_id, self.stores.store
        if current is None or store is None:
            return 0
        mine = where(model_id=current)
        total = 0
        for collection in (TRACKS_TEXT, TRACKS_AUDIO):
            total += max(0, await store.count(collection) - await store.count(collection, mine))
            if self.stores.spaces is not None:  # tracks other model spaces have and this one lacks
                total += len(await self.stores.spaces.missing(collection))
        return total

    async def on_model_loaded(self, model: Any) -> None:
        self._stale = None

    async def reembed(self, drop_unrecoverable: bool = False) -> ReembedResponse:
        """Text vectors now; audio by re-analysing known files (queued on the watcher)."""
        self.loaded.require_pool()
        self.stores.require_store()
        library = self.library
        stale = await self.scan_stale()
        text_done = 0
        for start in range(0, len(stale.text), REEMBED_BATCH):
            items = [text_item(p) for p in stale.text[start : start + REEMBED_BATCH]]
            done = await library.ingest_text(items, skip_unchanged=False)
            text_done += sum(1 for d in done if d.text_stored)
        audio_ids = {p.key for p in stale.audio}
        watcher = self.watcher
        queued = await watcher.reanalyze(audio_ids) if watcher is not None and audio_ids else set()
        dropped = 0
        lost = sorted(audio_ids - set(queued))
        if drop_unrecoverable and lost:
            gone = set(await self.stores.require_store().delete(TRACKS_AUDIO, lost))
            if self.stores.spaces is not None:  # and where other model spaces hold them
                gone |= set(await self.stores.spaces.delete_elsewhere(TRACKS_AUDIO, lost))
            dropped = len(gone)
        self._stale = None
        remaining = await self.stale_count()
        message = f"re-embedded {text_done} text vectors"
        if queued:
            message += f"; {len(queued)} audio files queued for re-analysis by the folder watcher"
        if lost and not dropped:
            message += (
                f"; {len(lost)} audio vectors have no known file and stay stale until "
                "the track is streamed again (drop_unrecoverable=true deletes them)"
            )
        if dropped:
            message += f"; dropped {dropped} audio vectors with no known file"
        log.info(
            "reembed text=%d audio_queued=%d dropped=%d remaining=%d",
            text_done,
            len(queued),
            dropped,
            remaining,
        )
        return ReembedResponse(
            reembedded_text=text_done,
            reembedded_audio=len(queued),
            remaining_stale=remaining,
            message=message,
            dropped_audio=dropped,
        )

    async def resume_migration(self) -> Migration | None:
        """At start, the migration ``migration.json`` records (never beside a load)."""
        if self.migrations is None:
            return None
        async with self._load_lock:
            return await self.migrations.resume(self.model_dir)

    async def close(self) -> None:
        if self.migrations is not None:
            await self.migrations.close()
        await self.downloads.close()
