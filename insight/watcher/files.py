"""One file through the watcher: checks, fingerprint, moves, analysis, and its state row.

``process`` decides what a queued file needs (nothing, a move, an analysis) and records the
outcome with its reason in the watcher state; the service around it owns the queue, folders,
scans and status.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from insight.config import WatcherSettings
from insight.errors import NotReady
from insight.watcher.analysis import Analysis, analyze_file, store_analysis
from insight.watcher.decode import DecodeFailed, Limits
from insight.watcher.guard import MB, Budget, Interrupted, OverBudget, Refused, check_regular
from insight.watcher.host_work import HostProcesses
from insight.watcher.scanner import fingerprint, path_exists, path_is_file, track_id_for
from insight.watcher.state import DONE, FAILED, PENDING, FileRow, WatcherState

if TYPE_CHECKING:
    from collections.abc import Callable

    from insight.config import AudioSettings
    from insight.library import Library
    from insight.state import ModelSlot, StoreSlot

log = logging.getLogger("insight.watcher")

RATE_WINDOW = 200


@dataclass(frozen=True)
class WatcherIO:
    """What the watcher works through: the model slot (to embed a file), the store slot (to
    move a file's vectors) and the library (to store and delete tracks)."""

    loaded: ModelSlot
    stores: StoreSlot
    library: Library


class Offload(Protocol):
    """Another place to analyse files (``insight.scale.scan``: the cluster's scan queue)."""

    def active(self) -> bool: ...

    async def analyze(self, path: Path) -> Analysis: ...


class Target(Protocol):
    """Another model to analyse a known file with, into its own space (a model migration)."""

    @property
    def loaded(self) -> ModelSlot: ...

    @property
    def library(self) -> Library: ...

    def analysed(self, track_id: str, ok: bool | None) -> None: ...

    async def wanted(self, track_id: str) -> bool: ...


@dataclass
class Job:
    path: Path
    folder: Path
    force: bool = False
    into: Target | None = None  # analyse with the target's model, as ``track_id``
    track_id: str | None = None

    @property
    def key(self) -> str:
        """Queue key: a file may be queued once for the serving model and once per target."""
        return str(self.path) if self.into is None else f"{self.path}\0into{id(self.into)}"

    def dropped(self) -> None:
        """Taken off the queue unprocessed: a migration waiting for it counts it as lost."""
        if self.into is not None:
            self.into.analysed(self.track_id or "", False)


def withdraw(queue: asyncio.Queue[Job], queued: set[str], drop: Callable[[Job], bool]) -> list[Job]:
    """Take the jobs ``drop`` picks off the queue; the others keep their order. Every job is
    marked done only after the kept ones are back: a ``join`` never sees a false empty queue."""
    jobs: list[Job] = []
    while not queue.empty():
        jobs.append(queue.get_nowait())
    gone: list[Job] = []
    for job in jobs:
        if drop(job):
            gone.append(job)
        else:
            queue.put_nowait(job)
    for _ in jobs:
        queue.task_done()
    queued.difference_update(j.key for j in gone)
    return gone


async def known_jobs(state: WatcherState, track_ids: set[str], into: Target | None) -> list[Job]:
    """A forced job per track id that has an analysed file still on disk (SQLite and disk
    in a thread, a thousand ids at a time: the event loop keeps serving)."""
    ids = sorted(track_ids)
    jobs: list[Job] = []
    for start in range(0, len(ids), 1000):
        jobs += await asyncio.to_thread(_known, state, ids[start : start + 1000], into)
    return jobs


def _known(state: WatcherState, track_ids: list[str], into: Target | None) -> list[Job]:
    jobs = []
    for tid in track_ids:
        for row in state.by_track(tid):
            if row.status == DONE and path_is_file(Path(row.path)):
                jobs.append(Job(Path(row.path), Path(row.folder), True, into, tid))
                break
    return jobs


class FileWork:
    """What happens to one file, against the watcher state and the library."""

    def __init__(
        self,
        io: WatcherIO,
        audio: AudioSettings,
        state: WatcherState,
        cfg: WatcherSettings,
        stopping: threading.Event,
        executor: Executor | None = None,
        bulk: bool = False,
    ) -> None:
        self.loaded, self.stores, self.library, self.audio = io.loaded, io.stores, io.library, audio
        self.state, self.cfg, self.mode = state, cfg, cfg.mode
        self.stopping = stopping  # set at close: a decode in a thread stops at its next packet
        self.limits = Limits(int(cfg.max_file_mb * MB), cfg.max_audio_s)
        self.done_at: deque[float] = deque(maxlen=RATE_WINDOW)
        self.executor, self.bulk = executor, bulk  # the service's threads; background or not
        self.offload: Offload | None = None  # set by insight.scale.scan on a store node
        self.processes: HostProcesses | None = None  # decoding processes (host_work.py)

    async def apply_move(self, old: str, new: str, folder: Path, mtime_ns: int) -> None:
        """A known file at a new path: same track id and vectors, new ``file_path``."""
        row = self.state.get(old)
        if row is None:  # moved already (a survey and a worker can both see one move)
            return
        self.state.move(old, new, str(folder), mtime_ns)
        log.info("file_moved old=%s new=%s", old, new)
        if row.track_id and self.stores.store is not None:
            await self.library.move_file(row.track_id, new)

    async def forget(self, row: FileRow) -> None:
        """A file that is gone: its row, and its track unless another file has the same id."""
        self.state.delete(row.path)
        if not row.track_id or row.status != DONE:
            return
        if any(r.path != row.path for r in self.state.by_track(row.track_id)):
            return
        await self.delete_track(row.track_id)
        log.info("file_deleted path=%s track=%s", row.path, row.track_id)

    async def delete_track(self, track_id: str) -> None:
        await self.library.delete_track(track_id)

    async def process(self, job: Job) -> str:
        """Analyse one file unless the state says it is done; returns what happened."""
        if job.into is not None:
            return await self.process_into(job, job.into)
        path, key = job.path, str(job.path)
        try:
            st = await asyncio.to_thread(path.stat)
        except FileNotFoundError:  # its deletion (or a move) is a survey's to settle
            return "gone"
        except OSError as exc:  # a symlink loop, no permission
            return await self._unreadable(job, exc)
        row = self.state.get(key)
        if (
            not job.force
            and row is not None
            and row.status in (DONE, FAILED)
            and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns)
        ):
            return "skipped"
        try:
            check_regular(st, self.limits.max_bytes)
            fp = await asyncio.get_running_loop().run_in_executor(
                self.executor, fingerprint, path, st.st_size
            )
        except Refused as exc:  # a FIFO, a device (also behind a symlink), too large
            return self._refused(job, row, st, exc)
        except OSError as exc:
            self.record(key, job.folder, row, st, None, FAILED, f"cannot read: {exc}")
            return "failed"
        row = self.state.get(key)  # again: a survey may have moved a row here meanwhile
        if not job.force and row is not None and row.status == DONE and row.content_hash == fp:
            self.record(key, job.folder, row, st, fp, DONE, None, row.track_id)
            return "unchanged"
        if not job.force and row is None:
            for old in self.state.by_hash(st.st_size, fp):
                if old.status == DONE and not path_exists(old.path):
                    await self.apply_move(old.path, key, job.folder, st.st_mtime_ns)
                    return "moved"
        try:
            result = await self.analyze(path)
        except Interrupted:  # shutting down: the file is not at fault, try it next time
            return "interrupted"
        except Refused as exc:  # swapped for a FIFO or device after the check
            return self._refused(job, row, st, exc)
        except (DecodeFailed, OverBudget) as exc:
            what = "over budget" if isinstance(exc, OverBudget) else "undecodable"
            self.record(key, job.folder, row, st, fp, FAILED, f"{what}: {exc}")
            log.warning("file_failed path=%s error=%s", path, exc)
            return "failed"
        except NotReady as exc:  # no model / store: try again on the next scan
            self.record(key, job.folder, row, st, fp, PENDING, exc.message)
            return "pending"
        except Exception as exc:
            self.record(key, job.folder, row, st, fp, FAILED, f"{type(exc).__name__}: {exc}")
            log.exception("file_failed path=%s", path)
            return "failed"
        track_id = track_id_for(job.folder, path, result.tags.musicbrainz_track_id)
        if row is not None and row.track_id and not result.tags.musicbrainz_track_id:
            track_id = row.track_id  # a file keeps its id (e.g. after a move)
        if row is not None and row.track_id and row.track_id != track_id:
            await self.delete_track(row.track_id)
        await store_analysis(self.library, track_id, result, key)
        self.record(key, job.folder, row, st, fp, DONE, None, track_id)
        self.done_at.append(time.monotonic())
        return "analyzed"

    async def process_into(self, job: Job, into: Target) -> str:
        """A known file analysed again with the target's model into its space; the file's
        state row (the serving model's analysis) is not touched."""
        track_id = job.track_id or track_id_for(job.folder, job.path, None)
        path = self.now_at(job.path, track_id)
        try:
            limits = Limits(self.limits.max_bytes, self.limits.max_audio_s, self._budget())
            result = await analyze_file(
                into.loaded,
                self.audio,
                path,
                self.mode,
                self.cfg.sampled_windows,
                limits,
                executor=self.executor,
                bulk=self.bulk,
                processes=self.processes,
            )
            if not await into.wanted(track_id):  # deleted while it waited
                into.analysed(track_id, None)
                return "gone"
            path = self.now_at(path, track_id)  # moved while it was analysed
            await store_analysis(into.library, track_id, result, str(path))
        except Interrupted:
            into.analysed(track_id, False)
            return "interrupted"
        except Exception as exc:
            log.warning("file_reanalysis_failed path=%s error=%s", path, exc)
            into.analysed(track_id, False)
            return "failed"
        into.analysed(track_id, True)
        return "migrated"

    def now_at(self, path: Path, track_id: str) -> Path:
        """Where a queued file is now: a move since it was queued took its track's row along."""
        if path_is_file(path):
            return path
        rows = self.state.by_track(track_id)
        return Path(rows[0].path) if rows else path

    def _budget(self) -> Budget:
        return Budget(self.cfg.max_decode_s, self.stopping)

    def _refused(self, job: Job, row: FileRow | None, st: os.stat_result, exc: Refused) -> str:
        self.record(str(job.path), job.folder, row, st, None, FAILED, f"skipped: {exc}")
        log.warning("file_skipped path=%s reason=%s", job.path, exc)
        return "refused"

    async def _unreadable(self, job: Job, exc: OSError) -> str:
        try:
            st = await asyncio.to_thread(os.lstat, job.path)
        except OSError:
            return "gone"
        row = self.state.get(str(job.path))
        self.record(str(job.path), job.folder, row, st, None, FAILED, f"cannot read: {exc}")
        return "failed"

    def record(
        self,
        key: str,
        folder: Path,
        row: FileRow | None,
        st: os.stat_result,
        fp: str | None,
        status: str,
        error: str | None,
        track_id: str | None = None,
    ) -> None:
        self.state.put(
            FileRow(
                path=key,
                folder=str(folder),
                track_id=track_id or (row.track_id if row else None),
                size=st.st_size,
                mtime_ns=st.st_mtime_ns,
                content_hash=fp,
                status=status,
                error=error,
                mode=self.mode,
            )
        )
        if status == FAILED:
            self.done_at.append(time.monotonic())

    def rate_per_min(self) -> float:
        now = time.monotonic()
        recent = [t for t in self.done_at if now - t <= 600]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-6)
        return len(recent) / span * 60.0

    async def analyze(self, path: Path) -> Analysis:
        """Decode (in the watcher's mode), read tags, embed the windows; nothing is stored."""
        if self.offload is not None and self.offload.active():
            return await self.offload.analyze(path)
        limits = Limits(self.limits.max_bytes, self.limits.max_audio_s, self._budget())
        return await analyze_file(
            self.loaded,
            self.audio,
            path,
            self.mode,
            self.cfg.sampled_windows,
            limits,
            executor=self.executor,
            bulk=self.bulk,
            processes=self.processes,
        )
