"""One collection of the file store in memory: its table, its index, and how both are
loaded from SQLite + the snapshot and saved back to a snapshot."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (must load before usearch: the reverse order segfaults)
from usearch.index import Index

from insight.errors import DimensionMismatch
from insight.storage.file_sql import read_rows, read_seq
from insight.storage.memtable import MemTable
from insight.storage.rwlock import RWLock
from insight.storage.snapshot import IndexSpec, load_snapshot, save_snapshot


class FileCollection:
    def __init__(self, name: str, table: MemTable, index: Index, seq: int) -> None:
        self.name = name
        self.table = table
        self.index = index
        self.seq = seq  # last write applied to index and table
        self.saved_seq = -1  # last write contained in the saved snapshot
        self.dirty = False
        self.lock = RWLock()


def load_collection(
    db: sqlite3.Connection, db_path: Path, data_dir: Path, name: str, spec: IndexSpec
) -> FileCollection:
    """Read a collection from SQLite, then load + reconcile (or rebuild) its index."""
    dim = spec.dim
    table = MemTable(dim)
    rows = read_rows(db, name)
    bad = next((len(r[4]) for r in rows if len(r[4]) != 4 * dim), None)
    if bad is not None:
        raise DimensionMismatch(
            f"collection {name!r} in {db_path} holds {bad // 4}-d vectors but "
            f"the model gives {dim}-d; use another INSIGHT_STORAGE__COLLECTION_PREFIX"
            " or data dir, or re-embed the library"
        )
    labels = np.array([r[1] for r in rows], np.int64)
    vectors = np.frombuffer(b"".join(r[4] for r in rows), np.float32).reshape(-1, dim)
    table.bulk_load([r[0] for r in rows], labels, [json.loads(r[3]) for r in rows], vectors)
    row_seq = {int(r[1]): int(r[2]) for r in rows}
    del rows, vectors
    seq = max([read_seq(db, name), *row_seq.values()])
    index, saved_seq, changed = load_snapshot(data_dir / f"{name}.usearch", spec, table, row_seq)
    coll = FileCollection(name, table, index, seq)
    coll.saved_seq = saved_seq if not changed else -1
    coll.dirty = changed
    return coll


def save_collection(coll: FileCollection, data_dir: Path, spec: IndexSpec) -> None:
    """Snapshot the index if anything changed since the last snapshot."""
    if not coll.dirty and coll.saved_seq == coll.seq:
        return
    save_snapshot(data_dir / f"{coll.name}.usearch", coll.index, coll.seq, spec)
    coll.saved_seq = coll.seq
    coll.dirty = False
