"""The data dir's instance id: processes that start together on a new shared data dir (the
compose services share one volume) must read one id, never an empty or a half-written one."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

from insight.app import read_or_create_id


def _read(path: str, start: Any, out: Any) -> None:
    start.wait()
    out.put(read_or_create_id(Path(path)))


def test_processes_starting_together_get_one_id(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    for round_ in range(20):  # the old read-or-write gave two ids in ~1 round of 5
        path = tmp_path / f"round{round_}" / "instance-id"
        start, out = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_read, args=(str(path), start, out)) for _ in range(6)]
        for proc in procs:
            proc.start()
        ids = [out.get(timeout=30) for _ in procs]
        for proc in procs:
            proc.join(30)
        assert len(set(ids)) == 1 and len(ids[0]) == 12, ids
        assert path.read_text().strip() == ids[0]
        assert sorted(p.name for p in path.parent.iterdir()) == ["instance-id"]  # no leftovers


def test_an_existing_id_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "instance-id"
    path.write_text("olderdir0001\n")
    assert read_or_create_id(path) == "olderdir0001"
