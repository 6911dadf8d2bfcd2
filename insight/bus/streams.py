"""JetStream streams and KV buckets, created idempotently by every worker at start."""

from __future__ import annotations

import contextlib

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from insight.bus import subjects

DAY = 24 * 3600.0

STREAMS = (
    StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=[subjects.EVENTS_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=7 * DAY,
        max_bytes=1 << 30,
        duplicate_window=600.0,
        discard=DiscardPolicy.OLD,
    ),
    StreamConfig(
        name=subjects.DLQ_STREAM,
        subjects=[subjects.DLQ_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=30 * DAY,
        max_bytes=256 << 20,
    ),
    StreamConfig(
        name=subjects.AUDIO_STREAM,
        subjects=[subjects.AUDIO_ALL],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        max_age=DAY,
        max_bytes=8 << 30,
        discard=DiscardPolicy.NEW,
    ),
)


async def ensure_streams(js: JetStreamContext) -> None:
    for cfg in STREAMS:
        try:
            await js.add_stream(cfg)
        except BadRequestError:
            # Exists with another config (e.g. an operator's limits): keep theirs.
            with contextlib.suppress(BadRequestError):
                await js.update_stream(cfg)


async def sessions_bucket(js: JetStreamContext) -> KeyValue:
    return await js.create_key_value(
        KeyValueConfig(bucket=subjects.SESSIONS_BUCKET, history=1, ttl=DAY)
    )


async def versions_bucket(js: JetStreamContext) -> KeyValue:
    """Last applied event sequence per track: replays and late redeliveries change nothing."""
    return await js.create_key_value(KeyValueConfig(bucket=subjects.VERSIONS_BUCKET, history=1))
