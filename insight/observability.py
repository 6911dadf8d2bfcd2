"""A periodic collector for the gauges nobody updates on the hot path.

Store sizes per collection, messages per JetStream stream and the backlog of the durable event
consumers (the bus-side queue depth). The request, inference, event and session metrics are
updated where the work happens; this fills in what has to be asked for.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from insight.bus import subjects
from insight.metrics import BUS_PENDING, STORE_POINTS, STREAM_MESSAGES
from insight.tasks import cancel_and_wait

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from insight.state import StoreSlot

log = logging.getLogger("insight.metrics")

STREAMS = (subjects.EVENTS_STREAM, subjects.AUDIO_STREAM, subjects.DLQ_STREAM)


def consumers(instance_id: str) -> tuple[str, ...]:
    return (subjects.LIBRARY_CONSUMER, subjects.playback_consumer(instance_id))


class MetricsCollector:
    """Refreshes store and bus gauges every ``interval_s``; ``start()``/``stop()`` like a
    worker component."""

    def __init__(
        self,
        stores: StoreSlot,
        js: JetStreamContext | None,
        instance_id: str,
        interval_s: float = 15.0,
    ) -> None:
        self.stores, self.js, self.instance_id = stores, js, instance_id
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> MetricsCollector:
        await self.collect()
        self._task = asyncio.create_task(self._loop(), name="metrics-collector")
        return self

    async def stop(self) -> None:
        await cancel_and_wait([self._task])
        self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.collect()
            except Exception as exc:  # a metrics hiccup must never stop the worker
                log.warning("metrics_collect_failed error=%r", exc)

    async def collect(self) -> None:
        await self.collect_store()
        await self.collect_bus()

    async def collect_store(self) -> None:
        store = self.stores.store
        if store is None:
            return
        # Imported here, not at module level: importing usearch (via insight.storage) before
        # onnxruntime crashes the interpreter; by now the worker has loaded both.
        from insight.storage.base import COLLECTIONS

        for name in COLLECTIONS:
            try:
                STORE_POINTS.labels(collection=name).set(await store.count(name))
            except Exception as exc:
                log.debug("store_count_failed collection=%s error=%r", name, exc)

    async def collect_bus(self) -> None:
        js = self.js
        if js is None:
            return
        for stream in STREAMS:
            try:
                info = await js.stream_info(stream)
            except Exception as exc:
                log.debug("stream_info_failed stream=%s error=%r", stream, exc)
                continue
            STREAM_MESSAGES.labels(stream=stream).set(info.state.messages)
        for consumer in consumers(self.instance_id):
            try:
                ci = await js.consumer_info(subjects.EVENTS_STREAM, consumer)
            except Exception as exc:
                log.debug("consumer_info_failed consumer=%s error=%r", consumer, exc)
                continue
            BUS_PENDING.labels(consumer=consumer, state="pending").set(ci.num_pending or 0)
            BUS_PENDING.labels(consumer=consumer, state="ack_pending").set(ci.num_ack_pending or 0)
            BUS_PENDING.labels(consumer=consumer, state="redelivered").set(ci.num_redelivered or 0)
