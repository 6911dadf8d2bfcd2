"""Model spaces: the collections of one model, created with that model's dimension.

A space is the three collections (``tracks_text``, ``tracks_audio``, ``taste_profiles``) under a
collection prefix of its own, ``<prefix>_m-<model slug>-<hash>-d<dim>``, in either backend, so
loading a model of another dimension never needs another data dir. The *default* space is the
unkeyed collections, the layout from before spaces: an existing data dir keeps its vectors
where they are, and a fresh one gives them to its first model. The default space belongs to
the model it was first used with (or, in an old data dir, any model that has vectors there);
every other model gets a keyed space on first load.

After a switch the old space stays as it is: switching back is instant, re-embedding reads
the tracks the new space lacks from it (``missing``), and it is deleted only on request
(``DELETE /storage/spaces/{space}``). ``spaces.json`` in the data dir records the spaces used
and the current one, so a restart opens the right space before any model is loaded. A model
migration (insight/models/migration.py) opens the next model's space with ``prepare``, beside
the current one, which serves until the switch; that space is ``staging`` meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from insight.config import StorageSettings
from insight.errors import Conflict, DimensionMismatch, NotFound
from insight.storage.base import COLLECTIONS, TRACKS_AUDIO, TRACKS_TEXT, Point, VectorStore
from insight.storage.common import full_name
from insight.storage.factory import open_store

log = logging.getLogger("insight.storage.spaces")

DEFAULT_KEY = ""  # the unkeyed collections
FALLBACK_DIM = 512  # a data dir that has never seen a model opens its default space so


@dataclass(frozen=True)
class Space:
    key: str
    dim: int
    model_id: str | None = None


def space_key(model_id: str, dim: int) -> str:
    """``m-<slug>-<6 hex>-d<dim>``: readable, unique per model id, valid in both backends."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_id.lower()).strip("-")[:32].strip("-") or "model"
    digest = hashlib.sha1(model_id.encode()).hexdigest()[:6]
    return f"m-{slug}-{digest}-d{dim}"


def space_prefix(base: str, key: str) -> str:
    """The collection prefix of space ``key`` under the configured prefix ``base``."""
    if not key:
        return base
    return f"{base}_{key}" if base else key


class Catalog:
    """``spaces.json``: the spaces this data dir has used and the current one."""

    def __init__(self, data_dir: Path, base: str) -> None:
        self.path = Path(data_dir) / (f"spaces.{base}.json" if base else "spaces.json")

    def read(self) -> tuple[str | None, dict[str, Space]]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None, {}
        spaces = {
            str(k): Space(str(k), int(v["dim"]), v.get("model_id"))
            for k, v in (data.get("spaces") or {}).items()
        }
        current = data.get("current")
        return (current if current in spaces else None), spaces

    def write(self, current: str | None, spaces: dict[str, Space]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = {"current": current, "spaces": {k: asdict(s) for k, s in spaces.items()}}
        tmp.write_text(json.dumps(body, indent=2))
        tmp.replace(self.path)


class Spaces:
    """The open spaces of one worker; ``store`` is the current one's."""

    def __init__(self, settings: StorageSettings) -> None:
        self.settings = settings
        self.base = settings.collection_prefix
        self.catalog = Catalog(settings.data_dir, self.base)
        self.current: Space | None = None
        self.staging: str | None = None  # the space a migration fills (never dropped meanwhile)
        self._open: dict[str, VectorStore] = {}
        self._lock = asyncio.Lock()  # one switch or drop at a time
        self._open_lock = asyncio.Lock()

    @property
    def store(self) -> VectorStore | None:
        return self._open.get(self.current.key) if self.current is not None else None

    async def open_initial(self) -> VectorStore:
        """Before a model is known: the space used last, else the default one."""
        current, spaces = self.catalog.read()
        space = spaces[current] if current is not None else Space(DEFAULT_KEY, FALLBACK_DIM)
        self.current = space
        return await self._open_space(space.key, space.dim)

    async def for_model(self, model_id: str, dim: int) -> VectorStore:
        """The space of ``model_id`` (created with ``dim`` when new), made current."""
        async with self._lock:
            key, store = await self._resolve(model_id, dim, make_current=True)
            if self.staging == key:
                self.staging = None
            log.info("model_space key=%s dim=%d model=%s", key or "default", dim, model_id)
            return store

    async def prepare(self, model_id: str, dim: int) -> tuple[str, VectorStore]:
        """The space of ``model_id`` opened (and recorded) beside the current one, which stays
        current: what a migration fills before the switch (see insight/models/migration.py)."""
        async with self._lock:
            return await self._resolve(model_id, dim, make_current=False)

    async def _resolve(
        self, model_id: str, dim: int, make_current: bool
    ) -> tuple[str, VectorStore]:
        current, spaces = self.catalog.read()
        key = space_key(model_id, dim)
        store = None
        if key not in spaces:
            store = await self._adopt_default(model_id, dim, spaces.get(DEFAULT_KEY))
        if store is not None:
            key = DEFAULT_KEY
        else:
            store = await self._open_space(key, dim)
        spaces[key] = Space(key, dim, model_id)
        if make_current:
            current = key
            self.current = spaces[key]
        elif self.current is not None:
            current = self.current.key
        self.catalog.write(current, spaces)
        return key, store

    async def _adopt_default(
        self, model_id: str, dim: int, record: Space | None
    ) -> VectorStore | None:
        """The default space when ``model_id`` may have it: recorded as its own, or (no record:
        an old or fresh data dir) empty or holding vectors of this model."""
        if record is not None and record.model_id is not None:
            if record.model_id != model_id or record.dim != dim:
                return None
            return await self._open_space(DEFAULT_KEY, dim)
        opened = self._open.get(DEFAULT_KEY)
        if opened is not None and opened.dim != dim:
            if not await _empty(opened):
                return None
            await self._drop_open(DEFAULT_KEY)  # an empty fallback: made again with ``dim``
        try:
            store = await self._open_space(DEFAULT_KEY, dim)
        except DimensionMismatch:
            return None
        if await _empty(store) or await _holds(store, model_id):
            return store
        if self.current is None or self.current.key != DEFAULT_KEY:
            await self._close(DEFAULT_KEY)
        return None

    async def _open_space(self, key: str, dim: int) -> VectorStore:
        async with self._open_lock:  # two opens of one file space would fight over its lock
            store = self._open.get(key)
            if store is not None and store.dim == dim:
                return store
            if store is not None:
                await self._close(key)
            store = await open_store(self.settings, dim, space_prefix(self.base, key))
            self._open[key] = store
            return store

    async def _close(self, key: str) -> None:
        store = self._open.pop(key, None)
        if store is not None:
            await store.close()

    async def _drop_open(self, key: str) -> None:
        store = self._open.get(key)
        if store is None:
            return
        drop = getattr(store, "drop_collections", None)
        if drop is not None:  # qdrant: deleted through the open client
            await drop()
        await self._close(key)
        if drop is None:  # file mode: its rows and snapshots, once it is closed
            await asyncio.to_thread(self._drop_files, key)

    def _drop_files(self, key: str) -> list[str]:
        from insight.storage.file_drop import drop_file_collections

        prefix = space_prefix(self.base, key)
        names = [full_name(prefix, c) for c in COLLECTIONS]
        return drop_file_collections(self.settings.data_dir, prefix, names)

    # --- the other spaces --------------------------------------------------------------

    def recorded(self) -> dict[str, Space]:
        return self.catalog.read()[1]

    async def others(self) -> list[VectorStore]:
        """The stores of every recorded space but the current one (opened when needed)."""
        out = []
        for key, space in self.recorded().items():
            if self.current is not None and key == self.current.key:
                continue
            try:
                out.append(await self._open_space(key, space.dim))
            except Exception as exc:  # an unreadable old space must not stop the current one
                log.warning("space_unavailable key=%s error=%s", key or "default", exc)
        return out

    async def missing(self, collection: str) -> list[Point]:
        """Points of the other spaces whose track the current space lacks (one per key):
        what re-embedding into the current space still has to do."""
        store = self.store
        if store is None:
            return []
        seen: set[str] = set()
        out: list[Point] = []
        for other in await self.others():
            offset: str | None = None
            while True:
                page, offset = await other.scroll(collection, offset, 512)
                keys = [p.key for p in page if p.key not in seen]
                have = {p.key for p in await store.get(collection, keys)} if keys else set()
                for p in page:
                    if p.key not in seen and p.key not in have:
                        seen.add(p.key)
                        out.append(p)
                if offset is None or not page:
                    break
        return out

    async def delete_elsewhere(self, collection: str, keys: list[str]) -> list[str]:
        """Delete ``keys`` from every space but the current one (vectors that re-embedding
        can never rebuild, dropped on request); the keys that existed somewhere."""
        gone: set[str] = set()
        for other in await self.others():
            gone.update(await other.delete(collection, keys))
        return sorted(gone)

    async def describe(self) -> list[dict[str, Any]]:
        """Every recorded space: key, dim, model, vector counts, current or not."""
        out = []
        for key, space in sorted(self.recorded().items()):
            store = await self._open_space(key, space.dim)
            counts = {c: await store.count(c) for c in COLLECTIONS}
            current = self.current is not None and self.current.key == key
            extra = {"counts": counts, "current": current, "migrating": key == self.staging}
            out.append(asdict(space) | extra)
        return out

    async def drop(self, key: str) -> Space:
        """Delete the collections of space ``key`` (never the current one)."""
        async with self._lock:
            current, spaces = self.catalog.read()
            space = spaces.get(key)
            if space is None:
                known = ", ".join(repr(k) for k in spaces) or "none"
                raise NotFound(f"no model space {key!r} (known: {known})")
            if self.current is not None and key == self.current.key:
                name = key or "default"
                raise Conflict(f"space {name!r} is the loaded model's: load another model first")
            if key == self.staging:
                raise Conflict(f"space {key!r} is being filled by a migration: cancel it first")
            await self._open_space(key, space.dim)
            await self._drop_open(key)
            del spaces[key]
            self.catalog.write(current, spaces)
            log.info("model_space_dropped key=%s dim=%d", key or "default", space.dim)
            return space

    async def close(self) -> None:
        for key in list(self._open):
            await self._close(key)


async def _empty(store: VectorStore) -> bool:
    for c in COLLECTIONS:
        if await store.count(c):
            return False
    return True


async def _holds(store: VectorStore, model_id: str) -> bool:
    for c in (TRACKS_TEXT, TRACKS_AUDIO):
        page, _ = await store.scroll(c, None, 1, False, {"model_id": model_id})
        if page:
            return True
    return False
