"""``insight scan DIR`` (one-shot analysis with a progress bar) and ``insight reembed``.

Both open the data dir themselves: run them while ``insight serve`` is stopped, or use the
HTTP API (``POST /watcher/folders`` + ``/watcher/scan``, ``POST /models/reembed``) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from insight.config import Settings, load_settings


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "--:--"
    s = int(s)
    return (
        f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


class Progress:
    """One line on stderr: bar, tracks done/total, rate, ETA."""

    def __init__(self, width: int = 30) -> None:
        self.width = width
        self.started = time.monotonic()

    def show(self, done: int, total: int, failed: int, current: str | None) -> None:
        frac = done / total if total else 0.0
        bar = "#" * int(frac * self.width)
        elapsed = time.monotonic() - self.started
        rate = done / elapsed * 3600 if elapsed > 0 else 0.0
        eta = (total - done) / (done / elapsed) if done and elapsed > 0 else None
        name = Path(current).name[:30] if current else ""
        sys.stderr.write(
            f"\r[{bar:<{self.width}}] {done}/{total} tracks ({failed} failed) "
            f"{rate:,.0f}/h ETA {_fmt_s(eta)} {name:<30}"
        )
        sys.stderr.flush()


async def _open_app(settings: Settings) -> Any:
    from insight.app import App

    app = App(settings)
    await app.start()
    if app.pool is None:
        await app.close()
        raise SystemExit(f"insight: {app.model_error}")
    if app.store is None:
        await app.close()
        raise SystemExit(f"insight: {app.store_error}")
    return app


async def run_scan(settings: Settings, folder: Path, force: bool) -> int:
    from insight.errors import BadRequest
    from insight.schemas import WatchedFolder
    from insight.watcher.service import WatcherService, normalise_folder

    try:
        root = normalise_folder(str(folder))
    except BadRequest as exc:
        print(f"insight: {exc.message}", file=sys.stderr)
        return 2
    app = await _open_app(settings)
    svc = app.services.get("watcher")
    own = svc is None
    if own:
        svc = WatcherService(app, background=False)
        svc._start_workers()
    svc.foreground()  # the user waits for this scan: it may take every core
    progress = Progress()
    try:
        svc.scan(force=force, folders=[WatchedFolder(path=str(root))])
        await asyncio.sleep(0)
        base = sum(svc.outcomes.values())
        while True:
            scanning = svc._scan_task is not None and not svc._scan_task.done()
            st = svc.status()
            done = sum(svc.outcomes.values()) - base
            failed = svc.outcomes["failed"] + svc.outcomes["refused"]
            progress.show(done, done + st.pending, failed, st.current_file)
            if not scanning and st.pending == 0:
                break
            await asyncio.sleep(0.5)
        sys.stderr.write("\n")
        o = svc.outcomes
        print(
            f"analysed {o['analyzed']}, failed {o['failed'] + o['refused']}, moved {o['moved']}, "
            f"unchanged {o['unchanged'] + o['skipped']} in {root}"
        )
        for f in svc.failures():
            if f["path"].startswith(str(root)):
                print(f"  failed: {f['path']}: {f['error']}")
        return 0
    finally:
        if own:
            await svc.close()
        await app.close()


async def run_reembed(settings: Settings, drop: bool) -> int:
    from insight.models.service import ModelsService
    from insight.watcher.service import WatcherService

    app = await _open_app(settings)
    try:
        models = app.services.get("models") or ModelsService(app)
        app.services["models"] = models
        if "watcher" not in app.services:
            w = WatcherService(app, background=False)
            w._start_workers()
            app.services["watcher"] = w
        app.services["watcher"].foreground()  # the user waits: every core, normal priority
        result = await models.reembed(drop)
        print(result.message)
        if result.reembedded_audio:
            await app.services["watcher"].wait_idle()
        models._stale = None
        print(f"stale vectors left: {await models.stale_count()}")
        return 0
    finally:
        await app.close()


def for_bulk(settings: Settings) -> Settings:
    """One single-threaded ONNX runner per core, unless threads or runners were configured:
    a one-shot scan wants tracks per hour, not the latency of one request (bench/scan.py
    measured ~20 % more throughput on 2 cores). GPU settings are left alone."""
    from insight.inference.clap import PROVIDERS

    model, inference = settings.model, settings.inference
    gpu = any(getattr(model, flag) for flag, _, _ in PROVIDERS)
    if gpu or "threads" in model.model_fields_set or "runners" in inference.model_fields_set:
        return settings
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return settings.model_copy(
        update={
            "model": model.model_copy(update={"threads": 1}),
            "inference": inference.model_copy(update={"runners": max(1, cores or 1)}),
        }
    )


def cmd_scan(args: argparse.Namespace) -> int:
    settings = for_bulk(load_settings())
    if args.mode:
        settings = settings.model_copy(
            update={"watcher": settings.watcher.model_copy(update={"mode": args.mode})}
        )
    return asyncio.run(run_scan(settings, Path(args.dir).expanduser().absolute(), args.force))


def cmd_reembed(args: argparse.Namespace) -> int:
    return asyncio.run(run_reembed(load_settings(), args.drop_unrecoverable))


def add_commands(sub: Any) -> None:
    """Add ``scan`` and ``reembed`` to the top-level sub-parsers."""
    p = sub.add_parser("scan", help="analyse every audio file under DIR once (progress bar)")
    p.add_argument("dir")
    p.add_argument("--mode", choices=["full", "sampled"], help="default INSIGHT_WATCHER__MODE")
    p.add_argument("--force", action="store_true", help="re-analyse files already done")
    p.set_defaults(func=cmd_scan)
    p = sub.add_parser("reembed", help="re-embed vectors made by another model")
    p.add_argument(
        "--drop-unrecoverable",
        action="store_true",
        help="delete stale audio vectors that have no known file",
    )
    p.set_defaults(func=cmd_reembed)
