"""Live file events from watchdog, debounced: a path is handed on once it has been quiet."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from insight.tasks import cancel_and_wait

log = logging.getLogger("insight.watcher.live")

Kind = Literal["changed", "deleted", "moved"]


@dataclass(frozen=True)
class Change:
    kind: Kind
    path: str
    dest: str | None = None  # for moves
    is_dir: bool = False


class _Handler(FileSystemEventHandler):
    def __init__(self, push: Callable[[Change], None]) -> None:
        self.push = push

    def on_any_event(self, event: FileSystemEvent) -> None:
        src = str(event.src_path)
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return
        if kind == "moved":
            self.push(Change("moved", src, str(event.dest_path), event.is_directory))
        elif kind == "deleted":
            self.push(Change("deleted", src, is_dir=event.is_directory))
        elif not event.is_directory:  # created, modified, closed, attrib
            self.push(Change("changed", src))


class LiveWatch:
    """Watch folders; ``on_batch`` gets the changes whose paths were quiet for ``debounce_s``."""

    def __init__(
        self, debounce_s: float, on_batch: Callable[[list[Change]], Awaitable[None]]
    ) -> None:
        self.debounce_s = debounce_s
        self.on_batch = on_batch
        self._observer: Any = None
        self._watches: dict[str, Any] = {}
        self._pending: dict[tuple[str, str], tuple[Change, float]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._observer = Observer()
        self._observer.daemon = True
        self._observer.start()
        self._task = asyncio.create_task(self._flusher(), name="watcher-debounce")

    def watch(self, folder: Path, recursive: bool = True) -> None:
        key = str(folder)
        if self._observer is None or key in self._watches:
            return
        handler = _Handler(self._push_threadsafe)
        self._watches[key] = self._observer.schedule(handler, key, recursive=recursive)

    def unwatch(self, folder: Path) -> None:
        watch = self._watches.pop(str(folder), None)
        if watch is not None and self._observer is not None:
            with contextlib.suppress(Exception):
                self._observer.unschedule(watch)

    def _push_threadsafe(self, change: Change) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._push, change)

    def _push(self, change: Change) -> None:
        key = (
            change.path if change.kind != "moved" else f"{change.path}\0{change.dest}",
            "moved" if change.kind == "moved" else "path",
        )
        self._pending[key] = (change, time.monotonic())
        if change.kind == "moved":  # a move settles the source path
            self._pending.pop((change.path, "path"), None)
        self._wake.set()

    async def _flusher(self) -> None:
        tick = max(0.05, self.debounce_s / 4)
        while True:
            if not self._pending:
                self._wake.clear()
                await self._wake.wait()
            await asyncio.sleep(tick)
            cutoff = time.monotonic() - self.debounce_s
            ready = [k for k, (_, t) in self._pending.items() if t <= cutoff]
            if not ready:
                continue
            batch = [self._pending.pop(k)[0] for k in ready]
            try:
                await self.on_batch(batch)
            except Exception:
                log.exception("watch_batch_failed size=%d", len(batch))

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None
        if self._observer is not None:
            observer, self._observer = self._observer, None
            observer.stop()
            await asyncio.to_thread(observer.join, 5)
        self._watches.clear()
        self._pending.clear()
