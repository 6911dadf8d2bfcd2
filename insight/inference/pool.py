"""Micro-batching of concurrent embedding requests, run off the event loop.

Requests wait at most ``max_wait_ms`` for company, up to ``max_batch`` items per batch. At most
``runners`` batches run at once, each on its own worker thread (default 1: one batch at a time
using the whole ONNX Runtime thread pool, so text and audio batches never fight over the cores;
bulk analysis gets more throughput from ``runners`` = cores with a pool of one thread). The
queue is bounded: past ``max_queue`` pending requests a caller gets ``Busy`` at once instead of
memory growing.

Bulk work (the folder watcher's tracks in ``insight serve``, ``bulk=True``) never holds a runner
that interactive work (text, stream windows, ``embed-audio``) needs: it has ``runners`` runners
of its own, and a track is cut into batches of ``bulk_batch`` windows so the two share the cores
in small steps. Measured (bench/polite.py, BENCHMARKS.md): one shared runner that gave the next
batch to interactive work first still made a search wait for the bulk window in flight (p99
3.3x idle); runners of its own brought that to 1.5x, and the scan ran faster too. A bulk batch
also starts only once interactive work has been quiet for ``QUIET_S`` (waiting at most
``YIELD_MAX_S``, so a scan still moves under steady traffic): a search then shares the cores
with at most the bulk batches already in flight, not with each next one. Interactive: texts
not marked ``background`` (a search, not a scan's track sentence) and non-bulk windows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Literal, Protocol

import numpy as np

from insight.config import InferenceSettings
from insight.errors import BadRequest, Busy, Conflict, NotReady
from insight.inference.model import EmbeddingModel, track_vector
from insight.tasks import cancel_and_wait

log = logging.getLogger(__name__)

QUIET_S = 0.05  # a bulk batch waits until interactive work has been quiet this long...
YIELD_MAX_S = 1.0  # ...but never longer than this

Kind = Literal["text", "audio"]
Lane = Literal["text", "audio", "bulk"]  # one queue and batcher each; "bulk" holds audio


class Offload(Protocol):
    """Somewhere else to embed (``insight.scale.remote``); None: nowhere, embed here."""

    async def embed(
        self,
        kind: Kind,
        items: Any,
        model_id: str,
        local: Callable[[Any], Awaitable[np.ndarray]],
        wait: bool = True,
    ) -> np.ndarray | None: ...


@dataclass
class _Job:
    kind: Kind
    items: Any  # list[str] for text, np.ndarray [B, N] for audio
    size: int
    future: asyncio.Future[np.ndarray]
    rate: int | None = None  # audio: the sample rate the windows were cut at
    yields: bool = True  # bulk: held back while interactive work runs (not another node's)


@dataclass
class PoolStats:
    batches: int = 0
    items: int = 0
    rejected: int = 0
    last_batch_size: int = 0
    last_batch_s: float = 0.0
    busy_s: float = 0.0
    bulk_yields: int = 0  # bulk batches that waited for interactive work to end
    bulk_yield_s: float = 0.0
    batch_sizes: dict[str, list[int]] = field(default_factory=lambda: {"text": [], "audio": []})

    def record(self, kind: Kind, size: int, seconds: float) -> None:
        self.batches += 1
        self.items += size
        self.last_batch_size = size
        self.last_batch_s = seconds
        self.busy_s += seconds
        sizes = self.batch_sizes[kind]
        sizes.append(size)
        del sizes[:-1000]  # keep the recent history only


class InferencePool:
    def __init__(self, model: EmbeddingModel, settings: InferenceSettings):
        self._model = model
        self.settings = settings
        self.stats = PoolStats()
        self._queues: dict[Lane, asyncio.Queue[_Job]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.runners)  # interactive batches
        self._bulk_slots = asyncio.Semaphore(settings.runners)  # background scan batches
        self._executor: ThreadPoolExecutor | None = None
        self._pending = 0
        self._interactive = 0  # interactive requests submitted and not answered yet
        self._quiet_since = float("-inf")  # loop time the last of them was answered
        self.remote: Offload | None = None  # inference workers on the bus (scale-out)

    @property
    def model(self) -> EmbeddingModel:
        return self._model

    @property
    def pending(self) -> int:
        return self._pending

    async def start(self) -> None:
        if self._tasks:
            return
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.runners * 2, thread_name_prefix="insight-infer"
        )
        lanes: tuple[Lane, ...] = ("text", "audio", "bulk")
        for lane in lanes:
            q: asyncio.Queue[_Job] = asyncio.Queue()
            self._queues[lane] = q
            self._tasks.append(asyncio.create_task(self._batcher(lane, q), name=f"pool-{lane}"))

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        await cancel_and_wait(list(self._running))
        for q in self._queues.values():
            while not q.empty():
                job = q.get_nowait()
                if not job.future.done():
                    job.future.set_exception(NotReady("inference pool closed"))
        executor, self._executor = self._executor, None
        if executor is not None:  # a batch still in its thread ends there: the loop serves on
            await asyncio.to_thread(executor.shutdown, wait=True)

    async def swap(self, model: EmbeddingModel) -> None:
        """Use ``model`` for every batch formed from now on; batches in flight finish as is."""
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, model.warmup)
        old, self._model = self._model, model
        log.info("model_swapped old=%s new=%s", old.model_id, model.model_id)

    # --- requests -----------------------------------------------------------------------

    async def embed_texts(self, texts: list[str], background: bool = False) -> np.ndarray:
        """Vectors of ``texts``; ``background`` ones (ingesting metadata or an analysed track,
        not a search) do not hold a scan back as interactive requests do."""
        texts = list(texts)
        if not texts:
            return np.empty((0, self._model.dim), dtype=np.float32)

        local = partial(self._local_texts, background=background)
        if self.remote is not None:
            model_id = self._model.model_id
            out = await self.remote.embed("text", texts, model_id, local, wait=background)
            if out is not None:
                return out
        return await local(texts)

    async def _local_texts(self, texts: list[str], background: bool = False) -> np.ndarray:
        return await self._submit("text", texts, len(texts), interactive=not background)

    async def embed_windows(
        self,
        windows: np.ndarray,
        bulk: bool = False,
        rate: int | None = None,
        yields: bool = True,
    ) -> np.ndarray:
        """Vectors of ``windows``; ``bulk`` work (a background scan) runs on its own runners.

        ``rate``: the sample rate the windows were cut at (the model's when they were cut); a
        batch whose model has another one (swapped to another family meanwhile) refuses them
        with ``Conflict`` instead of embedding audio at the wrong rate. ``yields=False``: bulk
        work another node asked for, which its own timeout bounds, is not held back here."""
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim == 1:
            windows = windows[None, :]
        if windows.ndim != 2 or windows.shape[0] == 0 or windows.shape[1] == 0:
            raise BadRequest(f"expected audio windows [B, N], got shape {windows.shape}")
        if self.remote is not None and (rate is None or rate == self._model.sample_rate):
            # (windows cut at another rate go the local way, which refuses them)

            async def local(part: np.ndarray) -> np.ndarray:
                return await self._local_windows(part, bulk, rate, yields)

            model_id = self._model.model_id
            out = await self.remote.embed("audio", windows, model_id, local, wait=bulk)
            if out is not None:
                return out
        return await self._local_windows(windows, bulk, rate, yields)

    async def _local_windows(
        self, windows: np.ndarray, bulk: bool, rate: int | None = None, yields: bool = True
    ) -> np.ndarray:
        if not bulk:
            return await self._submit("audio", windows, windows.shape[0], rate)
        step, n = self.settings.bulk_batch, windows.shape[0]
        parts = [
            await self._submit("bulk", windows[i : i + step], min(step, n - i), rate, yields)
            for i in range(0, n, step)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    async def embed_features(self, features: np.ndarray, rate: int | None = None) -> np.ndarray:
        """Vectors of log-mel ``features`` ``[B, 1, frames, n_mels]`` made with the model's
        ``mel_config`` (by ``insight scan``'s processes: no model swap there; another mel setup
        of the same shape would go unnoticed); never sent to inference workers."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 4 or features.shape[0] == 0:
            raise BadRequest(f"expected features [B, 1, frames, mels], got {features.shape}")
        return await self._submit("audio", features, features.shape[0], rate, interactive=False)

    async def embed_audio(
        self, mono: np.ndarray, window_s: float, hop_s: float
    ) -> tuple[np.ndarray, int]:
        """A track vector of ``mono`` (at the model's rate) and its number of windows."""
        model = self._model
        windows = model.split_windows(mono, model.audio_spec(window_s, hop_s))
        vectors = await self.embed_windows(windows, rate=model.sample_rate)
        return track_vector(vectors), int(windows.shape[0])

    async def _submit(
        self,
        lane: Lane,
        items: Any,
        size: int,
        rate: int | None = None,
        yields: bool = True,
        interactive: bool = True,
    ) -> np.ndarray:
        if not self._tasks:
            raise NotReady("inference pool is not running")
        if self._pending >= self.settings.max_queue:
            self.stats.rejected += 1
            raise Busy(f"inference queue full ({self._pending} pending), retry later")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending += 1
        interactive = interactive and lane != "bulk"
        if interactive:
            self._interactive += 1
        try:
            kind: Kind = "text" if lane == "text" else "audio"
            self._queues[lane].put_nowait(_Job(kind, items, size, fut, rate, yields))
            return await fut
        finally:
            self._pending -= 1
            if interactive:
                self._interactive -= 1
                self._quiet_since = loop.time()

    # --- batching -----------------------------------------------------------------------

    async def _batcher(self, lane: Lane, q: asyncio.Queue[_Job]) -> None:
        loop = asyncio.get_running_loop()
        kind: Kind = "text" if lane == "text" else "audio"
        bulk = lane == "bulk"
        max_batch = self.settings.bulk_batch if bulk else self.settings.max_batch
        wait_s = self.settings.max_wait_ms / 1000.0
        while True:
            first = await q.get()
            jobs = [first]
            slots = self._bulk_slots if bulk else self._slots
            try:
                await slots.acquire()  # collect company while every runner is busy
                try:
                    if bulk and first.yields:
                        await self._yield_to_interactive()
                    await self._company(q, jobs, max_batch, loop.time() + wait_s)
                except BaseException:
                    slots.release()
                    raise
            except asyncio.CancelledError:  # the pool closes: nobody else answers these
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(NotReady("inference pool closed"))
                raise
            jobs = [j for j in jobs if not j.future.done()]  # callers that gave up
            # the model is captured now: a swap does not affect a batch already formed
            run = self._run(kind, jobs, self._model, slots)
            task = asyncio.create_task(run, name=f"pool-run-{kind}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    @staticmethod
    async def _company(
        q: asyncio.Queue[_Job], jobs: list[_Job], max_batch: int, deadline: float
    ) -> None:
        """More jobs into ``jobs`` until ``max_batch`` items or ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        n = sum(j.size for j in jobs)
        while n < max_batch:
            remaining = deadline - loop.time()
            try:
                job = (
                    q.get_nowait() if remaining <= 0 else await asyncio.wait_for(q.get(), remaining)
                )
            except (asyncio.QueueEmpty, TimeoutError):
                return
            jobs.append(job)
            n += job.size

    async def _yield_to_interactive(self) -> None:
        """Until no interactive request has been pending for ``QUIET_S`` (``YIELD_MAX_S`` at
        most): a bulk window started meanwhile would share the cores with each of them."""
        loop = asyncio.get_running_loop()
        start = now = loop.time()
        while now - start < YIELD_MAX_S and (
            self._interactive or now - self._quiet_since < QUIET_S
        ):
            await asyncio.sleep(QUIET_S / 5)
            now = loop.time()
        if now > start:  # it waited
            self.stats.bulk_yields += 1
            self.stats.bulk_yield_s += now - start

    async def _run(
        self, kind: Kind, jobs: list[_Job], model: EmbeddingModel, slots: asyncio.Semaphore
    ) -> None:
        """One batch (audio: one per input shape) on a runner; frees the runner slot."""
        try:
            if kind == "audio":  # only windows of one length (or features) share a batch
                groups: dict[tuple[int, ...], list[_Job]] = {}
                for j in jobs:
                    why = _misfit(j, model)
                    if why is not None:
                        msg = f"the model changed to {model.model_id} {why}: send it again"
                        j.future.set_exception(Conflict(msg))
                        continue
                    groups.setdefault(j.items.shape[1:], []).append(j)
                for group in groups.values():
                    await self._run_batch(kind, group, model)
            elif jobs:
                await self._run_batch(kind, jobs, model)
        finally:
            slots.release()
            for j in jobs:  # only when the pool closed under this batch
                if not j.future.done():
                    j.future.set_exception(NotReady("inference pool closed"))

    async def _run_batch(self, kind: Kind, jobs: list[_Job], model: EmbeddingModel) -> None:
        assert self._executor is not None
        size = sum(j.size for j in jobs)
        t0 = time.perf_counter()
        try:
            if kind == "text":
                payload: Any = [t for j in jobs for t in j.items]
                fn: Callable[[Any], np.ndarray] = model.embed_text
            else:
                items = [j.items for j in jobs]  # one job (a whole track): no 46 MB copy
                payload = items[0] if len(items) == 1 else np.concatenate(items, axis=0)
                features = payload.ndim == 4  # made on the host: pool.embed_features
                fn = model.embed_features if features else model.embed_windows  # type: ignore[attr-defined]
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, fn, payload)
        except Exception as exc:  # the batcher must survive any failure
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        seconds = time.perf_counter() - t0
        self.stats.record(kind, size, seconds)
        _observe(kind, size, seconds, self._pending)
        start = 0
        for j in jobs:
            if not j.future.done():
                j.future.set_result(result[start : start + j.size])
            start += j.size


def _observe(kind: str, size: int, seconds: float, pending: int) -> None:
    try:
        from insight import metrics
    except ImportError:  # metrics are optional for the engine
        return
    with contextlib.suppress(Exception):
        metrics.INFERENCE_BATCH.labels(kind).observe(size)
        metrics.INFERENCE_SECONDS.labels(kind).observe(seconds)
        metrics.INFERENCE_QUEUE.set(pending)


def _misfit(job: _Job, model: EmbeddingModel) -> str | None:
    """Why audio made for another model (swapped to ``model`` meanwhile) cannot run on it."""
    if job.rate is not None and job.rate != model.sample_rate:
        return f"({model.sample_rate} Hz) while this audio was cut at {job.rate} Hz"
    cfg = getattr(model, "mel_config", None)
    if job.items.ndim == 4 and (cfg is None or job.items.shape[2:] != (cfg.frames, cfg.n_mels)):
        return "while these features were made for another"
    return None
