"""Every subject, stream, consumer and bucket the code uses (documented in subjects.md)."""

from __future__ import annotations

# JetStream: inputs from Music Assistant (or anyone).
EVENTS_STREAM = "INSIGHT_EVENTS"
EVENTS_ALL = "insight.events.>"
TRACK_ADDED = "insight.events.library.track.added"
TRACK_UPDATED = "insight.events.library.track.updated"
TRACK_DELETED = "insight.events.library.track.deleted"
SYNC_COMPLETED = "insight.events.library.sync.completed"
BACKFILL_STARTED = "insight.events.library.backfill.started"
BACKFILL_COMPLETED = "insight.events.library.backfill.completed"
PLAYED = "insight.events.playback.played"
FAVORITE = "insight.events.playback.favorite"
UNFAVORITE = "insight.events.playback.unfavorite"
FAVORITES_SNAPSHOT = "insight.events.playback.favorites"
QUEUE = "insight.events.playback.queue"
LIBRARY_EVENTS = "insight.events.library.>"
PLAYBACK_EVENTS = "insight.events.playback.>"
LIBRARY_CONSUMER = "insight-library"
PLAYBACK_CONSUMER_PREFIX = "insight-playback"

# JetStream: poison events, copied here with the reason.
DLQ_STREAM = "INSIGHT_DLQ"
DLQ_ALL = "insight.dlq.>"
DLQ_PREFIX = "insight.dlq"

# JetStream: PCM frames of streaming sessions, one subject per session.
AUDIO_STREAM = "INSIGHT_AUDIO"
AUDIO_ALL = "insight.audio.>"
AUDIO_PREFIX = "insight.audio"
SESSIONS_BUCKET = "insight_sessions"

# Core NATS: what insight announces.
TRACK_ANALYZED = "insight.notify.track.analyzed"
BACKFILL_NEEDED = "insight.notify.library.backfill"
PLAYLIST_UPDATED = "insight.notify.playlist.updated"


def playback_consumer(instance_id: str) -> str:
    """One durable consumer per data dir: every listening-history store gets every event."""
    return f"{PLAYBACK_CONSUMER_PREFIX}-{instance_id}"


def audio_subject(session_id: str) -> str:
    return f"{AUDIO_PREFIX}.{session_id}"


# KV: per-track last applied library-event sequence (ordering across redeliveries).
VERSIONS_BUCKET = "insight_track_versions"

# KV: the lease of the service's store role (insight.bus.lease): one store serves the service.
STORE_LEASE_BUCKET = "insight_store_lease"
STORE_LEASE_KEY = "insight"  # the role: the store behind the `insight` service's queue group

# Core NATS, per worker: the owner of a streaming session finishes or drops it.
WORKER_PREFIX = "insight.worker"


def worker_subject(worker_id: str, action: str) -> str:
    return f"{WORKER_PREFIX}.{worker_id}.session.{action}"


# Scale-out (insight.scale), between insight nodes only.
# Core NATS: inference workers announce themselves and serve embedding requests.
INFER_PREFIX = "insight.internal.infer"
INFER_HELLO = "insight.internal.infer.hello"  # a worker announces itself (and answers DISCOVER)
INFER_BYE = "insight.internal.infer.bye"  # a worker that stops cleanly
INFER_DISCOVER = "insight.internal.infer.discover"  # a store node asks workers to announce now
INFER_QUEUE_GROUP = "insight-infer"

# JetStream: the distributed scan's work queue, and the store node's result subject.
SCAN_STREAM = "INSIGHT_SCAN"
SCAN_WORK = "insight.internal.scan.work"
SCAN_CONSUMER = "insight-scan"
SCAN_RESULT_PREFIX = "insight.internal.scan.result"
