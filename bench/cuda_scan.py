"""GPU folder scan: ``insight scan``'s own settings on a generated library (not a test).

Needs a CUDA GPU and ``onnxruntime-gpu``. Generates ``--distinct`` 4-minute tracks (bench/scan.py's
tagged mp3 and flac) on every core and links them to ``--tracks`` files: each has its own path,
so each is decoded and embedded (a file is taken for a moved one only once the first is gone).
All of it sits in the page cache: a library on a spinning disk adds its read time.

Then times the scan the CLI runs (``insight.watcher.cli.for_bulk`` on the default settings plus
``INSIGHT_MODEL__ENABLE_CUDA``), full and sampled mode, from its start to the last file stored
(model load and warm-up excluded, as in bench/scan.py), with the share of the host's CPU that
was busy. The same settings without CUDA on ``--cpu-tracks`` files give the ratio on the same
box. Prints one JSON line, also written to ``$OUT/cuda_scan.json``.

    python bench/cuda_scan.py --model DIR [--tracks 1000] [--distinct 32] [--cpu-tracks 64]
        [--variant gpu:full:threads=1] [--variant cpu:full:processes=16] ...

Each scan also reports where its CPU time went (``cpu_s``: the event loop's thread, the
runners', ONNX Runtime's and the decoders' native threads, the host processes).

``--allow-no-cuda`` with the small test model is a CPU dry run of this script.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import watcher_app
from bench.scan import TRACK_S
from bench.scan import make_library as generate
from insight.config import Settings


def make_library(folder: Path, n: int, distinct: int) -> Path:
    """``n`` files under ``folder``: ``distinct`` generated tracks, then hard links to them."""
    names = generate(folder.parent / f"{folder.name}-distinct", distinct)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = names[i % distinct]
        dst = folder / f"track{i:05d}{src.suffix}"
        if not dst.exists():
            os.link(src, dst)
    return folder


def _cpu_s(stat: Path) -> float:
    """utime + stime of a /proc stat file, in seconds (0 once the task is gone)."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_part() -> dict[str, float]:
    """CPU seconds so far of this process's main thread (the event loop), of its Python threads
    by name prefix, of its other threads (ONNX Runtime's, the decoders'), and of its child
    processes (the host processes' decode and log-mel, their start-up included: ~0.4 core-s
    each): where a host-bound scan spends it. Threads that end between two readings drop out."""
    import threading

    names = {t.native_id: t.name.split("_")[0].rstrip("-0123456789") for t in threading.enumerate()}
    parts: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        tid = int(task.name)
        name = "main" if tid == os.getpid() else names.get(tid, "native")
        parts[name] = parts.get(name, 0.0) + _cpu_s(task / "stat")
    parts["children"] = sum(
        _cpu_s(Path(f"/proc/{c.pid}/stat")) for c in multiprocessing.active_children()
    )
    return {k: round(v, 1) for k, v in parts.items()}


def cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of every CPU since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


async def timed_scan(settings: Settings, library: Path) -> dict[str, Any]:
    from insight.schemas import WatchedFolder

    async with watcher_app(settings) as (app, svc):
        pool = app.pool
        assert pool is not None
        svc.foreground()
        model = pool.model
        b0, t0 = cpu_busy()
        parts0 = cpu_by_part()
        start = time.perf_counter()

        async def progress() -> None:  # a stall shows as a count that stops growing
            while True:
                await asyncio.sleep(15)
                done = dict(svc.outcomes)
                t = time.perf_counter() - start
                print(f"  {t:.0f} s: {done} batches={pool.stats.batches}", flush=True)

        shown = asyncio.create_task(progress())
        svc.scan(folders=[WatchedFolder(path=str(library))])
        await svc.wait_idle()
        elapsed = time.perf_counter() - start
        shown.cancel()
        b1, t1 = cpu_busy()
        parts = cpu_by_part()
        assert svc.outcomes["failed"] == 0, svc.failures()
        n = svc.outcomes["analyzed"]
        assert n > 0, "no track scanned (--cpu-tracks 0 with a cpu variant?)"
        stats = pool.stats
        return {
            "tracks": n,
            "seconds": round(elapsed, 1),
            "tracks_per_hour": round(n / elapsed * 3600),
            "minutes_for_10k": round(10_000 / n * elapsed / 60, 1),
            "cpu_busy": round((b1 - b0) / max(1, t1 - t0), 2),
            "device": getattr(model, "device", "?"),  # asked for; "provider": what ran
            "provider": model._audio.get().get_providers()[0] if hasattr(model, "_audio") else "?",
            "audio_tower": getattr(getattr(model, "towers", None), "audio", Path("?")).name,
            "audio_batch": getattr(model, "audio_batch", None),
            "runners": settings.inference.runners,
            "files_in_flight": settings.watcher.workers,
            "host_processes": settings.watcher.processes,
            "batches": stats.batches,
            "windows": stats.items,
            # summed over runners: near runners x seconds when inference is the bottleneck
            "runner_busy_s": round(stats.busy_s, 1),
            "threads": settings.model.threads,
            # CPU seconds during the scan (children: since their start)
            "cpu_s": {
                k: round(v - parts0.get(k, 0.0), 1)
                for k, v in parts.items()
                if v - parts0.get(k, 0.0) >= 0.05
            },
        }


# what a variant may set, as if its INSIGHT_ variable were: where it goes in Settings
VARIANT_KEYS = {"runners": "inference", "threads": "model", "processes": "watcher"}


def scan_settings(
    model: Path, mode: str, cuda: bool, overrides: dict[str, int] | None = None
) -> Settings:
    """``insight scan``'s settings, ``overrides`` (see ``VARIANT_KEYS``) as if configured."""
    from insight.watcher.cli import for_bulk

    data = Path(tempfile.mkdtemp(prefix="cuda-scan-"))
    parts: dict[str, dict[str, Any]] = {
        "storage": {"data_dir": data},
        "model": {"path": model, "name": "bench/clap-full"},
        "watcher": {"mode": mode, "scan_interval_s": 0},
        "inference": {},
    }
    if cuda:
        parts["model"]["enable_cuda"] = True
    for key, value in (overrides or {}).items():
        parts[VARIANT_KEYS[key]][key] = value
    return for_bulk(Settings(**parts))


def run_scan_process(
    model: Path, mode: str, cuda: bool, library: Path, overrides: dict[str, int]
) -> dict[str, Any]:
    """One scan in a process of its own: ONNX Runtime's thread pool is sized once per process."""
    return asyncio.run(timed_scan(scan_settings(model, mode, cuda, overrides), library))


def parse_variant(text: str) -> tuple[str, str, bool, dict[str, int]]:
    """``gpu:full:threads=1,processes=8`` → (key, mode, cuda, overrides)."""
    bad = SystemExit(f"bad --variant {text!r}: DEVICE:MODE[:KEY=N,...], keys {VARIANT_KEYS}")
    try:
        device, mode, *rest = text.split(":")
        pairs = (kv.split("=") for kv in ",".join(rest).split(",") if kv)
        overrides = {k: int(v) for k, v in pairs}
    except ValueError:
        raise bad from None
    unknown = set(overrides) - set(VARIANT_KEYS)
    if device not in ("gpu", "cpu") or mode not in ("full", "sampled") or unknown:
        raise bad
    key = "_".join([device, mode, *(f"{k}{v}" for k, v in overrides.items())])
    return key, mode, device == "gpu", overrides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, required=True, help="ONNX CLAP folder")
    ap.add_argument("--tracks", type=int, default=1000)
    ap.add_argument("--distinct", type=int, default=32)
    ap.add_argument("--cpu-tracks", type=int, default=64, help="0: no CPU run")
    ap.add_argument("--modes", default="full,sampled")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        help="one more scan, e.g. gpu:full:threads=1 or cpu:full:processes=16 (repeatable)",
    )
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/insight-gpu-scan"))
    ap.add_argument("--allow-no-cuda", action="store_true")
    args = ap.parse_args()
    variants = [parse_variant(text) for text in args.variant]  # before any work: typos end it
    import onnxruntime as ort

    summary: dict[str, Any] = {
        "bench": "cuda_scan",
        "machine": {
            "cores": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "onnxruntime": ort.__version__,
            "providers": ort.get_available_providers(),
        },
    }

    def emit(final: bool = False) -> None:
        line = json.dumps(summary)
        if final:
            print(line, flush=True)
        if os.environ.get("OUT"):
            Path(os.environ["OUT"], "cuda_scan.json").write_text(line + "\n")

    if "CUDAExecutionProvider" not in ort.get_available_providers() and not args.allow_no_cuda:
        summary["error"] = "no CUDAExecutionProvider in this onnxruntime"
        emit(final=True)
        sys.exit(1)
    t0 = time.perf_counter()
    library = make_library(args.work_dir / "library", args.tracks, args.distinct)
    summary["generate_s"] = round(time.perf_counter() - t0, 1)
    summary["library"] = {"files": args.tracks, "distinct": args.distinct, "track_s": TRACK_S}
    print(f"library: {summary['library']} in {summary['generate_s']} s", flush=True)
    cpu_lib = library.parent / "library-cpu"
    cpu_lib.mkdir(exist_ok=True)
    for p in sorted(library.iterdir())[: args.cpu_tracks]:
        if not (cpu_lib / p.name).exists():
            os.link(p, cpu_lib / p.name)
    runs: list[tuple[str, str, bool, Path, dict[str, int]]] = [
        (f"{label}_{mode}", mode, cuda, lib, {})
        for mode in args.modes.split(",")
        if mode
        for label, cuda, lib in (("gpu", True, library), ("cpu", False, cpu_lib))
        if cuda or args.cpu_tracks > 0
    ]
    for key, mode, cuda, overrides in variants:
        if any(key == run[0] for run in runs):
            key += f"_{len(runs)}"  # a repeat: both results kept
        runs.append((key, mode, cuda, library if cuda else cpu_lib, overrides))
    for key, mode, cuda, lib, overrides in runs:
        ex = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        try:
            summary[key] = ex.submit(
                run_scan_process, args.model, mode, cuda, lib, overrides
            ).result()
        except Exception as exc:  # report what ran so far
            summary[key] = {"error": repr(exc)}
        finally:  # not waiting for the process to end: its result is in
            ex.shutdown(wait=False)
        print(key, summary[key], flush=True)
        emit()
    for mode in args.modes.split(","):
        g, c = summary.get(f"gpu_{mode}", {}), summary.get(f"cpu_{mode}", {})
        if "tracks_per_hour" in g and "tracks_per_hour" in c:
            summary[f"gpu_vs_cpu_{mode}"] = round(g["tracks_per_hour"] / c["tracks_per_hour"], 2)
    emit(final=True)


if __name__ == "__main__":
    main()
