"""Decoded channels → mono: ``insight.watcher.decode._to_mono`` against converting every channel
to float32 first and averaging (what it did before session 10), side by side (not a test).

    python bench/downmix.py [--seconds 240] [--reps 21]

Per sample format, 4 minutes of 44.1 kHz stereo: median ms of each, the ratio, and whether the
values are identical. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, timeit
from insight.watcher.decode import _SAMPLE_TYPES, _to_mono


def each_channel_first(planes: list[np.ndarray], fmt: str, channels: int) -> np.ndarray:
    """The baseline: every channel to float32 in [-1, 1], then their mean."""
    planar = fmt.endswith("p")
    _, offset, scale = _SAMPLE_TYPES[fmt.removesuffix("p")]
    chans = planes[:channels] if planar else [planes[0][c::channels] for c in range(channels)]
    floats = []
    for x in chans:
        y = x if x.dtype == np.float32 else x.astype(np.float32)  # no copy of float32 planes
        if offset:
            y -= np.float32(offset)
        if scale != 1.0:
            y *= np.float32(scale)
        floats.append(y)
    mono = floats[0] + floats[1] if channels > 1 else floats[0]
    for y in floats[2:]:
        mono += y
    if channels > 1:
        mono /= np.float32(channels)
    return mono


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--reps", type=int, default=21)
    args = ap.parse_args()
    load = os.getloadavg()
    rng = np.random.default_rng(0)
    n = int(44_100 * args.seconds)
    cases = {
        "s16 (FLAC, 16-bit)": ("s16", np.int16),
        "s32 (FLAC, 24-bit)": ("s32", np.int32),
        "fltp (mp3, aac)": ("fltp", np.float32),
    }
    results = {}
    for label, (fmt, dtype) in cases.items():
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, size=2 * n, endpoint=True, dtype=dtype)
        else:
            data = rng.uniform(-1, 1, size=2 * n).astype(dtype)
        planes = [data[:n], data[n:]] if fmt.endswith("p") else [data]
        ms = timeit(
            {
                "baseline": lambda p=planes, f=fmt: each_channel_first(p, f, 2),
                "ours": lambda p=planes, f=fmt: _to_mono(p, f, 2),
            },
            args.reps,
        )
        same = np.array_equal(each_channel_first(planes, fmt, 2), _to_mono(planes, fmt, 2))
        results[fmt] = {
            "baseline_ms": round(ms["baseline"], 1),
            "ours_ms": round(ms["ours"], 1),
            "speedup": round(ms["baseline"] / ms["ours"], 2),
            "identical": same,
        }
        print(
            f"{label:20} baseline {ms['baseline']:6.1f} ms  ours {ms['ours']:6.1f} ms  "
            f"{ms['baseline'] / ms['ours']:.2f}x  identical={same}"
        )
    print(
        json.dumps(
            {
                "bench": "downmix",
                "seconds": args.seconds,
                "results": results,
                "machine": machine(load),
            }
        )
    )


if __name__ == "__main__":
    main()
