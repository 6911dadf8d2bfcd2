"""A scan's host work in processes: decode, resample, window (and log-mel features) per file.

Two reasons to decode in processes rather than threads:

* **Speed** (``insight scan``). Threads cannot spread the host work over a many-core host: a
  quarter of a decode is Python holding the GIL (2 threads decode 1.6x as fast as one, 2
  processes 2.0x) and the log-mel features are numpy that holds it throughout (2 threads:
  1.03x). On a 16-core H200 machine (BENCHMARKS.md "Session 9") the GPU sat at 0-9 % with
  threads and 1 000 tracks had not been scanned after five minutes; with processes they took
  59 s. On the same host's CPU alone, 64 tracks took 41 s with threads and 14 s in processes
  ("Session 10"). There each process returns a file's features (``features_of``: 6 MB for 4
  minutes, not its 46 MB of windows) and the inference runners only run the tower.
* **Isolation** (the background scan of ``insight serve``, distributed scan jobs). A file in a
  watched folder may be hostile: one that crashes ffmpeg's decoder would take the server down
  with it, and again at every restart as the watcher comes back to it. In a process it takes
  only that process. There each process returns the windows (``windows_of``), which go the
  usual way (the bulk lane that yields to interactive requests, inference workers), and runs
  at the watcher's nice value.

A process that dies takes every file in flight with it: each is tried again, one at a time,
in a process of its own, and only a file whose process a signal ends again fails (SIGKILL, the
OOM killer's, and an exit without a signal leave it for the next scan). At shutdown the
queued files are cancelled and the processes killed: a decode there has no stop flag, and the
file being decoded is tried again at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from insight.errors import NotReady
from insight.inference.audio import MelConfig, MelExtractor
from insight.inference.model import AudioSpec
from insight.watcher.decode import Decoded, DecodeFailed, Limits, decode_in_mode
from insight.watcher.guard import Budget, Interrupted
from insight.watcher.polite import lower_this_thread

log = logging.getLogger("insight.watcher")

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class FeatureJob:
    """One file's host work, as it crosses to a process (no stop flag: see the module)."""

    path: Path
    mode: str
    sampled_windows: int
    spec: AudioSpec
    mel: MelConfig | None  # None: windows only (a model without a log-mel front end)
    max_bytes: int | None
    max_audio_s: float | None
    max_decode_s: float | None


@dataclass
class Features:
    features: np.ndarray  # [windows, 1, frames, n_mels]
    duration_s: float
    metadata: dict[str, Any] = field(default_factory=dict)


def feature_job(
    path: Path,
    mode: str,
    sampled_windows: int,
    spec: AudioSpec,
    mel: MelConfig | None,
    limits: Limits,
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
    assert job.mel is not None, "features of a model without a log-mel front end"
    decoded = _decoded(job)
    return Features(_extractor(job.mel)(decoded.windows), decoded.duration_s, decoded.metadata)


def windows_of(job: FeatureJob) -> Decoded:
    """Runs in a worker process: the windows (not the whole track's audio, which nothing
    reads once it is windowed) and what else a decode gives; raises what it raises."""
    decoded = _decoded(job)
    decoded.audio = None
    return decoded


def _decoded(job: FeatureJob) -> Decoded:
    limits = Limits(job.max_bytes, job.max_audio_s, Budget(job.max_decode_s))
    decoded = decode_in_mode(job.path, job.mode, job.sampled_windows, job.spec, limits)
    if _trim_after_decode:
        _trim_heap()
    return decoded


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


_trim_after_decode = False  # set in the processes of a background scan (``_start_worker``)


def _trim_heap() -> None:
    """Give a decode's freed memory back to the system. It leaves ~140 MB of small freed
    blocks (a frame's samples at a time, PyAV's frames in reference cycles) that glibc keeps:
    a process that had decoded 4-minute tracks waited for the next file at 301 MB instead of
    162 MB (bench/decode_memory.py). Costs 12-25 ms a file (AMD EPYC), so only a background
    scan's processes, which wait long between files, pay it."""
    trim = _malloc_trim()
    if trim is not None:
        gc.collect()  # PyAV's frames sit in reference cycles until a collection
        trim(0)


def _start_worker(nice: int | None) -> None:
    """Each process is one core's worth: numpy's BLAS threads (the filterbank's matmul) would
    busy-wait on the others' cores (2 processes on 2 cores ran at half speed). ``nice``: a
    background scan's priority (CPU and IO), which the decoder's own threads inherit; its
    processes also give their memory back after each file (``_trim_heap``)."""
    global _trim_after_decode
    threadpool_limits(limits=1, user_api="blas")
    if nice is not None:
        lower_this_thread(nice)
        _trim_after_decode = True


def _spawn(n: int, nice: int | None) -> ProcessPoolExecutor:
    """Spawned, not forked: the scanning process has threads (and maybe a GPU context) that a
    fork would copy in an unknown state."""
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        max_workers=n, mp_context=ctx, initializer=_start_worker, initargs=(nice,)
    )


def _retry_process(fn: Callable[[Any], Any], job: Any, conn: Connection, nice: int | None) -> None:
    """A retry's process: the result or the exception back through ``conn``."""
    try:
        _start_worker(nice)
        conn.send((True, fn(job)))
    except Exception as exc:
        conn.send((False, exc))


def _receive(conn: Connection) -> tuple[bool, Any] | None:
    try:
        return conn.recv()  # type: ignore[no-any-return]
    except EOFError:  # the process died
        return None


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """Python 3.14 has ``kill_workers``; before it, the pool's own process table."""
    kill = getattr(pool, "kill_workers", None)
    if kill is not None:
        kill()
        return
    procs: dict[int, multiprocessing.Process] = getattr(pool, "_processes", None) or {}
    for proc in list(procs.values()):
        with contextlib.suppress(Exception):
            proc.kill()


class HostProcesses:
    """``n`` worker processes (at ``nice``, if given), replaced when one of them dies."""

    def __init__(self, n: int, nice: int | None = None) -> None:
        self.n, self.nice = n, nice
        self._pool = _spawn(n, nice)
        self._retry = asyncio.Lock()  # retries run one at a time: see the module
        self._retrying: multiprocessing.process.BaseProcess | None = None
        self._closed = False
        self.replaced = 0  # pools replaced after a process died
        self.jobs = 0

    async def run(self, fn: Callable[[T], R], job: T) -> R:
        if self._closed:
            raise Interrupted("the watcher is stopping")
        self.jobs += 1
        loop = asyncio.get_running_loop()
        pool = self._pool
        try:
            return await loop.run_in_executor(pool, fn, job)
        except BrokenProcessPool:
            if self._closed:  # killed by shutdown, not by this file
                raise Interrupted("the watcher is stopping") from None
            if self._pool is pool:  # the first of its files to notice replaces it
                self._pool, self.replaced = _spawn(self.n, self.nice), self.replaced + 1
                pool.shutdown(wait=False, cancel_futures=True)
        async with self._retry:
            return await self._alone(fn, job)  # type: ignore[no-any-return]

    async def _alone(self, fn: Callable[[T], R], job: T) -> Any:
        """``job`` in a process of its own, the only retry running: if a signal ends that one
        too, this file killed it (a crash fails it; SIGKILL, the OOM killer's way, leaves it
        for the next scan: memory may have been short for another reason). A process that
        exits without a signal points at the install, not the file: it waits too."""
        if self._closed:
            raise Interrupted("the watcher is stopping")
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_retry_process, args=(fn, job, theirs, self.nice), daemon=True)
        proc.start()
        self._retrying = proc  # killed by shutdown
        theirs.close()
        got: tuple[bool, Any] | None = None
        try:
            got = await asyncio.to_thread(_receive, ours)
        finally:
            if got is None and proc.is_alive():  # cancelled meanwhile
                proc.kill()
            await asyncio.to_thread(proc.join)
            ours.close()
            self._retrying = None
        if got is None:
            self._died(proc.exitcode)
        ok, value = got
        if not ok:
            raise value
        return value

    def _died(self, exitcode: int | None) -> NoReturn:
        """Why a retry's process ended without an answer, as the file's outcome."""
        if self._closed:
            raise Interrupted("the watcher is stopping")
        if exitcode == -signal.SIGKILL:
            raise NotReady("its decoding process was killed (out of memory?): next scan")
        if exitcode is not None and exitcode < 0:
            raise DecodeFailed(f"it kills the process decoding it (signal {-exitcode})")
        log.warning("decoding_process_exited code=%s hint='check the install'", exitcode)
        raise NotReady(f"its decoding process exited (code {exitcode}): next scan")

    def shutdown(self) -> None:
        """Queued files are cancelled and the processes killed (a decode there cannot be
        told to stop; the file is decoded again at the next start)."""
        self._closed = True
        pool = self._pool
        _kill_workers(pool)  # first: shutdown drops the pool's process table
        pool.shutdown(wait=False, cancel_futures=True)
        if self._retrying is not None:
            self._retrying.kill()
