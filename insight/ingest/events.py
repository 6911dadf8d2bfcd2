"""Library and playback events from JetStream (stream ``INSIGHT_EVENTS``).

Durable pull consumers, explicit ack after the write, bounded redelivery with backoff. Poison
messages (undecodable, invalid) are terminated and copied with their reason to the dead-letter
stream. Library events are applied in stream order per track: a per-track "last applied
sequence" in KV makes a late redelivery of an older event a no-op, so the store ends in the
state of the newest event whatever crashes happen in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from insight.bus import subjects
from insight.bus.streams import versions_bucket
from insight.codec import pack, unpack
from insight.errors import InsightError
from insight.ingest.parse import PlaybackEvent, Poison, TrackEvent, parse_library, parse_playback
from insight.library import TextItem
from insight.metrics import EVENTS

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

    from insight.app import App

log = logging.getLogger("insight.events")

MAX_DELIVER = 5
BACKOFF = [5.0, 15.0, 30.0, 60.0]
BATCH = 64


def consumer_config(
    name: str, filter_subject: str, inactive_threshold: float | None = None
) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=name,
        filter_subject=filter_subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=BACKOFF[0],
        max_deliver=MAX_DELIVER,
        backoff=BACKOFF,
        max_ack_pending=BATCH * 4,
        inactive_threshold=inactive_threshold,
    )


def dlq_subject(subject: str) -> str:
    return f"{subjects.DLQ_PREFIX}.{subject.removeprefix('insight.')}"


def _header(value: str) -> str:
    return " ".join(value.split())[:500]


@dataclass
class _Pending:
    msg: Msg
    event: TrackEvent
    seq: int


class EventConsumers:
    def __init__(self, app: App) -> None:
        self.app = app
        self.versions: KeyValue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subs: list[Any] = []
        self._stopping = asyncio.Event()

    @property
    def js(self) -> JetStreamContext:
        assert self.app.js is not None
        return self.app.js

    async def start(self) -> None:
        self.versions = await versions_bucket(self.js)
        # Library events: one shared consumer, each event applied once to the shared store.
        # Playback: history lives in each data dir, so each data dir has its own consumer
        # (dropped by the server after 30 idle days when that data dir is gone).
        playback = subjects.playback_consumer(self.app.instance_id)
        for name, filt, handler, idle in (
            (subjects.LIBRARY_CONSUMER, subjects.LIBRARY_EVENTS, self._library_batch, None),
            (playback, subjects.PLAYBACK_EVENTS, self._playback_batch, 30 * 86400.0),
        ):
            psub = await self.js.pull_subscribe(
                filt,
                durable=name,
                stream=subjects.EVENTS_STREAM,
                config=consumer_config(name, filt, idle),
            )
            self._subs.append(psub)
            self._tasks.append(asyncio.create_task(self._loop(psub, handler), name=name))

    async def stop(self) -> None:
        """Stop fetching; a batch in progress finishes (or is redelivered after ack_wait)."""
        self._stopping.set()
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
        for psub in self._subs:  # a pull subscription's leftovers would stall the drain
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _loop(self, psub: Any, handler: Any) -> None:
        while not self._stopping.is_set():
            if self.app.pool is None or self.app.store is None:
                await asyncio.sleep(0.5)  # nothing can be written yet: leave events queued
                continue
            try:
                msgs = await psub.fetch(BATCH, timeout=1)
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
                event = parse_library(msg.subject, unpack(msg.data))
            except (Poison, InsightError) as exc:
                await self.dead_letter(msg, str(exc))
                continue
            if event.kind == "sync":
                await self._sync_completed(msg)
                continue
            seq = msg.metadata.sequence.stream
            prev = latest.get(event.track_id)
            if prev is not None:  # an older event of the same batch is superseded
                stale.append(prev.msg)
            latest[event.track_id] = _Pending(msg, event, seq)
        for p in list(latest.values()):
            if await self._applied_seq(p.event.track_id) >= p.seq:
                stale.append(latest.pop(p.event.track_id).msg)
        for msg in stale:
            await msg.ack()
            EVENTS.labels(kind="library", outcome="superseded").inc()
        if latest:
            await self._apply(list(latest.values()))

    async def _apply(self, pending: list[_Pending]) -> None:
        library = self.app.services["library"]
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
        except Exception as exc:
            log.warning("library_batch_failed size=%d error=%s", len(pending), exc)
            for p in pending:
                await self.retry_or_dead_letter(p.msg, exc)
            return
        assert self.versions is not None
        for p in pending:
            await self.versions.put(self._version_key(p.event.track_id), str(p.seq).encode())
            await p.msg.ack()
            EVENTS.labels(kind=p.event.kind, outcome="processed").inc()

    async def _sync_completed(self, msg: Msg) -> None:
        """A library sync finished: announce what we hold so the publisher can backfill."""
        stats = await self.app.require_store().stats()
        assert self.app.nc is not None
        await self.app.nc.publish(
            subjects.BACKFILL_NEEDED,
            pack({"collections": stats.collections, "timestamp": int(time.time())}),
        )
        await msg.ack()
        EVENTS.labels(kind="sync", outcome="processed").inc()

    # --- playback ------------------------------------------------------------------------

    async def _playback_batch(self, msgs: list[Msg]) -> None:
        history = self.app.services["history"]
        for msg in msgs:
            try:
                event: PlaybackEvent | None = parse_playback(msg.subject, unpack(msg.data))
            except (Poison, InsightError) as exc:
                await self.dead_letter(msg, str(exc))
                continue
            try:
                if event is not None and event.kind == "played":
                    await history.record_play(
                        event.user_id,
                        event.track_id,
                        event.seconds_played,
                        event.duration,
                        event.fully_played,
                        event.timestamp or int(msg.metadata.timestamp.timestamp()),
                    )
                elif event is not None:
                    await history.set_favorite(
                        event.user_id, event.track_id, event.kind == "favorite", event.timestamp
                    )
            except Exception as exc:
                await self.retry_or_dead_letter(msg, exc)
                continue
            await msg.ack()
            EVENTS.labels(kind="playback", outcome="processed" if event else "ignored").inc()
