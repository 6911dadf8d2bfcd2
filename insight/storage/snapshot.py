"""usearch index snapshots of the file store: atomic save, and load + reconcile with SQLite.

A snapshot is ``{name}.usearch`` plus ``{name}.usearch.json`` (the last write ``seq`` it
contains, its dim, dtype and file size), each written to a temp file, fsynced and renamed.
Loading replays what SQLite has that the snapshot lacks; anything unusable is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime  # noqa: F401  (must load before usearch: the reverse order segfaults)
from usearch.index import Index

from insight.storage.memtable import MemTable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexSpec:
    dim: int
    dtype: str
    connectivity: int
    expansion_add: int
    expansion_search: int

    def new(self) -> Index:
        return Index(
            ndim=self.dim,
            metric="cos",
            dtype=self.dtype,
            connectivity=self.connectivity,
            expansion_add=self.expansion_add,
            expansion_search=self.expansion_search,
        )


def fsync(path: Path) -> None:
    """Flush a file's (or a directory's entries') data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_snapshot(path: Path, index: Index, seq: int, spec: IndexSpec) -> None:
    tmp = path.with_suffix(".usearch.tmp")
    index.save(str(tmp))
    fsync(tmp)
    os.replace(tmp, path)
    meta = {"seq": seq, "dim": spec.dim, "dtype": spec.dtype}
    meta["size"] = path.stat().st_size
    meta["count"] = len(index)
    mpath = path.with_suffix(".usearch.json")
    mtmp = mpath.with_suffix(".json.tmp")
    mtmp.write_text(json.dumps(meta))
    fsync(mtmp)
    os.replace(mtmp, mpath)
    fsync(path.parent)


def load_snapshot(
    path: Path, spec: IndexSpec, table: MemTable, row_seq: dict[int, int]
) -> tuple[Index, int, bool]:
    """(index, seq of its snapshot, whether it differs from the snapshot) for SQLite's rows
    (``row_seq``: label → seq of its last write; ``table`` holds their vectors)."""
    name = path.stem
    labels = np.fromiter(row_seq.keys(), np.uint64, len(row_seq))
    seqs = np.fromiter(row_seq.values(), np.int64, len(row_seq))
    index: Index | None = None
    saved_seq = -1
    try:
        meta = json.loads(path.with_suffix(".usearch.json").read_text())
        ok = (
            meta.get("dim") == spec.dim
            and meta.get("dtype") == spec.dtype
            and path.stat().st_size == meta.get("size")
        )
        if ok:
            index = spec.new()
            index.load(str(path))
            saved_seq = int(meta["seq"])
            if index.ndim != spec.dim:
                index = None
    except FileNotFoundError:
        index = None
    except Exception as e:  # a corrupt snapshot is rebuilt, never fatal
        log.warning("storage: index snapshot %s unusable (%s); rebuilding", path, e)
        index = None
    if index is not None:
        have = np.asarray(index.keys, np.uint64) if len(index) else np.zeros(0, np.uint64)
        stale = np.setdiff1d(have, labels)
        newer = labels[seqs > saved_seq]
        readd = np.union1d(np.setdiff1d(labels, have), newer)
        drop = np.union1d(stale, np.intersect1d(newer, have))
        if drop.size:
            index.remove(drop)
        if readd.size:
            index.add(readd, table.vectors[readd.astype(np.int64)])
        if len(index) == len(table) and len(index) == len(labels):
            if drop.size or readd.size:
                log.info(
                    "storage: %s replayed %d writes, removed %d stale labels",
                    name,
                    readd.size,
                    stale.size,
                )
            return index, saved_seq, bool(drop.size or readd.size)
        log.warning("storage: %s index disagrees with SQLite after replay; rebuilding", name)
    index = spec.new()
    if labels.size:
        index.add(labels, table.vectors[labels.astype(np.int64)])
        log.info("storage: rebuilt %s index from SQLite (%d points)", name, labels.size)
    return index, -1, True
