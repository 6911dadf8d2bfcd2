"""Options and counters of the Music Assistant bridge, and the MA schemas it tells apart."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# MA API schema from which favorites are per user (``favorite_updated``); below it the
# ``favorite`` flag of a library item is global and changes in ``media_item_updated``.
# Schema 29 (verified against a real server, 2026-02 snapshot) has the global flag.
PER_USER_FAVORITES_SCHEMA = 30


@dataclass
class BridgeStats:
    connections: int = 0
    events: int = 0
    ignored: int = 0
    published: int = 0
    duplicates: int = 0
    publish_errors: int = 0
    backfills: int = 0
    backfilled_tracks: int = 0
    resolved_uris: int = 0
    too_large: int = 0  # messages over NATS' max payload, dropped (logged)


@dataclass
class BridgeOptions:
    page_size: int = 500
    user_id: str | None = None  # favorites' user; None: MA's user of the token (auth/me)
    backfill_on_connect: bool = True
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    queue_size: int = 10_000
    publish_timeout_s: float = 5.0
    backfill_coalesce_s: float = 60.0
    # when an event was seen (played and queue messages' ``timestamp``); replays set their own
    clock: Callable[[], float] = field(default=time.time)
