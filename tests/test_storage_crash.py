"""kill -9 a writing process at a random moment; the reopened file store must hold every
acknowledged write, agree with SQLite, and search like a brute-force scan of SQLite.

The child and the parent derive the same stream of batches from a seed. The child prints the
number of each batch after ``upsert``/``delete`` returned; the parent kills it at a random time.
A batch is one SQLite transaction, so the store must be exactly the state after the last
acknowledged batch or after the one in flight.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from insight.storage.base import TRACKS_TEXT, Point
from insight.storage.file import DB_NAME, FileStore

DIM = 32
TOTAL = 10_000
Batch = tuple[str, list[str], np.ndarray | None]  # ("upsert" | "delete", keys, vectors)


def batches(seed: int) -> list[Batch]:
    """10 000 new keys in batches of varying size, with re-upserts and deletes mixed in."""
    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, DIM))
    out: list[Batch] = []
    made = 0
    while made < TOTAL:
        roll = r.random()
        if made > 100 and roll < 0.08:
            keys = sorted({f"k{r.randrange(made)}" for _ in range(r.randint(1, 20))})
            out.append(("delete", keys, None))
            continue
        if made > 100 and roll < 0.16:
            keys = sorted({f"k{r.randrange(made)}" for _ in range(r.randint(1, 20))})
        else:
            n = min(r.choice([1, 1, 3, 8, 20, 64, 150, 400]), TOTAL - made)
            keys = [f"k{i}" for i in range(made, made + n)]
            made += n
        v = centres[rng.integers(0, 50, len(keys))] + 0.4 * rng.normal(size=(len(keys), DIM))
        out.append(("upsert", keys, (v / np.linalg.norm(v, axis=1, keepdims=True)).astype("f4")))
    return out


def state_after(plan: list[Batch], n: int) -> dict[str, tuple[int, np.ndarray]]:
    """key → (batch number of its last write, vector) after the first ``n`` batches."""
    state: dict[str, tuple[int, np.ndarray]] = {}
    for b, (op, keys, vecs) in enumerate(plan[:n]):
        for i, k in enumerate(keys):
            if op == "delete":
                state.pop(k, None)
            else:
                assert vecs is not None
                state[k] = (b, vecs[i])
    return state


async def child_main(data_dir: str, seed: int) -> None:
    plan = batches(seed)
    store = FileStore(data_dir, DIM, save_interval_s=random.Random(seed).uniform(0.05, 0.4))
    await store.open()
    print("ready", flush=True)
    for b, (op, keys, vecs) in enumerate(plan):
        if op == "delete":
            await store.delete(TRACKS_TEXT, keys)
        else:
            assert vecs is not None
            await store.upsert(
                TRACKS_TEXT,
                [Point(k, vecs[i], {"track_id": k, "batch": b}) for i, k in enumerate(keys)],
            )
        print(b, flush=True)
    print("done", flush=True)
    await store.close()


def run_child(data_dir: Path, seed: int, kill_after: float) -> int:
    """Run a writer, SIGKILL it ``kill_after`` s after it is ready; the last acked batch."""
    code = (
        "import asyncio, sys; sys.path.insert(0, sys.argv[1]); "
        "from test_storage_crash import child_main; "
        "asyncio.run(child_main(sys.argv[2], int(sys.argv[3])))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(Path(__file__).parent), str(data_dir), str(seed)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines = proc.stdout.read().split()
    acked = [int(x) for x in lines if x.isdigit()]
    return acked[-1] if acked else -1


def sqlite_rows(data_dir: Path) -> dict[str, tuple[dict[str, Any], np.ndarray]]:
    import json

    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        rows = db.execute(
            "SELECT key, payload, vector FROM points WHERE collection = ?", (TRACKS_TEXT,)
        ).fetchall()
    finally:
        db.close()
    out = {k: (json.loads(p), np.frombuffer(v, np.float32)) for k, p, v in rows}
    assert len(out) == len(rows)
    return out


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15, 16])
async def test_kill9_at_random_moment(tmp_path: Path, seed: int) -> None:
    plan = batches(seed)
    kill_after = random.Random(seed * 7).uniform(0.02, 1.2)
    data_dir = tmp_path / "data"
    last = await asyncio.to_thread(run_child, data_dir, seed, kill_after)

    store = FileStore(data_dir, DIM, expansion_search=256)
    await store.open()
    try:
        rows = sqlite_rows(data_dir)
        # Exactly the state after the last acknowledged batch, or after the one in flight.
        candidates = [state_after(plan, last + 1), state_after(plan, last + 2)]
        match = [
            st
            for st in candidates
            if set(st) == set(rows)
            and all(
                rows[k][0]["batch"] == b and np.array_equal(rows[k][1], v)
                for k, (b, v) in st.items()
            )
        ]
        assert match, f"SQLite state is neither after batch {last} nor {last + 1}"
        assert await store.count(TRACKS_TEXT) == len(rows)
        assert await store.verify() == []

        keys = list(rows)
        if not keys:
            return
        mat = np.stack([rows[k][1] for k in keys])
        rng = np.random.default_rng(seed)
        queries = [unit_query(rng) for _ in range(20)]
        wants = [[keys[i] for i in np.argsort(-(mat @ q))[:10]] for q in queries]
        recall = 0.0
        for q, want in zip(queries, wants, strict=True):
            got = await store.search(TRACKS_TEXT, q, 10)
            assert len(got) == min(10, len(keys))
            assert len({h.key for h in got}) == len(got)  # no duplicates
            for h in got:  # every score is the exact cosine of the stored vector
                assert h.score == pytest.approx(float(rows[h.key][1] @ q), abs=1e-5)
            recall += len({h.key for h in got} & set(want)) / len(want)
        # HNSW (above exact_max points) is approximate: high recall, not identity.
        assert recall / len(queries) >= 0.95
    finally:
        await store.close()

    # Reopened with an exact scan, the recovered store answers exactly like brute force.
    exact = FileStore(data_dir, DIM, exact_max=10**9)
    await exact.open()
    try:
        for q, want in zip(queries, wants, strict=True):
            assert [h.key for h in await exact.search(TRACKS_TEXT, q, 10)] == want
    finally:
        await exact.close()


def unit_query(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=DIM).astype(np.float32)
    return q / np.linalg.norm(q)


def test_batches_are_deterministic() -> None:
    a, b = batches(3), batches(3)
    assert [x[1] for x in a] == [x[1] for x in b]
    assert sum(len(k) for op, k, _ in a if op == "upsert") >= TOTAL
