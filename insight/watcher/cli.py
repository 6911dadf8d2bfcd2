"""``insight scan DIR`` (one-shot analysis with progress on stderr) and ``insight reembed``.

Both open the data dir themselves: run them while ``insight serve`` is stopped, or use the
HTTP API (``POST /watcher/folders`` + ``/watcher/scan``, ``POST /models/reembed``) instead.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from insight.config import Settings, load_settings
from insight.watcher.polite import MAX_FILES_IN_FLIGHT, cores, decode_processes

GPU_RUNNERS = 2
MAX_WORKERS, MAX_RUNNERS = 32, 64  # the settings' own limits (model_copy does not check them)

if TYPE_CHECKING:
    from insight.app import App
    from insight.watcher.service import WatcherService


async def _open_app(settings: Settings) -> App:
    """The data dir's app with its services (no bus), or exit with what is missing."""
    from insight import compose
    from insight.app import App

    app = App(settings)
    await compose.start(app)
    missing = (
        app.model_error if app.pool is None else app.store_error if app.store is None else None
    )
    if missing is None and app.services.watcher is None:
        missing = "the folder watcher needs the `watcher` extra: pip install insight[watcher]"
    if missing is not None:
        await _close(app)
        raise SystemExit(f"insight: {missing}")
    return app


async def _close(app: App) -> None:
    from insight import compose

    await compose.stop(app)


def _watcher(app: App) -> WatcherService:
    svc = app.services.watcher
    assert svc is not None, "checked by _open_app"
    return svc


async def run_scan(settings: Settings, folder: Path, force: bool) -> int:
    from insight.errors import BadRequest
    from insight.schemas import WatchedFolder
    from insight.watcher.progress import ScanProgress
    from insight.watcher.service import normalise_folder

    try:
        root = normalise_folder(str(folder))
    except BadRequest as exc:
        print(f"insight: {exc.message}", file=sys.stderr)
        return 2
    app = await _open_app(settings)
    svc = _watcher(app)
    try:
        svc.foreground()  # the user waits for this scan: it may take every core
        svc.scan(force=force, folders=[WatchedFolder(path=str(root))])
        await asyncio.sleep(0)
        base = sum(svc.outcomes.values())
        with ScanProgress() as progress:
            while True:
                scanning = svc._scan_task is not None and not svc._scan_task.done()
                st = svc.status()
                done = sum(svc.outcomes.values()) - base
                failed = svc.outcomes["failed"] + svc.outcomes["refused"]
                progress.show(done, done + st.pending, failed, st.current_file)
                if not scanning and st.pending == 0:
                    break
                await asyncio.sleep(0.5)
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
        await _close(app)


async def run_reembed(settings: Settings, drop: bool) -> int:
    app = await _open_app(settings)
    try:
        models, watcher = app.services.models, _watcher(app)
        watcher.foreground()  # the user waits: every core, normal priority
        result = await models.reembed(drop)
        print(result.message)
        if result.reembedded_audio:
            await watcher.wait_idle()
        models._stale = None
        print(f"stale vectors left: {await models.stale_count()}")
        return 0
    finally:
        await _close(app)


def for_bulk(settings: Settings, n_cores: int | None = None) -> Settings:
    """``insight scan``'s settings: it wants tracks per hour, not one request's latency.

    Files are decoded and turned into log-mel features by a process per core (at most 16,
    ``polite.decode_processes``): threads hold the GIL for a quarter of a decode and all of the
    features (:mod:`insight.watcher.host_work`). On a 16-core CPU that made the scan 2.9x as
    fast (BENCHMARKS.md "Session 10"); on 2 cores it changes nothing. CPU: one single-threaded
    ONNX runner per core (bench/scan.py: ~20 % more throughput on 2 cores than one runner on
    every core) and as many files in flight as runners, so none of them idles. GPU:
    ``GPU_RUNNERS`` tower runs, and as many more files in flight as there are processes. What
    was configured (``THREADS``, ``RUNNERS``, ``WATCHER__WORKERS``, ``WATCHER__PROCESSES``) is
    kept."""
    from insight.inference.clap import PROVIDERS

    model, inference, watcher = settings.model, settings.inference, settings.watcher
    n = n_cores or cores()
    gpu = any(getattr(model, flag) for flag, _, _ in PROVIDERS)
    runners = inference.runners
    if "runners" not in inference.model_fields_set:
        if gpu:
            runners = GPU_RUNNERS
        elif "threads" not in model.model_fields_set:
            runners = min(n, MAX_RUNNERS)
            model = model.model_copy(update={"threads": 1})
    processes = decode_processes(watcher.processes, watcher.threads, False, n)
    workers = watcher.workers
    if "workers" not in watcher.model_fields_set:  # on a GPU: every process busy meanwhile
        workers = processes + runners if gpu else min(MAX_FILES_IN_FLIGHT, max(runners, workers))
        workers = min(workers, MAX_WORKERS)
    return settings.model_copy(
        update={
            "model": model,
            "inference": inference.model_copy(update={"runners": runners}),
            "watcher": watcher.model_copy(update={"workers": workers, "processes": processes}),
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
