"""Memory a decoding process keeps between files (``insight.watcher.host_work``; not a test).

A foreground process (``insight scan``'s: it exits with the scan) against a background one
(``insight serve``'s, which gives its freed memory back after each file, ``_trim_heap``), each
after decoding the same generated four-minute tracks in full (bench/scan.py's mp3 and flac).
Prints the resident memory (VmRSS) of each process while it waits for the next file, the
peak (VmHWM), and the seconds per file; one JSON line at the end.

    python bench/decode_memory.py [--tracks 4] [--work-dir /tmp/insight-bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from bench.scan import make_library
from insight.inference.model import AudioSpec
from insight.watcher.decode import Limits
from insight.watcher.host_work import HostProcesses, feature_job, windows_of

CLAP_48K = AudioSpec(48_000, 480_000, 480_000)


def memory_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


async def one_process(tracks: list[Path], nice: int | None) -> dict[str, Any]:
    procs = HostProcesses(1, nice)
    try:
        start = time.perf_counter()
        for path in tracks:
            await procs.run(windows_of, feature_job(path, "full", 3, CLAP_48K, None, Limits()))
        per_file = (time.perf_counter() - start) / len(tracks)
        (child,) = multiprocessing.active_children()
        assert child.pid is not None
        mem = memory_kb(child.pid)
        return {
            "rss_mb": round(mem["VmRSS"] / 1024),
            "peak_mb": round(mem["VmHWM"] / 1024),
            "s_per_file": round(per_file, 3),
        }
    finally:
        procs.shutdown()
        await asyncio.sleep(0.2)


async def run(tracks: list[Path]) -> dict[str, Any]:
    return {
        "foreground": await one_process(tracks, None),
        "background": await one_process(tracks, 15),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tracks", type=int, default=4)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/insight-bench"))
    args = ap.parse_args()
    load = os.getloadavg()
    tracks = make_library(args.work_dir / "scan-library", args.tracks)
    got = asyncio.run(run(tracks))
    for label, row in got.items():
        print(
            f"{label:10}  waiting at {row['rss_mb']:4d} MB  peak {row['peak_mb']:4d} MB  "
            f"{row['s_per_file']:.3f} s per file"
        )
    print(
        json.dumps(
            {"bench": "decode_memory", "tracks": args.tracks, **got, "machine": machine(load)}
        )
    )


if __name__ == "__main__":
    main()
