"""Music Assistant → insight: follow an MA server's websocket API and publish to JetStream.

MA's websocket protocol (music-assistant/server ``controllers/webserver``, client
``music_assistant_client/connection.py``): connect to ``<base url>/ws``; the server first sends
its server info ``{"server_id", "server_version", "schema_version", ...}``; from schema 28 on the
client authenticates with the command ``auth`` ``{"token": ...}``. Commands are
``{"message_id", "command", "args"}``; results ``{"message_id", "result", "partial"?}`` (a
``partial`` result continues in the next message with the same id) or
``{"message_id", "error_code", "details"}``. Every event goes to every authenticated client as
``{"event", "object_id", "data"}`` — no subscription command.

The bridge forwards track library events, final playback reports and sync completions (see
``ma_events``), backfills the library (``music/tracks/library_items`` paged with limit/offset)
on every (re)connect, after each ``music_sync_completed`` (MA sends no added/updated events
while it syncs) and when the worker asks on ``insight.notify.library.backfill``. The websocket
reconnects with exponential backoff; publishing retries until JetStream acknowledges.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from insight.bus import subjects
from insight.codec import pack
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

AUTH_SCHEMA = 28  # first MA schema version that requires the auth command
LIBRARY_TRACKS = "music/tracks/library_items"

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


class MAError(Exception):
    """An MA command failed (``error_code``/``details`` of its error result)."""

    def __init__(self, code: Any, details: str) -> None:
        super().__init__(f"Music Assistant error {code}: {details}")
        self.code = code


class MAConnectionClosed(ConnectionError):
    pass


def websocket_url(url: str) -> str:
    """``http://host:8095`` → ``ws://host:8095/ws`` (ws/wss URLs kept, ``/ws`` appended once)."""
    if "://" not in url:
        raise ValueError(f"not a URL: {url!r} (expected e.g. http://music-assistant:8095)")
    scheme, rest = url.split("://", 1)
    scheme = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    rest = rest.rstrip("/")
    return f"{scheme}://{rest}" + ("" if rest.endswith("/ws") else "/ws")


class MAConnection:
    """One websocket session: handshake + auth, commands by message id, events to a handler."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, on_event: EventHandler) -> None:
        self.ws = ws
        self.on_event = on_event
        self.server_info: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._partial: dict[str, list[Any]] = {}
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        session: aiohttp.ClientSession,
        url: str,
        token: str | None,
        on_event: EventHandler,
        handshake_s: float = 10.0,
    ) -> MAConnection:
        ws = await session.ws_connect(websocket_url(url), heartbeat=30, max_msg_size=0)
        conn = cls(ws, on_event)
        try:
            first = await asyncio.wait_for(ws.receive(), handshake_s)
            if first.type != aiohttp.WSMsgType.TEXT:
                raise MAConnectionClosed(f"no server info from {url} ({first.type.name})")
            conn.server_info = json.loads(first.data)
            conn._reader = asyncio.create_task(conn._read(), name="ma-ws-reader")
            schema = int(conn.server_info.get("schema_version") or 0)
            if schema >= AUTH_SCHEMA:
                if not token:
                    raise MAError("auth", f"schema {schema} needs a token (--ma-token / MA_TOKEN)")
                if not await asyncio.wait_for(conn.command("auth", token=token), handshake_s):
                    raise MAError("auth", "token rejected")
        except BaseException:
            await conn.close()
            raise
        return conn

    @property
    def closed(self) -> bool:
        return self._reader is None or self._reader.done()

    async def command(self, command: str, **args: Any) -> Any:
        if self.closed:
            raise MAConnectionClosed("websocket closed")
        message_id = str(next(self._ids))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = fut
        try:
            await self.ws.send_json({"message_id": message_id, "command": command, "args": args})
            return await fut
        finally:
            self._pending.pop(message_id, None)
            self._partial.pop(message_id, None)

    async def wait_closed(self) -> None:
        if self._reader is not None:
            await asyncio.wait({self._reader})

    async def close(self) -> None:
        await self.ws.close()
        await cancel_and_wait([self._reader])
        self._fail_pending()

    def _fail_pending(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(MAConnectionClosed("websocket closed"))

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    log.warning("ma_bad_message data=%.200r", msg.data)
                    continue
                if isinstance(data, dict):
                    await self._dispatch(data)
        finally:
            self._fail_pending()

    async def _dispatch(self, data: dict[str, Any]) -> None:
        message_id = data.get("message_id")
        if message_id is not None and ("result" in data or "error_code" in data):
            self._resolve(str(message_id), data)
        elif "event" in data:
            await self.on_event(data)

    def _resolve(self, message_id: str, data: dict[str, Any]) -> None:
        fut = self._pending.get(message_id)
        if fut is None or fut.done():
            return
        if "error_code" in data:
            fut.set_exception(MAError(data["error_code"], str(data.get("details", ""))))
        elif data.get("partial"):
            self._partial.setdefault(message_id, []).extend(data.get("result") or [])
        elif message_id in self._partial:
            fut.set_result(self._partial.pop(message_id) + list(data.get("result") or []))
        else:
            fut.set_result(data.get("result"))


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
