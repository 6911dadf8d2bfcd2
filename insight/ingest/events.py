"""Library and playback events from JetStream (stream ``INSIGHT_EVENTS``).

Durable pull consumers, explicit ack after the write, bounded redelivery with backoff. Poison
messages (undecodable, invalid) are terminated and copied with their reason to the dead-letter
stream. A body is msgpack, or JSON when its ``Content-Type`` header says so (the rules of
requests). Library events are applied in stream order per track: a per-track "last applied
sequence" in KV makes a late redelivery of an older event a no-op, so the store ends in the
state of the newest event whatever crashes happen in between. A complete backfill (framed by
the bridge's markers) deletes the MA tracks it did not list. Playback events are applied to the
listening history exactly once per stream sequence (see ``ListeningHistory.apply_event``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from insight.bus import subjects, wire
from insight.bus.streams import versions_bucket
from insight.codec import format_of, pack, unpack
from insight.errors import InsightError
from insight.history import ListeningHistory
from insight.ingest.backfill import BackfillReconciler
from insight.ingest.links import link_audio
from insight.ingest.listens import IDLE_S
from insight.ingest.parse import PlaybackEvent, Poison, TrackEvent, parse_library, parse_playback
from insight.library import TextItem
from insight.metrics import EVENTS

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from insight.library import Library
    from insight.state import ModelSlot, StoreSlot

log = logging.getLogger("insight.events")

MAX_DELIVER = 5
BACKOFF = [5.0, 15.0, 30.0, 60.0]
BATCH = 64


def consumer_config(
    name: str,
    filter_subject: str,
    inactive_threshold: float | None = None,
    max_ack_pending: int = BATCH * 4,
) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=name,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=BACKOFF[0],
        max_deliver=MAX_DELIVER,
        backoff=BACKOFF,
        max_ack_pending=max_ack_pending,
        inactive_threshold=inactive_threshold,
    )


def dlq_subject(subject: str) -> str:
    return f"{subjects.DLQ_PREFIX}.{subject.removeprefix('insight.')}"


def _header(value: str) -> str:
    return " ".join(value.split())[:500]


def decode(msg: Msg) -> Any:
    """The body by its ``Content-Type`` (msgpack when absent), as requests are decoded."""
    ctype = (msg.headers or {}).get(wire.CONTENT_TYPE)
    fmt = format_of(ctype)
    if fmt is None:
        raise Poison(f"unsupported Content-Type {ctype!r}: use application/msgpack or JSON")
    return unpack(msg.data, fmt)


@dataclass
class _Pending:
    msg: Msg
    event: TrackEvent
    seq: int


def _recordings(pending: list[_Pending]) -> dict[str, str]:
    """MA track id → MusicBrainz recording id, for the upserts that carry one."""
    out = {}
    for p in pending:
        mbid = getattr(p.event.metadata, "mbid", None)
        if mbid:
            out[p.event.track_id] = str(mbid)
    return out


class EventConsumers:
    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        instance_id: str,
        loaded: ModelSlot,
        stores: StoreSlot,
        library: Library,
        history: ListeningHistory,
        replicas: int = 1,
    ) -> None:
        self.nc, self._js, self.instance_id = nc, js, instance_id
        self.replicas = replicas  # of the versions bucket (INSIGHT_NATS__REPLICAS)
        self.loaded, self.stores, self.library, self.history = loaded, stores, library, history
        self.versions: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._stopping = asyncio.Event()
        self.idle_s = IDLE_S
        self.backfills: BackfillReconciler | None = None

    @property
    def js(self) -> JetStreamContext:
        return self._js

    async def start(self) -> None:
        self.versions = await versions_bucket(self.js, self.replicas)
        self.backfills = BackfillReconciler(
            self.stores, self.library, self.versions, self._version_key
        )
        # Library events: one shared consumer, each event applied once to the shared store
        # (out of order after a crash is fine: the per-track version guard keeps the newest).
        # Playback: history lives in each data dir, so each data dir has its own consumer
        # (dropped by the server after 30 idle days when that data dir is gone). Listens fold
        # reports in order, so one message at a time: a redelivery after a crash comes before
        # anything newer (created or updated so, also for a consumer an older version made).
        playback = subjects.playback_consumer(self.instance_id)
        library_cfg = consumer_config(subjects.LIBRARY_CONSUMER, subjects.LIBRARY_EVENTS)
        playback_cfg = consumer_config(
            playback, subjects.PLAYBACK_EVENTS, 30 * 86400.0, max_ack_pending=1
        )
        await self.js.add_consumer(subjects.EVENTS_STREAM, config=playback_cfg)
        for cfg, handler, batch in (
            (library_cfg, self._library_batch, BATCH),
            (playback_cfg, self._playback_batch, 1),
        ):
            name, filt = str(cfg.durable_name), str(cfg.filter_subject)
            psub = await self.js.pull_subscribe(
                filt, durable=name, stream=subjects.EVENTS_STREAM, config=cfg
            )
            self._subs.append(psub)
            self._tasks.append(asyncio.create_task(self._loop(psub, handler, batch), name=name))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="listen-sweep"))

    async def stop(self) -> None:
        """Stop fetching; a batch in progress finishes (or is redelivered after ack_wait)."""
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        for psub in self._subs:  # a pull subscription's leftovers would stall the drain
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _loop(self, psub: Any, handler: Any, batch: int) -> None:
        while not self._stopping.is_set():
            if self.loaded.pool is None or self.stores.store is None:
                await asyncio.sleep(0.5)  # nothing can be written yet: leave events queued
                continue
            try:
                msgs = await psub.fetch(batch, timeout=1)
            except (NatsTimeout, TimeoutError):  # nats-py raises both for an empty fetch
                continue
            except Exception as exc:
                if self._stopping.is_set():
                    return
                log.warning("fetch_failed error=%r", exc)
                await asyncio.sleep(1)
                continue
            try:
                await handler(msgs)
            except Exception:
                log.exception("batch_crashed size=%d", len(msgs))

    # --- shared --------------------------------------------------------------------------

    async def dead_letter(self, msg: Msg, reason: str) -> None:
        meta = msg.metadata
        headers = {
            "Insight-Dlq-Reason": _header(reason),
            "Insight-Original-Subject": msg.subject,
            "Insight-Stream-Seq": str(meta.sequence.stream),
            "Insight-Deliveries": str(meta.num_delivered),
        }
        await self.js.publish(dlq_subject(msg.subject), msg.data, headers=headers)
        await msg.term()
        EVENTS.labels(kind=msg.subject.rsplit(".", 1)[-1], outcome="dead_lettered").inc()
        log.warning(
            "event_dead_lettered subject=%s seq=%d reason=%s",
            msg.subject,
            meta.sequence.stream,
            reason,
        )

    async def retry_or_dead_letter(self, msg: Msg, err: Exception) -> None:
        deliveries = msg.metadata.num_delivered
        if deliveries >= MAX_DELIVER:
            await self.dead_letter(msg, f"failed after {deliveries} deliveries: {err}")
            return
        EVENTS.labels(kind=msg.subject.rsplit(".", 1)[-1], outcome="redelivered").inc()
        await msg.nak(delay=BACKOFF[min(deliveries, len(BACKOFF)) - 1])

    # --- library -------------------------------------------------------------------------

    def _version_key(self, track_id: str) -> str:
        return "t" + hashlib.sha1(track_id.encode()).hexdigest()

    async def _applied_seq(self, track_id: str) -> int:
        assert self.versions is not None
        try:
            entry = await self.versions.get(self._version_key(track_id))
        except KeyNotFoundError:
            return 0
        return int(entry.value or 0)

    async def _library_batch(self, msgs: list[Msg]) -> None:
        latest: dict[str, _Pending] = {}
        stale: list[Msg] = []
        for msg in msgs:
            try:
                event = parse_library(msg.subject, decode(msg))
            except (Poison, InsightError) as exc:
                await self.dead_letter(msg, str(exc))
                continue
            seq = msg.metadata.sequence.stream
            if event.kind in ("sync", "backfill_started", "backfill_completed"):
                await self._flush_library(latest, stale)  # everything before it first
                latest, stale = {}, []
                await self._library_marker(msg, event, seq)
                continue
            prev = latest.get(event.track_id)
            if prev is not None:  # an older event of the same batch is superseded
                stale.append(prev.msg)
                await self._mark_listed(prev.event)
            latest[event.track_id] = _Pending(msg, event, seq)
        await self._flush_library(latest, stale)

    async def _mark_listed(self, event: TrackEvent) -> None:
        if event.backfill and self.backfills is not None:
            await self.backfills.listed(event.track_id, event.backfill)

    async def _flush_library(self, latest: dict[str, _Pending], stale: list[Msg]) -> None:
        for p in list(latest.values()):
            if await self._applied_seq(p.event.track_id) >= p.seq:
                await self._mark_listed(p.event)
                stale.append(latest.pop(p.event.track_id).msg)
        for msg in stale:
            await msg.ack()
            EVENTS.labels(kind="library", outcome="superseded").inc()
        if latest:
            await self._apply(list(latest.values()))

    async def _library_marker(self, msg: Msg, event: TrackEvent, seq: int) -> None:
        if event.kind == "sync":
            await self._sync_completed(msg)
            return
        assert self.backfills is not None and event.backfill is not None
        if event.kind == "backfill_completed" and not await self._all_before_acked(seq):
            # After a crash, older messages come back only after their ack wait, later than
            # this marker: reconciling now would delete tracks whose listing is still to come.
            await self.retry_or_dead_letter(msg, RuntimeError("earlier events still pending"))
            return
        try:
            if event.kind == "backfill_started":
                await self.backfills.started(event.backfill, seq)
            else:
                await self.backfills.completed(event.backfill, seq, self._applied_seq)
        except Exception as exc:
            await self.retry_or_dead_letter(msg, exc)
            return
        await msg.ack()
        EVENTS.labels(kind=event.kind, outcome="processed").inc()

    async def _apply(self, pending: list[_Pending]) -> None:
        library = self.library
        for p in pending:
            await p.msg.in_progress()
        upserts = [p for p in pending if p.event.kind == "upsert"]
        deletes = [p for p in pending if p.event.kind == "delete"]
        try:
            if upserts:
                await library.ingest_text(
                    [
                        TextItem(p.event.track_id, p.event.metadata, source="event")  # type: ignore[arg-type]
                        for p in upserts
                    ]
                )
            for p in deletes:
                await library.delete_track(p.event.track_id)
            await link_audio(self.stores, _recordings(upserts))
        except Exception as exc:
            log.warning("library_batch_failed size=%d error=%s", len(pending), exc)
            for p in pending:
                await self.retry_or_dead_letter(p.msg, exc)
            return
        assert self.versions is not None
        for p in pending:
            await self.versions.put(self._version_key(p.event.track_id), str(p.seq).encode())
            await self._mark_listed(p.event)
            await p.msg.ack()
            EVENTS.labels(kind=p.event.kind, outcome="processed").inc()

    async def _all_before_acked(self, seq: int, tries: int = 20) -> bool:
        """Every library event before stream sequence ``seq`` is acknowledged (the consumer's
        ack floor, which passes over other subjects' messages, reached ``seq - 1``)."""
        for _ in range(tries):
            info = await self.js.consumer_info(subjects.EVENTS_STREAM, subjects.LIBRARY_CONSUMER)
            if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= seq - 1:
                return True
            await asyncio.sleep(0.05)  # our own acks of this batch may still be in flight
        return False

    async def _sync_completed(self, msg: Msg) -> None:
        """A library sync finished: announce what we hold so the publisher can backfill."""
        stats = await self.stores.require_store().stats()
        await self.nc.publish(
            subjects.BACKFILL_NEEDED,
            pack({"collections": stats.collections, "timestamp": int(time.time())}),
        )
        await msg.ack()
        EVENTS.labels(kind="sync", outcome="processed").inc()

    # --- playback ------------------------------------------------------------------------

    async def _playback_batch(self, msgs: list[Msg]) -> None:
        history = self.history
        consumer = subjects.playback_consumer(self.instance_id)
        for msg in msgs:
            try:
                event = parse_playback(msg.subject, decode(msg))
            except (Poison, InsightError) as exc:
                await self.dead_letter(msg, str(exc))
                continue
            seen = msg.metadata.timestamp.timestamp()
            try:
                await history.apply_event(
                    f"{consumer}:{event.user_id}",
                    msg.metadata.sequence.stream,
                    self._writer(event, seen),
                )
            except Exception as exc:
                await self.retry_or_dead_letter(msg, exc)
                continue
            await msg.ack()
            EVENTS.labels(kind="playback", outcome="processed").inc()

    def _writer(self, event: PlaybackEvent, seen: float) -> Any:
        ts = event.timestamp if event.timestamp is not None else seen
        if event.queue is not None:
            update = event.queue if event.queue.ts >= 0 else replace(event.queue, ts=seen)
            return ListeningHistory.queue_writer(update)
        if event.report is not None:
            report = event.report if event.report.ts >= 0 else replace(event.report, ts=seen)
            return ListeningHistory.report_writer(report, self.idle_s)
        return ListeningHistory.favorite_writer(
            event.user_id,
            event.track_ids,
            event.kind != "unfavorite",
            ts,
            exact=event.kind == "favorites",
        )

    async def _sweep_loop(self) -> None:
        """Book listens nothing was reported for in ``idle_s`` (stopped players)."""
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(60.0, self.idle_s / 4))
            if not self._stopping.is_set():
                try:
                    await self.history.sweep(idle_s=self.idle_s)
                except Exception as exc:
                    log.warning("listen_sweep_failed error=%r", exc)
