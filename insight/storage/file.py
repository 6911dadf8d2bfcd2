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
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime  # noqa: F401  (must load before usearch: the reverse order segfaults)
from usearch.index import Index

from insight.errors import BadRequest, StorageNotReady
from insight.schemas import SearchFilter
from insight.storage.base import COLLECTIONS, Point, ScoredPoint, StoreStats
from insight.storage.common import check_key, check_limit, check_vector, full_name
from insight.storage.filters import criteria, matches, where_matches
from insight.storage.memtable import MemTable
from insight.storage.plan import ann_depth, prefer_scan
from insight.storage.rwlock import RWLock
from insight.storage.snapshot import IndexSpec, load_snapshot, save_snapshot

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_NAME = "insight.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    label INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    payload TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (collection, key)
);
CREATE UNIQUE INDEX IF NOT EXISTS points_label ON points (collection, label);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
"""
_UPSERT = """
INSERT INTO points (collection, key, label, seq, payload, vector) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (collection, key) DO UPDATE SET
    label = excluded.label, seq = excluded.seq, payload = excluded.payload,
    vector = excluded.vector
"""
_SET_META = "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v"


class _Collection:
    def __init__(self, name: str, table: MemTable, index: Index, seq: int) -> None:
        self.name = name
        self.table = table
        self.index = index
        self.seq = seq  # last write applied to index and table
        self.saved_seq = -1  # last write contained in the saved snapshot
        self.dirty = False
        self.lock = RWLock()


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
        self._colls: dict[str, _Collection] = {}
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
            db = sqlite3.connect(
                self.db_path, isolation_level=None, check_same_thread=False, timeout=30
            )
            # 16 KiB pages hold 7 rows of a 512-d vector (4 KiB pages: one, half empty); only
            # takes effect when the file is created.
            db.execute("PRAGMA page_size=16384")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.executescript(_SCHEMA)
            self._db = db
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

    # --- loading and recovery ------------------------------------------------------------

    def _load(self, logical: str) -> _Collection:
        """Read a collection from SQLite, then load + reconcile (or rebuild) its index."""
        assert self._db is not None
        name = full_name(self.prefix, logical)
        table = MemTable(self.dim)
        rows = self._db.execute(
            "SELECT key, label, seq, payload, vector FROM points WHERE collection = ?", (name,)
        ).fetchall()
        bad = next((len(r[4]) for r in rows if len(r[4]) != 4 * self.dim), None)
        if bad is not None:
            raise StorageNotReady(
                f"collection {name!r} in {self.db_path} holds {bad // 4}-d vectors but "
                f"the model gives {self.dim}-d; use another INSIGHT_STORAGE__COLLECTION_PREFIX"
                " or data dir, or re-embed the library"
            )
        labels = np.array([r[1] for r in rows], np.int64)
        vectors = np.frombuffer(b"".join(r[4] for r in rows), np.float32).reshape(-1, self.dim)
        table.bulk_load([r[0] for r in rows], labels, [json.loads(r[3]) for r in rows], vectors)
        row_seq = {int(r[1]): int(r[2]) for r in rows}
        del rows, vectors
        meta = self._db.execute("SELECT v FROM meta WHERE k = ?", (f"seq:{name}",)).fetchone()
        seq = max([meta[0] if meta else 0, *row_seq.values()])
        index, saved_seq, changed = load_snapshot(
            self.data_dir / f"{name}.usearch", self._spec, table, row_seq
        )
        coll = _Collection(name, table, index, seq)
        coll.saved_seq = saved_seq if not changed else -1
        coll.dirty = changed
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

    def _save_one(self, coll: _Collection) -> None:
        if not coll.dirty and coll.saved_seq == coll.seq:
            return
        save_snapshot(self.data_dir / f"{coll.name}.usearch", coll.index, coll.seq, self._spec)
        coll.saved_seq = coll.seq
        coll.dirty = False

    # --- plumbing ---------------------------------------------------------------------------

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise StorageNotReady("file store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)

    def _coll(self, logical: str, create: bool = False) -> _Collection | None:
        if self._db is None:
            raise StorageNotReady("file store is not open")
        coll = self._colls.get(logical)
        if coll is None:
            full_name(self.prefix, logical)  # validates the name
            if create:
                with self._wlock:
                    coll = self._colls.get(logical) or self._load(logical)
        return coll

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db
        if db is None:
            raise StorageNotReady("file store is not open")
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # --- writes -----------------------------------------------------------------------------

    async def upsert(self, collection: str, points: list[Point]) -> None:
        prepared: dict[str, tuple[dict[str, Any], str, np.ndarray]] = {}
        for p in points:
            key = check_key(p.key)
            if p.vector is None:
                raise BadRequest(f"point {key!r} has no vector")
            vec = check_vector(p.vector, self.dim)
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
            with self._tx() as db:
                db.executemany(_UPSERT, rows)
                db.execute(_SET_META, (f"seq:{coll.name}", seq))
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
            with self._tx() as db:
                db.executemany(
                    "DELETE FROM points WHERE collection = ? AND key = ?",
                    [(coll.name, k) for k, _ in found],
                )
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
        if coll is None:
            return []
        out = []
        with coll.lock.read():
            t = coll.table
            for key in keys:
                slot = t.slot_of.get(key)
                if slot is None:
                    continue
                vec = t.vectors[slot].copy() if with_vectors else None
                out.append(Point(key, vec, copy.deepcopy(t.payloads[slot] or {})))
        return out

    async def exists(self, collection: str, key: str) -> bool:
        coll = self._coll(collection)
        return coll is not None and key in coll.table.slot_of

    async def count(self, collection: str) -> int:
        coll = self._coll(collection)
        return 0 if coll is None else len(coll.table)

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
        """Pages in key order; the offset is the first key of the next page."""
        import bisect

        coll = self._coll(logical)
        if coll is None or limit == 0:
            return [], None
        out: list[Point] = []
        with coll.lock.read():
            t = coll.table
            keys = t.sorted_keys()
            start = bisect.bisect_left(keys, offset) if offset is not None else 0
            for key in keys[start:]:
                slot = t.slot_of[key]
                payload = t.payloads[slot] or {}
                if not where_matches(payload, where):
                    continue
                if len(out) == limit:
                    return out, key
                vec = t.vectors[slot].copy() if with_vectors else None
                out.append(Point(key, vec, copy.deepcopy(payload)))
        return out, None

    async def search(
        self,
        collection: str,
        vector: np.ndarray,
        limit: int,
        filter: SearchFilter | None = None,
    ) -> list[ScoredPoint]:
        q = check_vector(vector, self.dim)
        check_limit(limit)
        if limit == 0:
            return []
        return await asyncio.to_thread(self._search_sync, collection, q, limit, filter)

    def _search_sync(
        self, logical: str, q: np.ndarray, limit: int, flt: SearchFilter | None
    ) -> list[ScoredPoint]:
        coll = self._coll(logical)
        if coll is None:
            return []
        q = q / np.float32(np.linalg.norm(q))
        with coll.lock.read():
            t = coll.table
            c = t.simplify(criteria(flt))
            if c is None:
                n = len(t)
                if n <= self.exact_max:
                    hits = t.top(np.flatnonzero(t.alive[: t.high_water]), q, limit)
                else:
                    hits = self._ann(coll, q, limit, None, n)
            else:
                mask = t.mask(c)
                n = int(np.count_nonzero(mask))
                if n <= self.exact_max or prefer_scan(limit, len(coll.index), n):
                    hits = t.scan(np.flatnonzero(mask), q, limit)
                else:
                    hits = self._ann(coll, q, limit, mask, n)
            out = []
            for slot, score in hits:
                key = t.keys[slot]
                payload = t.payloads[slot]
                if key is None or payload is None or not matches(key, payload, c):
                    continue  # cannot happen under the read lock; cheap insurance
                out.append(ScoredPoint(key, score, copy.deepcopy(payload)))
            return out

    def _ann(
        self, coll: _Collection, q: np.ndarray, limit: int, mask: np.ndarray | None, n: int
    ) -> list[tuple[int, float]]:
        """HNSW candidates (over-fetched for a filter, growing k), rescored exactly.

        Falls back to an exact scan when too few candidates pass (storage/plan.py).
        """
        t = coll.table
        total = len(coll.index)
        want = min(limit, n)
        k = limit * self._oversample
        if mask is not None:
            k = ann_depth(limit, total, n)
        while True:
            k = min(k, total)
            labels = np.asarray(coll.index.search(q, k).keys, np.int64)
            labels = labels[labels < t.high_water]
            ok = t.alive[labels] if mask is None else mask[labels]
            cand = labels[ok]
            if cand.size >= want or k >= total:
                return t.top(cand, q, limit)
            k *= 2
            if k * 4 > total or (mask is not None and k > 8 * self.exact_max):
                rows = np.flatnonzero(t.alive[: t.high_water] if mask is None else mask)
                return t.scan(rows, q, limit)

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
        assert self._db is not None
        problems: list[str] = []
        with self._wlock:
            for logical, coll in self._colls.items():
                rows = {
                    key: (label, np.frombuffer(blob, np.float32))
                    for key, label, blob in self._db.execute(
                        "SELECT key, label, vector FROM points WHERE collection = ?",
                        (coll.name,),
                    )
                }
                t = coll.table
                if set(rows) != set(t.slot_of):
                    problems.append(f"{logical}: keys differ between SQLite and memory")
                labels = np.array(sorted(label for label, _ in rows.values()), np.uint64)
                have: np.ndarray = np.zeros(0, np.uint64)
                if len(coll.index):
                    have = np.sort(np.asarray(coll.index.keys, np.uint64))
                if len(coll.index) != len(rows) or not np.array_equal(have, labels):
                    problems.append(
                        f"{logical}: index has {len(coll.index)} labels, SQLite {len(rows)} rows"
                    )
                    continue
                if not rows:
                    continue
                keys = list(rows)
                want = np.stack([rows[k][1] for k in keys])
                got = coll.index.get(np.array([rows[k][0] for k in keys], np.uint64))
                if got is None or np.asarray(got).shape != want.shape:
                    problems.append(f"{logical}: index vectors missing")
                    continue
                unit = want / np.linalg.norm(want, axis=1, keepdims=True)
                got_unit = np.asarray(got, np.float32)
                got_unit = got_unit / np.linalg.norm(got_unit, axis=1, keepdims=True)
                tol = 1e-5 if self.dtype == "f32" else 0.05
                if not np.allclose(unit, got_unit, atol=tol):
                    problems.append(f"{logical}: index vectors differ from SQLite")
                for k in keys:
                    s = t.slot_of.get(k)
                    if s is None or s != rows[k][0] or not np.array_equal(t.vectors[s], rows[k][1]):
                        problems.append(f"{logical}: memory row of {k!r} differs from SQLite")
                        break
        return problems
