"""ffmpeg's own decoding threads against one per file (``insight.watcher.decode``), side by side
on bench/scan.py's generated four-minute mp3 and flac tracks (not a test).

    python bench/decode_threads.py [--tracks 8] [--rounds 3] [--work-dir /tmp/insight-bench]

Per format: wall and CPU seconds per full decode with ffmpeg's automatic thread count (the
baseline: as many threads as cores) and with ``DECODER_THREADS``, interleaved file by file.
Prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from bench.scan import make_library
from insight.inference.model import AudioSpec
from insight.watcher import decode

CLAP_48K = AudioSpec(48_000, 480_000, 480_000)


def timed(path: Path, threads: int) -> tuple[float, float]:
    decode.DECODER_THREADS = threads
    w0, c0 = time.perf_counter(), time.process_time()
    decode.decode_in_mode(path, "full", 3, CLAP_48K)
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tracks", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/insight-bench"))
    args = ap.parse_args()
    load = os.getloadavg()
    tracks = make_library(args.work_dir / "scan-library", args.tracks)
    ours = decode.DECODER_THREADS
    results: dict[str, Any] = {}
    for ext in ("mp3", "flac"):
        files = [p for p in tracks if p.suffix == f".{ext}"]
        timed(files[0], 0)  # warm-up
        got: dict[str, list[tuple[float, float]]] = {"ffmpeg_auto": [], "ours": []}
        for _ in range(args.rounds):
            for i, path in enumerate(files):  # which goes first alternates file by file
                for threads in (0, ours) if i % 2 == 0 else (ours, 0):
                    got["ours" if threads else "ffmpeg_auto"].append(timed(path, threads))
        row = {
            k: {
                "wall_s": round(statistics.median(w for w, _ in v), 3),
                "cpu_s": round(statistics.median(c for _, c in v), 3),
            }
            for k, v in got.items()
        }
        row["cpu_ratio"] = round(row["ffmpeg_auto"]["cpu_s"] / row["ours"]["cpu_s"], 2)
        results[ext] = row
        print(
            f"{ext:5} ffmpeg threads: wall {row['ffmpeg_auto']['wall_s']:.3f} s, "
            f"CPU {row['ffmpeg_auto']['cpu_s']:.3f} s | {ours} thread: wall "
            f"{row['ours']['wall_s']:.3f} s, CPU {row['ours']['cpu_s']:.3f} s | "
            f"CPU {row['cpu_ratio']:.2f}x"
        )
    decode.DECODER_THREADS = ours
    print(
        json.dumps(
            {"bench": "decode_threads", "threads": ours, **results, "machine": machine(load)}
        )
    )


if __name__ == "__main__":
    main()
