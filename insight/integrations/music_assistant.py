"""Music Assistant → insight: follow an MA server's websocket API, publish to JetStream.

The bridge forwards track library events, every playback progress report, the queue
transitions listens are folded with (``ma_queue``), favorites and sync completions
(``ma_events``), and backfills the library (``music/tracks/library_items`` paged) on every
(re)connect, after each finished library sync and when the worker asks on
``insight.notify.library.backfill``; a complete backfill is framed by markers so the worker can
delete what MA no longer has. Events are translated in arrival order by one task; the websocket
reconnects with backoff; publishing retries until acknowledged; a refused token stops it.
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
from insight.integrations.ma_client import (
    MAAuthError,
    MAConnection,
    MAConnectionClosed,
    MAError,
)
from insight.integrations.ma_events import (
    BACKFILL_COMPLETED,
    BACKFILL_STARTED,
    FAVORITE_UPDATED,
    MEDIA_ITEM_ADDED,
    MEDIA_ITEM_DELETED,
    MEDIA_ITEM_PLAYED,
    MEDIA_ITEM_UPDATED,
    FavoriteTracker,
    Observations,
    Outgoing,
    favorite_updated,
    favorites_snapshot,
    is_track,
    sync_finished,
    track_message,
    translate,
)
from insight.integrations.ma_options import (
    PER_USER_FAVORITES_SCHEMA,
    BridgeOptions,
    BridgeStats,
)
from insight.integrations.ma_queue import QUEUE_EVENTS, QueueTracker
from insight.integrations.ma_resolve import UriResolver
from insight.tasks import cancel_and_wait

log = logging.getLogger("insight.ma")

TRACK_EVENTS = (MEDIA_ITEM_ADDED, MEDIA_ITEM_UPDATED, MEDIA_ITEM_DELETED)

LIBRARY_TRACKS = "music/tracks/library_items"


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
        self.inbox: asyncio.Queue[tuple[dict[str, Any], float, int]] = asyncio.Queue(
            self.options.queue_size
        )
        self.ids = Observations()
        self.favorites = FavoriteTracker(self.options.user_id or "default")
        self.resolver = UriResolver()
        self.queues = QueueTracker()
        self.per_user_favorites = False
        self.connected = asyncio.Event()
        self.auth_error: MAAuthError | None = None
        self._stop = asyncio.Event()
        self._conn: MAConnection | None = None
        self._backfill: asyncio.Task[None] | None = None
        self._backfill_again = False
        self._last_backfill = -1e9
        self._backfill_n = 0
        self._touched: dict[str, int] = {}  # uri → arrival number of its last item event
        self._fav_touched: dict[str, int] = {}  # same, of its last favorite_updated

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, forward, reconnect with backoff; returns after ``stop()``.

        Raises ``MAAuthError`` when MA refuses the token (or needs one): retrying cannot help.
        """
        publisher = asyncio.create_task(self._publish_loop(), name="ma-publisher")
        translator = asyncio.create_task(self._translate_loop(), name="ma-translator")
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
            await cancel_and_wait([translator, publisher])
        if self.auth_error is not None:
            raise self.auth_error

    def stop(self) -> None:
        self._stop.set()

    async def _session(self, session: aiohttp.ClientSession) -> bool:
        """One websocket session; True when it connected (resets the backoff)."""
        try:
            conn = await MAConnection.open(session, self.ma_url, self.token, self._on_event)
        except MAAuthError as exc:
            log.error("ma_auth_failed url=%s error=%s (stopping)", self.ma_url, exc)
            self.auth_error = exc
            self.stop()
            return False
        except (OSError, aiohttp.ClientError, TimeoutError, MAError, ValueError) as exc:
            log.warning("ma_connect_failed url=%s error=%s", self.ma_url, exc)
            return False
        try:
            await self._identify(conn)
        except (MAError, MAConnectionClosed, TimeoutError) as exc:
            log.warning("ma_identify_failed url=%s error=%s", self.ma_url, exc)
            await conn.close()
            return False
        self._conn = conn
        self.stats.connections += 1
        self.connected.set()
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

    async def _identify(self, conn: MAConnection) -> None:
        """Which model of MA's streams applies (from the server info), and whose favorites."""
        info = conn.server_info
        self.per_user_favorites = conn.schema >= PER_USER_FAVORITES_SCHEMA
        if self.options.user_id is None and conn.schema >= 28:
            me = conn.user
            if not me.get("user_id"):
                try:
                    me = await asyncio.wait_for(conn.command("auth/me"), 10) or {}
                except MAError as exc:  # keep the last known user rather than loop
                    log.warning("ma_user_unknown error=%s user=%s", exc, self.favorites.user_id)
            if isinstance(me, dict) and me.get("user_id"):
                self.favorites.user_id = str(me["user_id"])
        log.info(
            "ma_connected url=%s server=%s version=%s schema=%s favorites=%s user=%s",
            self.ma_url,
            info.get("server_id"),
            info.get("server_version"),
            conn.schema,
            "per-user" if self.per_user_favorites else "global-flag",
            self.favorites.user_id,
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # --- events ------------------------------------------------------------------------

    async def _on_event(self, message: dict[str, Any]) -> None:
        """Called by the websocket reader: queue in arrival order (back-pressure when full)."""
        self.stats.events += 1
        await self.inbox.put((message, self.options.clock(), self.stats.events))

    async def _translate_loop(self) -> None:
        while True:
            message, seen, number = await self.inbox.get()
            try:
                uri, kind = message.get("object_id"), message.get("event")
                if isinstance(uri, str) and kind in TRACK_EVENTS:
                    self._touched[uri] = number  # a listing requested before is older
                elif isinstance(uri, str) and kind == FAVORITE_UPDATED:
                    self._fav_touched[uri] = number
                await self._translate(message, seen)
            except Exception:
                log.exception("ma_event_failed event=%s", message.get("event"))
            finally:
                self.inbox.task_done()

    async def _translate(self, message: dict[str, Any], now: float) -> None:
        event, data = message.get("event"), message.get("data")
        if event in QUEUE_EVENTS:  # resolved like reports, so the worker matches them
            command = self._conn.command if self._conn else None
            out = await self.queues.translate(message, now, self.ids, self.resolver, command)
            await self._put_or_ignore(out)
            return
        if event == MEDIA_ITEM_PLAYED and isinstance(data, dict):
            conn = self._conn
            resolved = await self.resolver.report(message, data, conn.command if conn else None)
            self.stats.resolved_uris += resolved is not message
            message = resolved
        if event == FAVORITE_UPDATED:
            fav = favorite_updated(message, self.ids.next(), now, self.resolver.mapping)
            if fav is not None and fav.payload["user_id"] == self.favorites.user_id:
                self.favorites.set(fav.payload["track_id"], fav.subject == subjects.FAVORITE)
            await self._put_or_ignore(fav)
            return
        out = translate(message, self.ids.next(), now)
        await self._put_or_ignore(out)
        if out is None:
            return
        if event in (MEDIA_ITEM_ADDED, MEDIA_ITEM_UPDATED) and isinstance(data, dict):
            self.resolver.learn(data)
            if not self.per_user_favorites:
                for fav in self.favorites.observe([data], now, self.ids):
                    await self.queue.put(fav)
        elif event == MEDIA_ITEM_DELETED:
            self.favorites.forget(str(message.get("object_id")))
            self.resolver.forget(str(message.get("object_id")))
        elif sync_finished(event, data):
            self.request_backfill()

    async def _put_or_ignore(self, out: Outgoing | None) -> None:
        if out is None:
            self.stats.ignored += 1
        else:
            await self.queue.put(out)

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
                log.warning("ma_backfill_failed error=%s (nothing deleted)", exc)
                return
            if not self._backfill_again:
                return

    async def backfill(self, conn: MAConnection) -> int:
        """Publish every library track as ``track.updated``, framed by backfill markers.

        Only a listing that reached its last page ends with ``backfill.completed`` (the worker
        then deletes the tracks MA no longer has) and a favorites snapshot; a failed or
        cancelled one ends with nothing, and the worker deletes nothing.
        """
        await self.inbox.join()  # events that arrived before the listing are queued first
        self._backfill_n += 1
        backfill_id = f"{self.ids.run}-{self._backfill_n}"
        size, offset, count = self.options.page_size, 0, 0
        started = time.monotonic()
        await self.queue.put(
            Outgoing(BACKFILL_STARTED, {"backfill_id": backfill_id}, self.ids.next())
        )
        while True:
            asked = self.stats.events  # item events arriving from now on are newer than the page
            page = await conn.command(LIBRARY_TRACKS, limit=size, offset=offset)
            page = page if isinstance(page, list) else (page or {}).get("items", [])
            tracks = [
                t
                for t in page
                if isinstance(t, dict)
                and is_track(t.get("uri"), t)
                and self._touched.get(str(t.get("uri")), 0) <= asked
            ]
            now = time.time()
            for track in tracks:
                if track.get("uri"):
                    self.resolver.learn(track)
                    await self.queue.put(
                        track_message(
                            MEDIA_ITEM_UPDATED, track, self.ids.next(), backfill=backfill_id
                        )
                    )
                    count += 1
            # A listing carries the token's user's favorite state (per-user MA too).
            current = [t for t in tracks if self._fav_touched.get(str(t["uri"]), 0) <= asked]
            for fav in self.favorites.observe(current, now, self.ids):
                await self.queue.put(fav)
            if len(page) < size:
                break
            offset += size
        self._touched.clear()  # every later page request is newer than what they hold
        self._fav_touched.clear()
        payload = {"backfill_id": backfill_id, "tracks": count}
        await self.queue.put(Outgoing(BACKFILL_COMPLETED, payload, self.ids.next()))
        snapshot = favorites_snapshot(
            self.favorites.user_id, self.favorites.favorites(), time.time(), self.ids.next()
        )
        await self.queue.put(snapshot)
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
        if len(body) > self.nc.max_payload:  # would fail forever and stall everything behind
            self.stats.too_large += 1
            log.error("ma_message_too_large subject=%s bytes=%d", out.subject, len(body))
            return
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
        """Wait until everything received so far is translated and acknowledged by JetStream."""
        await self.inbox.join()
        await self.queue.join()
