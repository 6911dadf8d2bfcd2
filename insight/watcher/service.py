"""The folder watcher service: scans, live changes, a queue of files, workers, status.

Workers run from ``open()`` to ``close()`` (so re-analysis for ``reembed`` works even when
the watcher is stopped); ``start()`` adds the initial scan, live watching and periodic rescans;
``pause()`` holds the workers after the file they are on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insight.errors import BadRequest, Conflict, NotFound, NotReady
from insight.schemas import WatchedFolder, WatcherFailure, WatcherStatus
from insight.storage.base import TRACKS_AUDIO, TRACKS_TEXT
from insight.tasks import cancel_and_wait
from insight.watcher.analysis import Analysis, analyze_file, store_analysis
from insight.watcher.decode import DecodeFailed, Limits
from insight.watcher.guard import MB, Budget, Interrupted, OverBudget, Refused, check_regular
from insight.watcher.live import Change, LiveWatch
from insight.watcher.roots import folder_refusal, resolved
from insight.watcher.scanner import (
    fingerprint,
    is_audio,
    normalise_extensions,
    track_id_for,
    walk,
)
from insight.watcher.state import DONE, FAILED, PENDING, FileRow, WatcherState

if TYPE_CHECKING:
    from insight.app import App

log = logging.getLogger("insight.watcher")

RATE_WINDOW = 200
RECENT_FAILURES = 20


@dataclass
class Job:
    path: Path
    folder: Path
    force: bool = False


def _exists(path: str | Path) -> bool:
    return os.path.exists(path)


def _is_file(path: Path) -> bool:
    return path.is_file()


def _is_dir(path: Path) -> bool:
    return path.is_dir()


def normalise_folder(path: str) -> Path:
    """Absolute, resolved, existing directory that is no system folder; ``BadRequest`` else."""
    if "\0" in path:
        raise BadRequest("watch folder path contains a NUL byte")
    p = Path(os.path.expanduser(path))
    if not p.is_absolute():
        raise BadRequest(f"watch folder {path!r} must be an absolute path")
    p = p.resolve()
    why = folder_refusal(p)
    if why is not None:
        raise BadRequest(f"watch folder {p} is refused: {why}", code="FOLDER_REFUSED")
    if not p.is_dir():
        raise BadRequest(f"watch folder {p} does not exist or is not a directory")
    return p


class WatcherService:
    def __init__(self, app: App, state_path: Path | None = None) -> None:
        self.app = app
        self.cfg = app.settings.watcher
        self.exts = normalise_extensions(self.cfg.extensions)
        self.mode = self.cfg.mode
        self.state = WatcherState(state_path or app.settings.storage.data_dir / "watcher.db")
        self.folders: dict[str, WatchedFolder] = {}
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self._queued: set[str] = set()
        self.current: set[str] = set()
        self._inhand: set[str] = set()  # taken from the queue by a worker (maybe paused)
        self._resume = asyncio.Event()
        self._resume.set()
        self.running = False
        self._workers: list[asyncio.Task[None]] = []
        self._scan_task: asyncio.Task[None] | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._live: LiveWatch | None = None
        self._done_at: deque[float] = deque(maxlen=RATE_WINDOW)
        self.outcomes: Counter[str] = Counter()  # what process() did, since start
        self._stopping = threading.Event()  # ends decodes in threads at close()
        self.limits = Limits(int(self.cfg.max_file_mb * MB), self.cfg.max_audio_s)
        self._load_folders()

    # --- lifecycle ------------------------------------------------------------------------

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
            self._workers = [
                asyncio.create_task(self._worker(), name=f"watcher-worker-{i}")
                for i in range(self.cfg.workers)
            ]

    async def start(self, scan: bool = True) -> None:
        self._start_workers()
        if self.running:
            return
        self.running = True
        self._live = LiveWatch(self.cfg.debounce_s, self._on_changes)
        self._live.start()
        for f in self.enabled_folders():
            self._watch(f)
        if scan:
            self.scan()
        if self.cfg.scan_interval_s > 0:
            self._periodic = asyncio.create_task(self._rescan_every(), name="watcher-rescan")
        log.info("watcher_started folders=%d mode=%s", len(self.folders), self.mode)

    async def stop(self) -> None:
        """Stop watching and scanning; files not started yet are dropped from the queue."""
        self.running = False
        await cancel_and_wait((self._scan_task, self._periodic))
        self._scan_task = self._periodic = None
        if self._live is not None:
            await self._live.stop()
            self._live = None
        while not self.queue.empty():
            job = self.queue.get_nowait()
            self._queued.discard(str(job.path))
            self.queue.task_done()
        log.info("watcher_stopped")

    async def close(self) -> None:
        self._stopping.set()  # a decode in a thread stops at its next packet
        await self.stop()
        await cancel_and_wait(self._workers)
        self._workers = []
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
        key = str(p.resolve()) if str(p.resolve()) in self.folders else str(p)
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

    async def _scan(self, force: bool, folders: list[WatchedFolder]) -> None:
        started = time.monotonic()
        queued = 0
        for f in folders:
            root = Path(f.path)
            if not _is_dir(root):
                log.warning("watch_folder_missing path=%s", root)
                continue
            todo, moves, gone = await asyncio.to_thread(self._survey, root, f.recursive, force)
            for old, new, mtime_ns in moves:
                await self._apply_move(old, new, root, mtime_ns)
            for row in gone:
                await self._forget(row)
            for p in todo:
                queued += self._enqueue(Job(p, root, force))
        log.info(
            "scan_queued files=%d force=%s took_s=%.2f", queued, force, time.monotonic() - started
        )

    def _survey(
        self, root: Path, recursive: bool, force: bool
    ) -> tuple[list[Path], list[tuple[str, str, int]], list[FileRow]]:
        """(files to analyse, moves (old, new, mtime), rows whose file is gone) — in a thread."""
        known = {r.path: r for r in self.state.under(str(root))}
        seen: set[str] = set()
        new: list[tuple[Path, os.stat_result]] = []
        todo: list[Path] = []
        for p in walk(root, self.exts, recursive):
            key = str(p)
            seen.add(key)
            try:
                st = p.stat()
            except OSError:
                continue
            row = known.get(key)
            if row is None and not stat.S_ISREG(st.st_mode):
                todo.append(p)  # a FIFO or device: never opened here, process() records why
            elif row is None:
                new.append((p, st))
            elif (
                force
                or row.status == PENDING
                or (row.size, row.mtime_ns) != (st.st_size, st.st_mtime_ns)
            ):
                todo.append(p)
        missing = {k: r for k, r in known.items() if k not in seen and r.status == DONE}
        by_fp = {(r.size, r.content_hash): r for r in missing.values() if r.content_hash}
        moves: list[tuple[str, str, int]] = []
        for p, st in new:
            old = None
            if by_fp and not force:
                with contextlib.suppress(OSError, Refused):  # swapped for a FIFO: not opened
                    old = by_fp.pop((st.st_size, fingerprint(p, st.st_size)), None)
            if old is not None:
                moves.append((old.path, str(p), st.st_mtime_ns))
                missing.pop(old.path, None)
            else:
                todo.append(p)
        gone = [r for k, r in known.items() if k not in seen and k not in {m[0] for m in moves}]
        return todo, moves, gone

    def _enqueue(self, job: Job) -> int:
        key = str(job.path)
        if key in self._queued:
            return 0
        self._queued.add(key)
        self.queue.put_nowait(job)
        return 1

    # --- live changes -------------------------------------------------------------------

    async def _on_changes(self, changes: list[Change]) -> None:
        order = {"moved": 0, "changed": 1, "deleted": 2}
        for c in sorted(changes, key=lambda c: order[c.kind]):
            if c.kind == "moved" and c.dest is not None:
                await self._moved(Path(c.path), Path(c.dest), c.is_dir)
            elif c.kind == "changed":
                p = Path(c.path)
                folder = self.folder_of(p)
                if folder is not None and is_audio(p, self.exts) and _is_file(p):
                    self._enqueue(Job(p, folder))
            elif c.kind == "deleted":
                await self._deleted(Path(c.path))

    async def _moved(self, src: Path, dest: Path, is_dir: bool) -> None:
        rows = (
            self.state.under(str(src)) if is_dir else [r for r in [self.state.get(str(src))] if r]
        )
        if is_dir and not rows and _is_dir(dest):
            for p in walk(dest, self.exts):
                if (folder := self.folder_of(p)) is not None:
                    self._enqueue(Job(p, folder))
        for row in rows:
            new = dest / Path(row.path).relative_to(src) if is_dir else dest
            folder = self.folder_of(new)
            if folder is None or not is_audio(new, self.exts):
                await self._forget(row)
                continue
            with contextlib.suppress(OSError):
                await self._apply_move(row.path, str(new), folder, new.stat().st_mtime_ns)
        if (
            not is_dir
            and not rows
            and (folder := self.folder_of(dest)) is not None
            and is_audio(dest, self.exts)
        ):
            self._enqueue(Job(dest, folder))

    async def _deleted(self, path: Path) -> None:
        rows = self.state.under(str(path)) + [r for r in [self.state.get(str(path))] if r]
        for row in rows:
            if not _exists(row.path):
                await self._forget(row)

    async def _apply_move(self, old: str, new: str, folder: Path, mtime_ns: int) -> None:
        """A known file at a new path: same track id and vectors, new ``file_path``."""
        row = self.state.get(old)
        self.state.move(old, new, str(folder), mtime_ns)
        log.info("file_moved old=%s new=%s", old, new)
        if row is None or not row.track_id or self.app.store is None:
            return
        for collection in (TRACKS_TEXT, TRACKS_AUDIO):
            points = await self.app.store.get(collection, [row.track_id], with_vectors=True)
            for p in points:
                p.payload["file_path"] = new
            if points:
                await self.app.store.upsert(collection, points)

    async def _forget(self, row: FileRow) -> None:
        """A file that is gone: its row, and its track unless another file has the same id."""
        self.state.delete(row.path)
        if not row.track_id or row.status != DONE:
            return
        if any(r.path != row.path for r in self.state.by_track(row.track_id)):
            return
        await self._delete_track(row.track_id)
        log.info("file_deleted path=%s track=%s", row.path, row.track_id)

    async def _delete_track(self, track_id: str) -> None:
        library = self.app.services.get("library")
        if library is not None:
            await library.delete_track(track_id)
        elif self.app.store is not None:
            await self.app.store.delete(TRACKS_TEXT, [track_id])
            await self.app.store.delete(TRACKS_AUDIO, [track_id])

    # --- re-analysis for re-embedding -----------------------------------------------------

    async def reanalyze(self, track_ids: set[str]) -> set[str]:
        """Queue the known files of ``track_ids`` for analysis; returns the ids queued."""
        queued: set[str] = set()
        for tid in track_ids:
            for row in self.state.by_track(tid):
                path = Path(row.path)
                folder = Path(row.folder)
                if row.status == DONE and _is_file(path):
                    self._enqueue(Job(path, folder, force=True))
                    queued.add(tid)
                    break
        return queued

    def knows(self, track_id: str) -> bool:
        return bool(self.state.by_track(track_id))

    # --- workers --------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            job = await self.queue.get()
            self._inhand.add(str(job.path))
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
                self._inhand.discard(str(job.path))
                self._queued.discard(str(job.path))
                self.queue.task_done()

    async def process(self, job: Job) -> str:
        """Analyse one file unless the state says it is done; returns what happened."""
        path, key = job.path, str(job.path)
        try:
            st = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            await self._deleted(path)
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
            fp = await asyncio.to_thread(fingerprint, path, st.st_size)
        except Refused as exc:  # a FIFO, a device (also behind a symlink), too large
            return self._refused(job, row, st, exc)
        except OSError as exc:
            self._record(key, job.folder, row, st, None, FAILED, f"cannot read: {exc}")
            return "failed"
        if not job.force and row is not None and row.status == DONE and row.content_hash == fp:
            self._record(key, job.folder, row, st, fp, DONE, None, row.track_id)
            return "unchanged"
        if not job.force and row is None:
            for old in self.state.by_hash(st.st_size, fp):
                if old.status == DONE and not _exists(old.path):
                    await self._apply_move(old.path, key, job.folder, st.st_mtime_ns)
                    return "moved"
        try:
            result = await self.analyze(path)
        except Interrupted:  # shutting down: the file is not at fault, try it next time
            return "interrupted"
        except Refused as exc:  # swapped for a FIFO or device after the check
            return self._refused(job, row, st, exc)
        except (DecodeFailed, OverBudget) as exc:
            what = "over budget" if isinstance(exc, OverBudget) else "undecodable"
            self._record(key, job.folder, row, st, fp, FAILED, f"{what}: {exc}")
            log.warning("file_failed path=%s error=%s", path, exc)
            return "failed"
        except NotReady as exc:  # no model / store: try again on the next scan
            self._record(key, job.folder, row, st, fp, PENDING, exc.message)
            return "pending"
        except Exception as exc:
            self._record(key, job.folder, row, st, fp, FAILED, f"{type(exc).__name__}: {exc}")
            log.exception("file_failed path=%s", path)
            return "failed"
        track_id = track_id_for(job.folder, path, result.tags.musicbrainz_track_id)
        if row is not None and row.track_id and not result.tags.musicbrainz_track_id:
            track_id = row.track_id  # a file keeps its id (e.g. after a move)
        if row is not None and row.track_id and row.track_id != track_id:
            await self._delete_track(row.track_id)
        await store_analysis(self.app, track_id, result, key)
        self._record(key, job.folder, row, st, fp, DONE, None, track_id)
        self._done_at.append(time.monotonic())
        return "analyzed"

    def _refused(self, job: Job, row: FileRow | None, st: os.stat_result, exc: Refused) -> str:
        self._record(str(job.path), job.folder, row, st, None, FAILED, f"skipped: {exc}")
        log.warning("file_skipped path=%s reason=%s", job.path, exc)
        return "refused"

    async def _unreadable(self, job: Job, exc: OSError) -> str:
        try:
            st = await asyncio.to_thread(os.lstat, job.path)
        except OSError:
            return "gone"
        row = self.state.get(str(job.path))
        self._record(str(job.path), job.folder, row, st, None, FAILED, f"cannot read: {exc}")
        return "failed"

    def _record(
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
            self._done_at.append(time.monotonic())

    async def analyze(self, path: Path) -> Analysis:
        """Decode (in the watcher's mode), read tags, embed the windows; nothing is stored."""
        limits = Limits(
            self.limits.max_bytes,
            self.limits.max_audio_s,
            Budget(self.cfg.max_decode_s, self._stopping),
        )
        return await analyze_file(self.app, path, self.mode, self.cfg.sampled_windows, limits)

    # --- status -------------------------------------------------------------------------

    def rate_per_min(self) -> float:
        now = time.monotonic()
        recent = [t for t in self._done_at if now - t <= 600]
        if len(recent) < 2:
            return 0.0
        span = max(now - recent[0], 1e-6)
        return len(recent) / span * 60.0

    def status(self) -> WatcherStatus:
        counts = self.state.counts()
        pending = self.queue.qsize() + len(self._inhand)
        rate = self.rate_per_min()
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
