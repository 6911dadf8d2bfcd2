"""What the benchmarks share: interleaved timing and a description of the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np


def timeit(fns: dict[str, Callable[[], Any]], reps: int, block: int = 3) -> dict[str, float]:
    """Median ms per call of each candidate, in steady state.

    Each round runs every candidate ``block`` times in a row (a service answers a stream of
    requests with its model warm in the caches), and rounds interleave the candidates so load
    drift on a shared box hits all of them alike. One warm-up call each first.
    """
    for fn in fns.values():
        fn()
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, reps // block)):
        for k, fn in fns.items():
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                ts[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000.0 for k, v in ts.items()}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


ISA_FLAGS = (
    "avx512_bf16",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
)


def cpu_isa() -> list[str]:
    """The ISA flags that matter to ONNX Runtime's kernels, as /proc/cpuinfo (lscpu) names them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def memory_gib() -> float | None:
    try:
        return int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        return None


PCM_RATE = 44_100


def tone_pcm(seconds: float, rng: np.random.Generator) -> bytes:
    """A plausible track as Music Assistant streams it: s16 stereo at 44.1 kHz."""
    t = np.arange(int(seconds * PCM_RATE)) / PCM_RATE
    x = 0.3 * np.sin(2 * np.pi * 220 * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def to_48k_mono(data: bytes) -> np.ndarray:
    """Our decode + resample of ``tone_pcm`` (the baselines get the same, they have neither)."""
    from insight.inference.audio import decode_pcm, resample

    return resample(decode_pcm(data, "pcm_s16_le", 2), PCM_RATE, 48_000)


def full_size_source(work: Path) -> Path:
    """Random full-size clap-htsat-unfused weights with RoBERTa's BPE in ``work/hf``, built once.

    The hub's folders ship RoBERTa's tokenizer; the tests' 600-entry BPE splits a track sentence
    into 31 tokens where RoBERTa's makes 19, which made every text figure before session 8
    dearer than a default user's. A folder built then gets RoBERTa's tokenizer put in.
    """
    from bench.roberta_bpe import fetch_gpt2_ranks, roberta_bpe
    from insight.testing.hf_clap import build_hf_clap, hf_tokenizer

    src = work / "hf"
    built = (src / "config.json").exists()
    if built and has_roberta_bpe(src):
        return src
    try:
        bpe = roberta_bpe(fetch_gpt2_ranks(work / "gpt2"))
    except (OSError, subprocess.CalledProcessError) as e:  # no registry (a device machine)
        print(f"RoBERTa's BPE unavailable ({e}): the tests' tiny BPE, token counts overstated")
        bpe = None
    if not built:
        build_hf_clap(src, small=False, seed=0, tokenizer=bpe)
    elif bpe is not None:
        hf_tokenizer(backend=bpe).save_pretrained(src)
    return src


def has_roberta_bpe(folder: Path) -> bool:
    """Whether ``folder``'s tokenizer is RoBERTa's full vocabulary (not the tests' tiny one)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size() > 50_000


def share_tokenizer(src: Path, *folders: Path) -> None:
    """Give ``folders`` (exports of ``src``) ``src``'s tokenizer if theirs differs."""
    want = (src / "tokenizer.json").read_bytes()
    for folder in folders:
        if (folder / "tokenizer.json").read_bytes() != want:
            (folder / "tokenizer.json").write_bytes(want)


def track_texts(n: int = 32) -> list[str]:
    """The text benches' inputs: ``n`` track sentences as the service formats them."""
    from insight.inference.text import format_track_text

    return [
        format_track_text(f"Song {i}", ["Artist", "Other"], "Album", ["rock", "pop"])
        for i in range(n)
    ]


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """A benchmark's machine line: the CPU, its ISA flags, cores and the load around the run."""
    return {
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "cores": cores(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


if TYPE_CHECKING:
    from insight.app import App
    from insight.config import Settings
    from insight.watcher.service import WatcherService


@contextlib.asynccontextmanager
async def watcher_app(settings: Settings) -> AsyncIterator[tuple[App, WatcherService]]:
    """A started app with a model and its watcher; stopped, and its data dir removed, after."""
    from insight import compose
    from insight.app import App

    app = App(settings)
    await compose.start(app)
    try:
        assert app.pool is not None, app.model_error
        svc = app.services.watcher
        assert svc is not None, "the watcher extra is needed"
        yield app, svc
    finally:
        await compose.stop(app)
        shutil.rmtree(settings.storage.data_dir, ignore_errors=True)
