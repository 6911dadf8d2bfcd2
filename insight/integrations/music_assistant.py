"""Music Assistant → insight: follow an MA server's websocket API (``ma_client``) and publish
to JetStream.

The bridge forwards track library events, final playback reports and sync completions (see
``ma_events``), backfills the library (``music/tracks/library_items`` paged with limit/offset)
on every (re)connect, after each ``music_sync_completed`` (MA sends no added/updated events
while it syncs) and when the worker asks on ``insight.notify.library.backfill``. The websocket
reconnects with exponential backoff; publishing retries until JetStream acknowledges.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from insight.bus import subjects
from insight.codec import pack
from insight.integrations.ma_client import MAConnection, MAConnectionClosed, MAError
from insight.integrations.ma_events import (
    MEDIA_ITEM_ADDED,
    MEDIA_ITEM_DELETED,
    MEDIA_ITEM_UPDATED,
    MUSIC_SYNC_COMPLETED,
    FavoriteTracker,
    Outgoing,
    is_track,
    track_message,
    translate,
)
from insight.tasks import cancel_and_wait

log = logging.getLogger("insight.ma")

LIBRARY_TRACKS = "music/tracks/library_items"


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


@dataclass
class BridgeOptions:
    page_size: int = 500
    user_id: str = "default"
    backfill_on_connect: bool = True
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    queue_size: int = 10_000
    publish_timeout_s: float = 5.0
    backfill_coalesce_s: float = 60.0


@dataclass
class MusicAssistantBridge:
    """Follows one MA server and publishes what insight needs to JetStream."""

    ma_url: str
    token: str | None
    nc: NATS
    options: BridgeOptions = field(default_factory=BridgeOptions)
    stats: BridgeStats = field(default_factory=BridgeStats)

    def __post_init__(self) -> None:
        self.js = self.nc.jetstream()
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(self.options.queue_size)
        self.favorites = FavoriteTracker(self.options.user_id)
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._conn: MAConnection | None = None
        self._backfill: asyncio.Task[None] | None = None
        self._backfill_again = False
        self._last_backfill = -1e9

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, forward, reconnect with backoff; returns after ``stop()``."""
        publisher = asyncio.create_task(self._publish_loop(), name="ma-publisher")
        sub = await self.nc.subscribe(subjects.BACKFILL_NEEDED, cb=self._on_backfill_request)
        delay = self.options.backoff_min_s
        try:
            async with aiohttp.ClientSession() as session:
                while not self._stop.is_set():
                    if await self._session(session):
                        delay = self.options.backoff_min_s
                    if self._stop.is_set():
                        break
                    await self._sleep(delay * random.uniform(0.8, 1.2))
                    delay = min(delay * 2, self.options.backoff_max_s)
        finally:
            await sub.unsubscribe()
            await self._flush(self.options.publish_timeout_s)
            await cancel_and_wait([publisher])

    def stop(self) -> None:
        self._stop.set()

    async def _session(self, session: aiohttp.ClientSession) -> bool:
        """One websocket session; True when it connected (resets the backoff)."""
        try:
            conn = await MAConnection.open(session, self.ma_url, self.token, self._on_event)
        except (OSError, aiohttp.ClientError, TimeoutError, MAError, ValueError) as exc:
            log.warning("ma_connect_failed url=%s error=%s", self.ma_url, exc)
            return False
        self._conn = conn
        self.stats.connections += 1
        self.connected.set()
        info = conn.server_info
        log.info(
            "ma_connected url=%s server=%s version=%s schema=%s",
            self.ma_url,
            info.get("server_id"),
            info.get("server_version"),
            info.get("schema_version"),
        )
        if self.options.backfill_on_connect:
            self.request_backfill()
        stopper = asyncio.create_task(self._stop.wait())
        closed = asyncio.create_task(conn.wait_closed())
        try:
            await asyncio.wait({stopper, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
            closed.cancel()
            self.connected.clear()
            self._conn = None
            await self._cancel_backfill()
            await conn.close()
        if not self._stop.is_set():
            log.warning("ma_disconnected url=%s reconnecting", self.ma_url)
        return True

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # --- events ------------------------------------------------------------------------

    async def _on_event(self, message: dict[str, Any]) -> None:
        self.stats.events += 1
        event, data = message.get("event"), message.get("data")
        now = int(time.time())
        out = translate(message, now)
        if out is None:
            self.stats.ignored += 1
        else:
            await self.queue.put(out)
        if event in (MEDIA_ITEM_ADDED, MEDIA_ITEM_UPDATED) and isinstance(data, dict) and out:
            for fav in self.favorites.observe([data], now):
                await self.queue.put(fav)
        elif event == MEDIA_ITEM_DELETED and out is not None:
            self.favorites.forget(str(message.get("object_id")))
        elif event == MUSIC_SYNC_COMPLETED:
            self.request_backfill()

    async def _on_backfill_request(self, msg: Msg) -> None:
        # A worker answers every sync.completed with this request; the sync event itself
        # already started a backfill, so a request right after one finished is served by it.
        log.info("ma_backfill_requested subject=%s", msg.subject)
        self.request_backfill(coalesce=True)

    # --- backfill ----------------------------------------------------------------------

    def request_backfill(self, *, coalesce: bool = False) -> None:
        """Start a backfill now, or once more after the running one.

        ``coalesce``: a running backfill, or one finished in the last ``backfill_coalesce_s``,
        already answers this request.
        """
        if self._conn is None:
            return
        running = self._backfill is not None and not self._backfill.done()
        recent = time.monotonic() - self._last_backfill < self.options.backfill_coalesce_s
        if coalesce and (running or recent):
            return
        if running:
            self._backfill_again = True
            return
        self._backfill = asyncio.create_task(self._backfill_loop(self._conn), name="ma-backfill")

    async def _cancel_backfill(self) -> None:
        self._backfill_again = False
        if self._backfill is not None:
            self._backfill.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._backfill
            self._backfill = None

    async def _backfill_loop(self, conn: MAConnection) -> None:
        while True:
            self._backfill_again = False
            try:
                await self.backfill(conn)
            except (MAError, MAConnectionClosed) as exc:
                log.warning("ma_backfill_failed error=%s", exc)
                return
            if not self._backfill_again:
                return

    async def backfill(self, conn: MAConnection) -> int:
        """Publish every library track as ``track.updated``; returns how many."""
        size, offset, count = self.options.page_size, 0, 0
        started = time.monotonic()
        while True:
            page = await conn.command(LIBRARY_TRACKS, limit=size, offset=offset)
            page = page if isinstance(page, list) else (page or {}).get("items", [])
            tracks = [t for t in page if isinstance(t, dict) and is_track(t.get("uri"), t)]
            now = int(time.time())
            for track in tracks:
                if track.get("uri"):
                    await self.queue.put(track_message(MEDIA_ITEM_UPDATED, track))
                    count += 1
            for fav in self.favorites.observe(tracks, now):
                await self.queue.put(fav)
            if len(page) < size:
                break
            offset += size
        self._last_backfill = time.monotonic()
        self.stats.backfills += 1
        self.stats.backfilled_tracks += count
        log.info("ma_backfill_done tracks=%d seconds=%.1f", count, time.monotonic() - started)
        return count

    # --- publishing --------------------------------------------------------------------

    async def _publish_loop(self) -> None:
        while True:
            out = await self.queue.get()
            try:
                await self._publish(out)
            finally:
                self.queue.task_done()

    async def _publish(self, out: Outgoing) -> None:
        delay = self.options.backoff_min_s
        body = pack(out.payload)
        while True:
            try:
                ack = await self.js.publish(
                    out.subject,
                    body,
                    timeout=self.options.publish_timeout_s,
                    headers=out.headers,
                )
            except Exception as exc:  # no stream yet, NATS down, timeout: retry until acked
                self.stats.publish_errors += 1
                log.warning("ma_publish_retry subject=%s error=%r", out.subject, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.options.backoff_max_s)
                continue
            self.stats.published += 1
            if ack.duplicate:
                self.stats.duplicates += 1
            return

    async def _flush(self, limit_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), limit_s)

    async def drained(self) -> None:
        """Wait until everything queued so far is acknowledged by JetStream."""
        await self.queue.join()
