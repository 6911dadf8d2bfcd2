"""Folder-scan benchmark: tracks/hour of the watcher pipeline, full and sampled mode.

Generated 4-minute stereo 44.1 kHz tracks (mp3 and flac, tagged). Ours: the real
``WatcherService`` (PyAV decode, mutagen tags, ONNX CLAP with the full-size clap-htsat-unfused
architecture and random weights, file storage) timed from scan start until the queue is empty.
Baseline in the same run: the same PyAV decode + transformers ``ClapProcessor`` +
``ClapModel.get_audio_features`` (torch) on the same windows. Not a test: run it by hand.

    .venv/bin/python bench/scan.py [--tracks 16] [--threads 2] [--work-dir /tmp/insight-bench]

The model comes from ``bench/inference.py``'s work dir (``<work>/onnx`` + ``<work>/hf``),
exported with ``insight.inference.export.export_clap`` when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import full_size_source, share_tokenizer
from insight.config import Settings
from insight.inference.model import AudioSpec
from insight.watcher.decode import decode_in_mode

CLAP_SPEC = AudioSpec(48_000, 480_000, 480_000)  # 10 s windows of transformers CLAP

TRACK_S = 240.0


def write_track(path: Path, seconds: float, seed: int) -> None:
    """Music-like noise: a few tones with an envelope plus noise, stereo 44.1 kHz, tagged."""
    rate = 44_100
    codec = "libmp3lame" if path.suffix == ".mp3" else "flac"
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        s: Any = c.add_stream(codec, rate=rate, layout="stereo")
        c.metadata.update(
            {
                "title": f"Track {seed}",
                "artist": f"Artist {seed % 3}",
                "album": "Bench",
                "genre": "Electronic",
            }
        )
        step = rate  # one second at a time
        freqs = rng.uniform(110, 880, 4)
        for sec in range(int(seconds)):
            t = (np.arange(step) + sec * step) / rate
            sig = sum(
                0.15 * np.sin(2 * np.pi * f * t) * (0.5 + 0.5 * np.sin(t * (i + 1)))
                for i, f in enumerate(freqs)
            )
            sig = (sig + 0.03 * rng.standard_normal(step)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.stack([sig, sig]), format="fltp", layout="stereo")
            frame.sample_rate = rate
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def make_library(folder: Path, n: int) -> list[Path]:
    """``n`` tracks (mp3 and flac alternating, track ``i`` from seed ``i``), the missing ones
    written on every core."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"track{i:03d}.{'mp3' if i % 2 == 0 else 'flac'}" for i in range(n)]
    todo = [i for i, p in enumerate(paths) if not p.exists()]
    if todo:
        with ProcessPoolExecutor(os.cpu_count()) as ex:
            list(ex.map(write_track, [paths[i] for i in todo], [TRACK_S] * len(todo), todo))
    return paths


def model_dir(work: Path) -> Path:
    """ONNX towers of the full-size architecture + tokenizer, as one folder."""
    onnx_dir, hf = work / "onnx", work / "hf"
    from insight.inference.export import export_clap, is_current_export

    full_size_source(work)
    if not is_current_export(onnx_dir):
        export_clap(hf, onnx_dir, quantize="int8")
    share_tokenizer(hf, onnx_dir)
    out = work / "scan-model"
    out.mkdir(exist_ok=True)
    for name in (
        "text_model.onnx",
        "audio_model.onnx",
        "text_model_quantized.onnx",
        "audio_model_quantized.onnx",
        "config.json",
        "preprocessor_config.json",
        "tokenizer.json",
    ):
        src = onnx_dir / name if (onnx_dir / name).exists() else hf / name
        if src.exists() and not (out / name).exists():
            (out / name).symlink_to(src)
    return out


async def ours(
    model: Path,
    library: Path,
    mode: str,
    threads: int,
    quantized: bool,
    workers: int,
    runners: int = 1,
) -> dict[str, Any]:
    from insight import compose
    from insight.app import App

    data = Path(tempfile.mkdtemp(prefix="scan-bench-"))
    settings = Settings(
        storage={"data_dir": data},
        model={
            "path": model,
            "name": "bench/clap-full",
            "threads": threads,
            "quantized": quantized,
        },
        watcher={"mode": mode, "workers": workers, "scan_interval_s": 0},
        inference={"runners": runners},
    )
    app = App(settings)
    await compose.start(app)
    assert app.pool is not None, app.model_error
    svc = app.services.watcher  # started by the app, closed with it
    assert svc is not None, "the watcher extra is needed"
    from insight.schemas import WatchedFolder

    t0 = time.perf_counter()
    svc.scan(folders=[WatchedFolder(path=str(library))])
    await svc.wait_idle()
    elapsed = time.perf_counter() - t0
    n = svc.outcomes["analyzed"]
    assert svc.outcomes["failed"] == 0, svc.failures()
    await compose.stop(app)
    shutil.rmtree(data, ignore_errors=True)
    return {"tracks": n, "seconds": elapsed, "tracks_per_hour": n / elapsed * 3600}


def run_ours(*args: Any) -> dict[str, Any]:
    return asyncio.run(ours(*args))


def transformers_baseline(hf: Path, files: list[Path], mode: str, threads: int) -> dict[str, Any]:
    import torch
    from transformers import ClapModel, ClapProcessor

    torch.set_num_threads(threads)
    model = ClapModel.from_pretrained(str(hf)).eval()
    proc = ClapProcessor.from_pretrained(str(hf))
    t0 = time.perf_counter()
    for f in files:
        d = decode_in_mode(f, mode, 3, CLAP_SPEC)
        feats = proc.feature_extractor(list(d.windows), sampling_rate=48_000, return_tensors="pt")
        with torch.no_grad():
            out = model.get_audio_features(input_features=feats["input_features"])
        emb = getattr(out, "pooler_output", out)
        _ = torch.nn.functional.normalize(emb.mean(0), dim=-1)
    elapsed = time.perf_counter() - t0
    return {
        "tracks": len(files),
        "seconds": elapsed,
        "tracks_per_hour": len(files) / elapsed * 3600,
    }


def decode_only(files: list[Path], mode: str) -> float:
    t0 = time.perf_counter()
    for f in files:
        decode_in_mode(f, mode, 3, CLAP_SPEC)
    return (time.perf_counter() - t0) / len(files)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, default=16)  # fewer: start and drain dominate
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/insight-bench"))
    ap.add_argument("--skip-transformers", action="store_true")
    ap.add_argument("--decode-only", action="store_true", help="time decoding alone, per mode")
    args = ap.parse_args()
    work: Path = args.work_dir
    library = work / "scan-library"
    files = make_library(library, args.tracks)
    if args.decode_only:
        full, sampled = decode_only(files, "full"), decode_only(files, "sampled")
        print(
            f"{len(files)} tracks of {TRACK_S:.0f} s (mp3, flac), decode only, per track: "
            f"full {full:.3f} s, sampled {sampled:.3f} s, {full / sampled:.1f}x"
        )
        return
    model = model_dir(work)
    results: dict[str, Any] = {
        "tracks": len(files),
        "track_s": TRACK_S,
        "threads": args.threads,
        "workers": args.workers,
        "cpus": os.cpu_count(),
    }
    for mode in ("full", "sampled"):
        results[f"decode_s_per_track_{mode}"] = round(decode_only(files, mode), 3)
        # (label, quantized, ORT threads, runners): "bulk" = what `insight scan` uses
        cores = os.cpu_count() or 2
        for label, quantized, threads, runners in (
            ("fp32", False, args.threads, 1),
            ("int8", True, args.threads, 1),
            ("int8_bulk", True, 1, cores),
        ):
            key = f"ours_{mode}_{label}"
            # own process: the ONNX thread pool is sized once per process
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
                results[key] = ex.submit(
                    run_ours, model, library, mode, threads, quantized, args.workers, runners
                ).result()
            print(key, results[key], flush=True)
        if not args.skip_transformers:
            results[f"transformers_{mode}"] = transformers_baseline(
                work / "hf", files, mode, args.threads
            )
            print(f"transformers_{mode}", results[f"transformers_{mode}"], flush=True)
    # sampled mode seeks to its windows (a full decode only for VBR mp3): decode alone, per track
    results["decode_speedup_sampled"] = round(
        results["decode_s_per_track_full"] / results["decode_s_per_track_sampled"], 1
    )
    for val in list(results.values()):
        if isinstance(val, dict) and "tracks_per_hour" in val:
            val["hours_for_10k"] = round(10_000 / val["tracks_per_hour"], 2)
            val["tracks_per_hour"] = round(val["tracks_per_hour"])
            val["seconds"] = round(val["seconds"], 1)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
