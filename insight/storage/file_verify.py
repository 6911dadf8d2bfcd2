"""The file store's self-check: SQLite, the in-memory table and the index must agree."""

from __future__ import annotations

import numpy as np

from insight.storage.file_collection import FileCollection


def verify_collection(
    logical: str, coll: FileCollection, rows: dict[str, tuple[int, np.ndarray]], dtype: str
) -> list[str]:
    """Disagreements of one collection with its SQLite ``rows`` (key → (label, vector))."""
    problems: list[str] = []
    t = coll.table
    if set(rows) != set(t.slot_of):
        problems.append(f"{logical}: keys differ between SQLite and memory")
    labels = np.array(sorted(label for label, _ in rows.values()), np.uint64)
    have: np.ndarray = np.zeros(0, np.uint64)
    if len(coll.index):
        have = np.sort(np.asarray(coll.index.keys, np.uint64))
    if len(coll.index) != len(rows) or not np.array_equal(have, labels):
        problems.append(f"{logical}: index has {len(coll.index)} labels, SQLite {len(rows)} rows")
        return problems
    if not rows:
        return problems
    keys = list(rows)
    want = np.stack([rows[k][1] for k in keys])
    got = coll.index.get(np.array([rows[k][0] for k in keys], np.uint64))
    if got is None or np.asarray(got).shape != want.shape:
        problems.append(f"{logical}: index vectors missing")
        return problems
    unit = want / np.linalg.norm(want, axis=1, keepdims=True)
    got_unit = np.asarray(got, np.float32)
    got_unit = got_unit / np.linalg.norm(got_unit, axis=1, keepdims=True)
    tol = 1e-5 if dtype == "f32" else 0.05
    if not np.allclose(unit, got_unit, atol=tol):
        problems.append(f"{logical}: index vectors differ from SQLite")
    for k in keys:
        s = t.slot_of.get(k)
        if s is None or s != rows[k][0] or not np.array_equal(t.vectors[s], rows[k][1]):
            problems.append(f"{logical}: memory row of {k!r} differs from SQLite")
            break
    return problems
