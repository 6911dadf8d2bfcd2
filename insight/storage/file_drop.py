"""Dropping collections of the file store: rows, sequence numbers and index snapshots.

Runs on a closed store (a model space that is not the loaded model's); the space's lock is
taken first so a process still using it is never pulled from under.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from insight.errors import StorageNotReady
from insight.storage.file_sql import DB_NAME, connect, transaction


def drop_file_collections(data_dir: Path, prefix: str, names: list[str]) -> list[str]:
    """Delete the collections ``names`` (full names) of ``prefix``; those that held rows."""
    lock_path = data_dir / (f".{prefix}.lock" if prefix else ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StorageNotReady(f"collections {prefix!r} are in use by another process") from None
        db = connect(data_dir / DB_NAME, "FULL")
        dropped = []
        try:
            with transaction(db):
                for name in names:
                    cur = db.execute("DELETE FROM points WHERE collection = ?", (name,))
                    db.execute("DELETE FROM meta WHERE k = ?", (f"seq:{name}",))
                    if cur.rowcount:
                        dropped.append(name)
        finally:
            db.close()
        for name in names:
            (data_dir / f"{name}.usearch").unlink(missing_ok=True)
        return dropped
    finally:
        os.close(fd)
        if prefix:
            lock_path.unlink(missing_ok=True)
