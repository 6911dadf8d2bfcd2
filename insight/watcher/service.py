"""The folder watcher service: scans, live changes, a queue of files, workers, status.

Workers run from ``open()`` to ``close()`` (so re-analysis for ``reembed`` works even when
the watcher is stopped); ``start()`` adds the initial scan, live watching and periodic rescans;
``pause()`` holds the workers after the file they are on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insight.errors import BadRequest, Conflict, NotFound
from insight.schemas import WatchedFolder, WatcherFailure, WatcherStatus
from insight.tasks import cancel_and_wait
from insight.watcher.analysis import Analysis
from insight.watcher.changes import apply_changes
from insight.watcher.files import FileWork, Job, Target, known_jobs, withdraw
from insight.watcher.host_work import HostProcesses
from insight.watcher.live import LiveWatch
from insight.watcher.polite import decode_processes, watcher_executor
from insight.watcher.roots import folder_refusal, normalise_folder, resolved
from insight.watcher.scanner import (
    normalise_extensions,
    path_is_dir,
    path_is_file,
    survey,
)
from insight.watcher.state import DONE, FAILED, FileRow, WatcherState

if TYPE_CHECKING:
    from insight.config import Settings
    from insight.watcher.files import WatcherIO

__all__ = ["Job", "WatcherService", "normalise_folder"]

log = logging.getLogger("insight.watcher")

RECENT_FAILURES = 20


class WatcherService:
    def __init__(self, settings: Settings, io: WatcherIO, background: bool = True) -> None:
        """``background`` (serve): capped low-priority threads (polite.py); else every core."""
        self.cfg = settings.watcher
        self.exts = normalise_extensions(self.cfg.extensions)
        self.mode = self.cfg.mode
        self.state = WatcherState(settings.storage.data_dir / "watcher.db")
        self.folders: dict[str, WatchedFolder] = {}
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._queued: set[str] = set()
        self.current: set[str] = set()
        self.inhand: set[str] = set()  # taken from the queue by a worker (maybe paused)
        self._resume = asyncio.Event()
        self._resume.set()
        self.running = False
        self._workers: list[asyncio.Task[None]] = []
        self._scan_task: asyncio.Task[None] | None = None
        self._surveying = asyncio.Lock()
        self._periodic: asyncio.Task[None] | None = None
        self._live: LiveWatch | None = None
        self.outcomes: Counter[str] = Counter()  # what process() did, since start
        self._stopping = threading.Event()  # ends decodes in threads at close()
        self.files = FileWork(io, settings.audio, self.state, self.cfg, self._stopping)
        self.executor = self._threads(background)
        self._load_folders()

    # --- lifecycle ------------------------------------------------------------------------

    def _threads(self, background: bool) -> ThreadPoolExecutor:
        """The threads and the decoding processes (:mod:`insight.watcher.host_work`) of the
        background (low priority, capped) or the foreground (every core)."""
        cfg = self.cfg
        self.background = self.files.bulk = background
        self.files.executor = ex = watcher_executor(cfg.threads, cfg.nice, background)
        old, n = self.files.processes, decode_processes(cfg.processes, cfg.threads, background)
        nice = cfg.nice if background else None
        self.files.processes = HostProcesses(n, nice) if n else None
        if old is not None:
            old.shutdown()
        return ex

    def foreground(self) -> None:
        """Run as ``insight scan`` in the foreground: normal priority, every core, no yielding."""
        if self.background:
            self.executor.shutdown(wait=False)
            self.executor = self._threads(False)

    def _load_folders(self) -> None:
        saved = {p: (r, lbl, e) for p, r, lbl, e in self.state.folders()}
        for raw in self.cfg.folders:
            p = Path(raw).expanduser()
            p = p.resolve() if p.exists() else p
            self.folders[str(p)] = WatchedFolder(path=str(p))
        for key, (recursive, label, enabled) in saved.items():
            why = folder_refusal(resolved(key))
            if why is not None:  # saved by a version that did not check
                log.warning("watch_folder_refused path=%s reason=%s", key, why)
                self.folders.pop(key, None)
                continue
            self.folders[key] = WatchedFolder(
                path=key, recursive=recursive, label=label, enabled=enabled
            )

    async def open(self) -> None:
        """Start the workers; start watching when INSIGHT_WATCHER__ENABLED is set."""
        self._start_workers()
        if self.cfg.enabled:
            await self.start(scan=self.cfg.scan_on_start)

    def _start_workers(self) -> None:
        if not self._workers:
            self._add_workers(self.cfg.workers)

    def ensure_workers(self, n: int) -> None:
        """At least ``n`` (at most 64) started workers: one per cluster scan slot (scale.scan)."""
        if self._workers:
            self._add_workers(min(n, 64))

    def _add_workers(self, n: int) -> None:
        while len(self._workers) < n:
            name = f"watcher-worker-{len(self._workers)}"
            self._workers.append(asyncio.create_task(self._worker(), name=name))

    async def start(self, scan: bool = True) -> None:
        self._start_workers()
        if self.running:
            return
        self.running = True
        self._live = LiveWatch(self.cfg.debounce_s, lambda c: apply_changes(self, c))
        self._live.start()
        for f in self.enabled_folders():
            self._watch(f)
        if scan:
            self.scan()
        if self.cfg.scan_interval_s > 0:
            self._periodic = asyncio.create_task(self._rescan_every(), name="watcher-rescan")
        log.info("watcher_started folders=%d mode=%s", len(self.folders), self.mode)

    async def stop(self) -> None:
        """Stop watching and scanning; queued files are dropped, not a migration's (it waits)."""
        self.running = False
        await cancel_and_wait((self._scan_task, self._periodic))
        self._scan_task = self._periodic = None
        if self._live is not None:
            await self._live.stop()
            self._live = None
        for job in withdraw(self.queue, self._queued, lambda j: j.into is None):
            job.dropped()
        log.info("watcher_stopped")

    async def close(self) -> None:
        self._stopping.set()  # a decode in a thread stops at its next packet
        await self.stop()
        await cancel_and_wait(self._workers)
        self._workers = []
        self.executor.shutdown(wait=False, cancel_futures=True)  # decodes end at their next packet
        if self.files.processes is not None:  # queued files cancelled; see host_work
            self.files.processes.shutdown()
        self.state.close()

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    async def wait_idle(self, within_s: float | None = None) -> None:
        """Until the scan has queued everything and the queue is empty (or paused forever)."""

        async def idle() -> None:
            while True:
                if self._scan_task is not None and not self._scan_task.done():
                    await asyncio.wait({self._scan_task})
                await self.queue.join()
                if self._scan_task is None or self._scan_task.done():
                    return

        await asyncio.wait_for(idle(), within_s)

    # --- folders --------------------------------------------------------------------------

    def enabled_folders(self) -> list[WatchedFolder]:
        return [f for f in self.folders.values() if f.enabled]

    def _watch(self, f: WatchedFolder) -> None:
        if self._live is not None and Path(f.path).is_dir():
            self._live.watch(Path(f.path), f.recursive)

    def add_folder(
        self, path: str, recursive: bool = True, label: str | None = None
    ) -> WatchedFolder:
        p = normalise_folder(path)
        for existing in self.enabled_folders():
            e = Path(existing.path)
            if p == e or (existing.recursive and p.is_relative_to(e)):
                raise Conflict(f"folder {p} is already watched (as {e})")
        folder = WatchedFolder(path=str(p), recursive=recursive, label=label)
        self.folders[str(p)] = folder
        self.state.add_folder(str(p), recursive, label, True)
        if self.running:
            self._watch(folder)
            self.scan(folders=[folder])
        return folder

    def remove_folder(self, path: str) -> WatchedFolder:
        if "\0" in path:
            raise BadRequest("watch folder path contains a NUL byte")
        raw = path if path.startswith(("/", "~")) else "/" + path
        p = Path(os.path.expanduser(raw))
        key = str(resolved(p)) if str(resolved(p)) in self.folders else str(p)
        folder = self.folders.get(key)
        if folder is None or not folder.enabled:
            raise NotFound(f"folder {path} is not watched")
        del self.folders[key]
        if any(str(Path(f).expanduser()) == key for f in self.cfg.folders):
            self.state.add_folder(key, folder.recursive, folder.label, False)  # stays removed
        else:
            self.state.remove_folder(key)
        if self._live is not None:
            self._live.unwatch(Path(key))
        return folder

    def folder_of(self, path: Path) -> Path | None:
        best: Path | None = None
        for f in self.enabled_folders():
            fp = Path(f.path)
            if (
                path.is_relative_to(fp)
                and (f.recursive or path.parent == fp)
                and (best is None or len(fp.parts) > len(best.parts))
            ):
                best = fp
        return best

    # --- scanning -------------------------------------------------------------------------

    def scan(self, force: bool = False, folders: list[WatchedFolder] | None = None) -> None:
        """Start a scan in the background (one at a time; a forced scan replaces a running one)."""
        if self._scan_task is not None and not self._scan_task.done():
            if not force:
                return
            self._scan_task.cancel()
        self._scan_task = asyncio.create_task(
            self._scan(force, folders or self.enabled_folders()), name="watcher-scan"
        )

    async def _rescan_every(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.scan_interval_s)
            self.scan()

    async def resurvey(self, folders: list[WatchedFolder]) -> None:
        """What ``folders`` hold now against what is known: moves, deletions, new files."""
        await self._scan(False, folders)

    async def _scan(self, force: bool, folders: list[WatchedFolder]) -> None:
        started = time.monotonic()
        queued = 0
        async with self._surveying:  # one at a time: two would apply the same move twice
            for f in folders:
                root = Path(f.path)
                if not path_is_dir(root):
                    log.warning("watch_folder_missing path=%s", root)
                    continue
                todo, moves, gone = await self._survey(root, f.recursive, force)
                for old, new, mtime_ns in moves:
                    await self.files.apply_move(old, new, root, mtime_ns)
                for row in gone:
                    await self.files.forget(row)
                for p in todo:
                    queued += self.enqueue(Job(p, root, force))
        log.info(
            "scan_queued files=%d force=%s took_s=%.2f", queued, force, time.monotonic() - started
        )

    async def _survey(
        self, root: Path, recursive: bool, force: bool
    ) -> tuple[list[Path], list[tuple[str, str, int]], list[FileRow]]:
        """``scanner.survey`` in a thread that stops at its next file once this is cancelled
        (a stopped or replaced scan): a walk of a large NAS share left running would read the
        disk beside the next one for minutes."""
        halt = threading.Event()
        if self._stopping.is_set():
            halt.set()
        try:
            return await asyncio.to_thread(
                survey, self.state, root, self.exts, recursive, force, halt
            )
        except asyncio.CancelledError:
            halt.set()
            raise

    def enqueue(self, job: Job) -> int:
        key = job.key
        if key in self._queued:
            return 0
        self._queued.add(key)
        self.queue.put_nowait(job)
        return 1

    # --- re-analysis for re-embedding -----------------------------------------------------

    async def reanalyze(self, track_ids: set[str], into: Target | None = None) -> set[str]:
        """Queue the known files of ``track_ids`` (for ``into``'s model); ids newly queued."""
        jobs = await known_jobs(self.state, track_ids, into)
        return {job.track_id or "" for job in jobs if self.enqueue(job)}

    def analyse_into(self, path: Path, track_id: str, into: Target) -> bool:
        """Queue ``path`` for analysis with ``into``'s model, as ``track_id``; False when it
        is no file or already queued for ``into``."""
        job = Job(path, path.parent, True, into, track_id)
        return path_is_file(path) and self.enqueue(job) > 0

    def withdraw(self, into: Target) -> int:
        return len(withdraw(self.queue, self._queued, lambda j: j.into is into))

    def knows(self, track_id: str) -> bool:
        return bool(self.state.by_track(track_id))

    # --- workers --------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            self.inhand.add(job.key)
            try:
                await self._resume.wait()
                self.current.add(str(job.path))
                self.outcomes[await self.process(job)] += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watcher_job_crashed path=%s", job.path)
            finally:
                self.current.discard(str(job.path))
                self.inhand.discard(job.key)
                self._queued.discard(job.key)
                self.queue.task_done()

    async def process(self, job: Job) -> str:
        """Analyse one file unless the state says it is done; returns what happened."""
        return await self.files.process(job)

    async def analyze(self, path: Path) -> Analysis:
        """Decode (in the watcher's mode), read tags, embed the windows; nothing is stored."""
        return await self.files.analyze(path)

    # --- status -------------------------------------------------------------------------

    def status(self) -> WatcherStatus:
        counts = self.state.counts()
        pending = self.queue.qsize() + len(self.inhand)
        rate = self.files.rate_per_min()
        scanning = self._scan_task is not None and not self._scan_task.done()
        if self.paused:
            state = "paused"
        elif not self.running:
            state = "scanning" if pending else "stopped"
        else:
            state = "scanning" if scanning or pending else "watching"
        return WatcherStatus(
            state=state,  # type: ignore[arg-type]
            folders=list(self.folders.values()),
            done=counts.get(DONE, 0),
            pending=pending,
            failed=counts.get(FAILED, 0),
            current_file=next(iter(self.current), None),
            rate_per_min=round(rate, 2),
            eta_s=round(pending / rate * 60.0, 1) if rate > 0 and pending else None,
            mode=self.mode,
            recent_failures=[
                WatcherFailure(path=r.path, error=r.error or "")
                for r in self.state.failed(RECENT_FAILURES)
            ],
        )

    def failures(self) -> list[dict[str, Any]]:
        return [{"path": r.path, "error": r.error} for r in self.state.all() if r.status == FAILED]
