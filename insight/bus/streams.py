"""JetStream streams and KV buckets, created idempotently by every worker at start.

``replicas`` (``INSIGHT_NATS__REPLICAS``) is the replica count of what is created here: 3 on a
3-node cluster keeps every message through the loss of one server. An existing stream or bucket
never loses replicas to a worker configured with fewer (the larger count wins).
"""

from __future__ import annotations

import contextlib
import dataclasses

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, KeyValueConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
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


async def ensure_stream(js: JetStreamContext, cfg: StreamConfig, replicas: int = 1) -> None:
    """Create ``cfg`` with ``replicas``, or bring an existing stream to it (keeping more)."""
    cfg = dataclasses.replace(cfg, num_replicas=replicas)
    try:
        await js.add_stream(cfg)
    except BadRequestError:
        # Exists with another config (e.g. an operator's limits): keep theirs.
        with contextlib.suppress(BadRequestError, NotFoundError):
            info = await js.stream_info(cfg.name or "")
            cfg.num_replicas = max(replicas, info.config.num_replicas or 1)
            await js.update_stream(cfg)


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    for cfg in STREAMS:
        await ensure_stream(js, cfg, replicas)


async def open_bucket(js: JetStreamContext, cfg: KeyValueConfig) -> KeyValue:
    """The bucket as it exists (whatever its replicas or TTL), else created with ``cfg``."""
    try:
        return await js.key_value(cfg.bucket)
    except (BucketNotFoundError, NotFoundError):
        pass
    try:
        return await js.create_key_value(cfg)
    except BadRequestError:  # created meanwhile by another node with another config
        return await js.key_value(cfg.bucket)


async def sessions_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    return await open_bucket(
        js,
        KeyValueConfig(bucket=subjects.SESSIONS_BUCKET, history=1, ttl=DAY, replicas=replicas),
    )


async def versions_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """Last applied event sequence per track: replays and late redeliveries change nothing."""
    return await open_bucket(
        js, KeyValueConfig(bucket=subjects.VERSIONS_BUCKET, history=1, replicas=replicas)
    )
