"""A scan's host work in processes: decode, resample, window and log-mel features per file.

Threads cannot spread that work over a many-core host: a quarter of a decode is Python holding
the GIL (2 threads decode 1.6x as fast as one, 2 processes 2.0x) and the log-mel features are
numpy that holds it throughout (2 threads: 1.03x). On a 16-core H200 machine (BENCHMARKS.md
"Session 9") the GPU sat at 0-9 % with threads and 1 000 tracks had not been scanned after five
minutes; with processes they took 59 s. On the same host's CPU alone, 64 tracks took 41 s with
threads and 14 s with processes ("Session 10"). Each process returns a file's features (6 MB
for 4 minutes, not its 46 MB of windows); the inference runners only run the tower.

Used by ``insight scan`` when ``INSIGHT_WATCHER__PROCESSES`` > 0 (its default: one per core).
The stop flag does not reach a process: at close, queued files are cancelled and a file being
decoded finishes once its decode budget (``INSIGHT_WATCHER__MAX_DECODE_S``, checked at each
packet) is spent. A process that dies (a decoder crash, the OOM killer) takes every file in
flight with it: each is tried again in a process of its own, one retry at a time, and only a
file that kills that one too fails (or waits for the next scan if it was SIGKILLed: memory).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from insight.errors import NotReady
from insight.inference.audio import MelConfig, MelExtractor
from insight.inference.model import AudioSpec
from insight.watcher.decode import DecodeFailed, Limits, decode_in_mode
from insight.watcher.guard import Budget

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class FeatureJob:
    """One file's host work, as it crosses to a process (no stop flag: see the module)."""

    path: Path
    mode: str
    sampled_windows: int
    spec: AudioSpec
    mel: MelConfig
    max_bytes: int | None
    max_audio_s: float | None
    max_decode_s: float | None


@dataclass
class Features:
    features: np.ndarray  # [windows, 1, frames, n_mels]
    duration_s: float
    metadata: dict[str, Any] = field(default_factory=dict)


def feature_job(
    path: Path, mode: str, sampled_windows: int, spec: AudioSpec, mel: MelConfig, limits: Limits
) -> FeatureJob:
    budget = limits.budget.seconds
    return FeatureJob(
        path, mode, sampled_windows, spec, mel, limits.max_bytes, limits.max_audio_s, budget
    )


@lru_cache(maxsize=4)
def _extractor(cfg: MelConfig) -> MelExtractor:
    return MelExtractor(cfg)


def features_of(job: FeatureJob) -> Features:
    """Runs in a worker process; raises what ``decode_in_mode`` raises."""
    limits = Limits(job.max_bytes, job.max_audio_s, Budget(job.max_decode_s))
    decoded = decode_in_mode(job.path, job.mode, job.sampled_windows, job.spec, limits)
    return Features(_extractor(job.mel)(decoded.windows), decoded.duration_s, decoded.metadata)


def _one_blas_thread() -> None:
    """Each process is one core's worth: numpy's BLAS threads (the filterbank's matmul) would
    busy-wait on the others' cores (2 processes on 2 cores ran at half speed)."""
    threadpool_limits(limits=1, user_api="blas")


def _spawn(n: int) -> ProcessPoolExecutor:
    """Spawned, not forked: the scanning process has threads (and maybe a GPU context) that a
    fork would copy in an unknown state."""
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_one_blas_thread)


def _retry_process(fn: Callable[[Any], Any], job: Any, conn: Connection) -> None:
    """A retry's process: the result or the exception back through ``conn``."""
    _one_blas_thread()
    try:
        conn.send((True, fn(job)))
    except Exception as exc:
        conn.send((False, exc))


def _receive(conn: Connection) -> tuple[bool, Any] | None:
    try:
        return conn.recv()  # type: ignore[no-any-return]
    except EOFError:  # the process died
        return None


class HostProcesses:
    """``n`` worker processes, replaced when one of them dies."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._pool = _spawn(n)
        self._retry = asyncio.Lock()  # retries run one at a time: see the module
        self.replaced = 0  # pools replaced after a process died
        self.jobs = 0

    async def run(self, fn: Callable[[T], R], job: T) -> R:
        self.jobs += 1
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            return await loop.run_in_executor(pool, fn, job)
        except BrokenProcessPool:
            if self._pool is pool:  # the first of its files to notice replaces it
                self._pool, self.replaced = _spawn(self.n), self.replaced + 1
                pool.shutdown(wait=False, cancel_futures=True)
        async with self._retry:
            return await self._alone(fn, job)  # type: ignore[no-any-return]

    async def _alone(self, fn: Callable[[T], R], job: T) -> Any:
        """``job`` in a process of its own, the only retry running: if that process dies too,
        this file killed it (a crash fails it; SIGKILL, the OOM killer's way, leaves it for
        the next scan: memory may have been short for another reason)."""
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_retry_process, args=(fn, job, theirs), daemon=True)
        proc.start()
        theirs.close()
        got: tuple[bool, Any] | None = None
        try:
            got = await asyncio.to_thread(_receive, ours)
        finally:
            if got is None and proc.is_alive():  # cancelled meanwhile
                proc.kill()
            await asyncio.to_thread(proc.join)
            ours.close()
        if got is None:
            if proc.exitcode == -signal.SIGKILL:
                raise NotReady("its decoding process was killed (out of memory?): next scan")
            raise DecodeFailed(f"it kills the process decoding it (exit code {proc.exitcode})")
        ok, value = got
        if not ok:
            raise value
        return value

    def shutdown(self) -> None:
        """Queued files are cancelled; a file being decoded ends at its next packet past its
        decode budget (a stuck decoder does not)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
