"""File store: one usearch HNSW index per collection + one SQLite database (WAL).

SQLite is the truth: per collection it holds key → label (the usearch key, a slot), the payload
(JSON), the float32 vector and the write sequence ``seq`` of the last write of that row. An
upsert is committed (``synchronous=FULL``) before it touches the index, so a write is durable
when ``upsert`` returns.

The usearch files are snapshots (``snapshot.py``): a background thread saves dirty indexes
(temp file + fsync + atomic rename) together with ``{name}.usearch.json`` = the last ``seq`` the
snapshot contains.
On open the snapshot is loaded and reconciled with SQLite: labels SQLite lacks are removed, rows
with ``seq`` above the snapshot's (or missing from it) are (re)added. A missing, truncated or
mismatching snapshot is rebuilt from SQLite. So after kill -9 at any moment the index holds
exactly SQLite's rows.

Concurrency: writes run one at a time on a dedicated thread (they also exclude the saver);
searches run on the default executor under the read side of a per-collection lock. usearch
itself tolerates concurrent add/remove/search; the lock guards our in-memory tables.

Here: lifecycle, the writer thread and writes. Beside it: ``file_sql`` (SQLite),
``file_collection`` (load/save), ``file_reads`` (get/scroll/search/count, with ``memtable``
masks and the ``file_match`` predicates), ``file_verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime  # noqa: F401  (must load before usearch: the reverse order segfaults)

from insight.errors import BadRequest, StorageNotReady
from insight.storage import file_reads as reads
from insight.storage.base import COLLECTIONS, Point, ScoredPoint, StoreStats
from insight.storage.common import check_key, check_limit, full_name
from insight.storage.file_collection import FileCollection, load_collection, save_collection
from insight.storage.file_sql import DB_NAME, connect, delete_keys, read_vectors, write_rows
from insight.storage.file_verify import verify_collection
from insight.storage.snapshot import IndexSpec
from insight.storage.where import Where
from insight.vectors import checked

log = logging.getLogger(__name__)
T = TypeVar("T")


class FileStore:
    """usearch + SQLite store under ``data_dir`` (see module docstring)."""

    mode = "file"

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        dim: int,
        prefix: str = "",
        *,
        dtype: str = "f32",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 64,
        save_interval_s: float = 30.0,
        exact_max: int = 4096,
        synchronous: str = "FULL",
    ) -> None:
        if dtype not in ("f32", "f16", "i8"):
            raise ValueError(f"dtype must be f32, f16 or i8, not {dtype!r}")
        if synchronous not in ("FULL", "NORMAL", "OFF"):
            raise ValueError(f"synchronous must be FULL, NORMAL or OFF, not {synchronous!r}")
        self.data_dir = Path(data_dir).expanduser()
        self.dim = dim
        self.prefix = prefix
        self.dtype = dtype
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self.expansion_search = expansion_search
        self._spec = IndexSpec(dim, dtype, connectivity, expansion_add, expansion_search)
        self.save_interval_s = save_interval_s
        self.exact_max = exact_max
        self.synchronous = synchronous
        # Lossy index dtypes fetch more candidates; every candidate is rescored exactly.
        self._oversample = 1 if dtype == "f32" else 2
        self._db: sqlite3.Connection | None = None
        self._colls: dict[str, FileCollection] = {}
        self._wlock = threading.Lock()  # one writer (or the saver) at a time
        self._writer: ThreadPoolExecutor | None = None
        self._saver: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock_fd: int | None = None

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_NAME

    def index_path(self, collection: str) -> Path:
        return self.data_dir / f"{full_name(self.prefix, collection)}.usearch"

    async def open(self) -> None:
        if self._db is not None:
            return
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="insight-store-write")
        try:
            await self._on_writer(self._open_sync)
        except BaseException:
            self._writer.shutdown(wait=False)
            self._writer = None
            raise
        self._stop.clear()
        self._saver = threading.Thread(
            target=self._save_loop, name="insight-store-save", daemon=True
        )
        self._saver.start()

    def _open_sync(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            lock_path = self.data_dir / (f".{self.prefix}.lock" if self.prefix else ".lock")
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StorageNotReady(f"cannot use data dir {self.data_dir}: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StorageNotReady(
                f"data dir {self.data_dir} (prefix {self.prefix!r}) is in use by another process;"
                " file mode allows one worker per data dir (use qdrant mode for several)"
            ) from None
        self._lock_fd = fd
        try:
            self._db = connect(self.db_path, self.synchronous)
            for name in COLLECTIONS:
                self._load(name)
        except sqlite3.DatabaseError as e:
            self._close_sync(save=False)
            raise StorageNotReady(f"cannot open {self.db_path}: {e}") from e
        except BaseException:
            self._close_sync(save=False)
            raise

    async def close(self) -> None:
        if self._db is None:
            return
        self._stop.set()
        if self._saver is not None:
            await asyncio.to_thread(self._saver.join)
            self._saver = None
        await self._on_writer(self._close_sync)
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def _close_sync(self, save: bool = True) -> None:
        with self._wlock:
            if save and self._db is not None:
                for coll in self._colls.values():
                    self._save_one(coll)
            if self._db is not None:
                self._db.close()
                self._db = None
            self._colls.clear()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def _load(self, logical: str) -> FileCollection:
        assert self._db is not None
        name = full_name(self.prefix, logical)
        coll = load_collection(self._db, self.db_path, self.data_dir, name, self._spec)
        self._colls[logical] = coll
        return coll

    # --- saving ---------------------------------------------------------------------------

    def _save_loop(self) -> None:
        while not self._stop.wait(self.save_interval_s):
            try:
                self.save()
            except Exception:
                log.exception("storage: background index save failed")

    def save(self) -> None:
        """Snapshot every dirty index (blocks writers, not searches). Thread-safe."""
        with self._wlock:
            for coll in list(self._colls.values()):
                self._save_one(coll)

    def _save_one(self, coll: FileCollection) -> None:
        save_collection(coll, self.data_dir, self._spec)

    # --- plumbing ---------------------------------------------------------------------------

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise StorageNotReady("file store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    def _coll(self, logical: str, create: bool = False) -> FileCollection | None:
        if self._db is None:
            raise StorageNotReady("file store is not open")
        coll = self._colls.get(logical)
        if coll is None:
            full_name(self.prefix, logical)  # validates the name
            if create:
                with self._wlock:
                    coll = self._colls.get(logical) or self._load(logical)
        return coll

    def _open_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise StorageNotReady("file store is not open")
        return self._db

    # --- writes -----------------------------------------------------------------------------

    async def upsert(self, collection: str, points: list[Point]) -> None:
        prepared: dict[str, tuple[dict[str, Any], str, np.ndarray]] = {}
        for p in points:
            key = check_key(p.key)
            if p.vector is None:
                raise BadRequest(f"point {key!r} has no vector")
            vec = checked(p.vector, self.dim)
            try:
                text = json.dumps(p.payload, ensure_ascii=False, allow_nan=False)
            except (TypeError, ValueError) as e:
                raise BadRequest(f"payload of {key!r} is not JSON-serialisable: {e}") from None
            prepared.pop(key, None)  # the last write of a key in a batch wins, in order
            prepared[key] = (json.loads(text), text, vec)
        if prepared:
            await self._on_writer(self._upsert_sync, collection, prepared)

    def _upsert_sync(
        self, logical: str, prepared: dict[str, tuple[dict[str, Any], str, np.ndarray]]
    ) -> None:
        coll = self._coll(logical, create=True)
        assert coll is not None
        with self._wlock:
            table = coll.table
            slots = [table.slot_of.get(k) for k in prepared]
            fresh = iter(table.plan_slots(sum(s is None for s in slots)))
            labels = [s if s is not None else next(fresh) for s in slots]
            seq = coll.seq
            rows = []
            for label, (key, (_, text, vec)) in zip(labels, prepared.items(), strict=True):
                seq += 1
                rows.append((coll.name, key, label, seq, text, vec.tobytes()))
            write_rows(self._open_db(), coll.name, rows, seq)
            # Durable now. Index first (new labels are invisible until the table has them).
            moved = [
                lab
                for lab, old, (_, _, vec) in zip(labels, slots, prepared.values(), strict=True)
                if old is not None and not np.array_equal(table.vectors[lab], vec)
            ]
            moved_set = set(moved)
            added = [
                (lab, vec)
                for lab, old, (_, _, vec) in zip(labels, slots, prepared.values(), strict=True)
                if old is None or lab in moved_set
            ]
            if moved:
                coll.index.remove(np.array(moved, np.uint64))
            if added:
                coll.index.add(
                    np.array([a[0] for a in added], np.uint64), np.stack([a[1] for a in added])
                )
            with coll.lock.write():
                for label, (key, (payload, _, vec)) in zip(labels, prepared.items(), strict=True):
                    table.put(label, key, payload, vec)
            coll.seq = seq
            coll.dirty = True

    async def delete(self, collection: str, keys: list[str]) -> list[str]:
        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        if not wanted:
            return []
        return await self._on_writer(self._delete_sync, collection, wanted)

    def _delete_sync(self, logical: str, keys: list[str]) -> list[str]:
        coll = self._coll(logical)
        if coll is None:
            return []
        with self._wlock:
            found = [(k, coll.table.slot_of[k]) for k in keys if k in coll.table.slot_of]
            if not found:
                return []
            delete_keys(self._open_db(), coll.name, [k for k, _ in found])
            with coll.lock.write():
                for k, _ in found:
                    coll.table.remove(k)
            coll.index.remove(np.array([s for _, s in found], np.uint64))
            coll.dirty = True
            return [k for k, _ in found]

    # --- reads ------------------------------------------------------------------------------

    async def get(
        self, collection: str, keys: list[str], with_vectors: bool = False
    ) -> list[Point]:
        return await asyncio.to_thread(self._get_sync, collection, keys, with_vectors)

    def _get_sync(self, logical: str, keys: list[str], with_vectors: bool) -> list[Point]:
        coll = self._coll(logical)
        return [] if coll is None else reads.get_points(coll, keys, with_vectors)

    async def exists(self, collection: str, key: str) -> bool:
        coll = self._coll(collection)
        return coll is not None and key in coll.table.slot_of

    async def count(self, collection: str, where: Where | None = None) -> int:
        coll = self._coll(collection)
        return 0 if coll is None else await asyncio.to_thread(reads.count_rows, coll, where)

    async def scroll(
        self,
        collection: str,
        offset: str | None = None,
        limit: int = 256,
        with_vectors: bool = False,
        where: dict[str, Any] | None = None,
    ) -> tuple[list[Point], str | None]:
        check_limit(limit)
        return await asyncio.to_thread(
            self._scroll_sync, collection, offset, limit, with_vectors, where
        )

    def _scroll_sync(
        self,
        logical: str,
        offset: str | None,
        limit: int,
        with_vectors: bool,
        where: dict[str, Any] | None,
    ) -> tuple[list[Point], str | None]:
        coll = self._coll(logical)
        if coll is None or limit == 0:
            return [], None
        return reads.scroll_points(coll, offset, limit, with_vectors, where)

    async def search(
        self,
        collection: str,
        vector: np.ndarray,
        limit: int,
        where: Where | None = None,
    ) -> list[ScoredPoint]:
        q = checked(vector, self.dim)
        check_limit(limit)
        if limit == 0:
            return []
        coll = self._coll(collection)
        if coll is None:
            return []
        args = (coll, q, limit, where, self.exact_max, self._oversample)
        now = reads.search_now(*args)  # cheap and the read lock free: no thread hop
        return now if now is not None else await asyncio.to_thread(reads.search_collection, *args)

    # --- stats and checks -------------------------------------------------------------------

    async def stats(self) -> StoreStats:
        if self._db is None:
            return StoreStats(
                mode=self.mode, connected=False, collections={}, message="file store is not open"
            )
        counts = {name: len(c.table) for name, c in self._colls.items()}
        size = 0
        for p in [self.db_path, self.db_path.with_name(DB_NAME + "-wal")] + [
            self.data_dir / f"{c.name}.usearch" for c in self._colls.values()
        ]:
            with contextlib.suppress(OSError):
                size += p.stat().st_size
        return StoreStats(mode=self.mode, connected=True, collections=counts, index_size_bytes=size)

    async def verify(self) -> list[str]:
        """Compare SQLite, the in-memory tables and the indexes; a list of disagreements."""
        return await self._on_writer(self._verify_sync)

    def _verify_sync(self) -> list[str]:
        db = self._open_db()
        problems: list[str] = []
        with self._wlock:
            for logical, coll in self._colls.items():
                rows = read_vectors(db, coll.name)
                problems += verify_collection(logical, coll, rows, self.dtype)
        return problems
