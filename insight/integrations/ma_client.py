"""A Music Assistant websocket client: handshake, authentication, commands, events.

MA's websocket protocol (music-assistant/server ``controllers/webserver``, client
``music_assistant_client/connection.py``): connect to ``<base url>/ws``; the server first sends
its server info ``{"server_id", "server_version", "schema_version", ...}``; from schema 28 on the
client authenticates with the command ``auth`` ``{"token": ...}``. Commands are
``{"message_id", "command", "args"}``; results ``{"message_id", "result", "partial"?}`` (a
``partial`` result continues in the next message with the same id) or
``{"message_id", "error_code", "details"}``. Every event goes to every authenticated client as
``{"event", "object_id", "data"}`` — no subscription command.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from insight.tasks import cancel_and_wait

log = logging.getLogger("insight.ma")

AUTH_SCHEMA = 28  # first MA schema version that requires the auth command

EventHandler = Callable[[dict[str, Any]], Awaitable[None]]


class MAError(Exception):
    """An MA command failed (``error_code``/``details`` of its error result)."""

    def __init__(self, code: Any, details: str) -> None:
        super().__init__(f"Music Assistant error {code}: {details}")
        self.code = code
        self.details = details


class MAAuthError(MAError):
    """MA refused (or needs) the token: retrying cannot help, the bridge stops."""


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
        self.user: dict[str, Any] = {}  # the token's MA user, as the auth result names it
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
                await conn._auth(token, schema, handshake_s)
        except BaseException:
            await conn.close()
            raise
        return conn

    async def _auth(self, token: str | None, schema: int, limit_s: float) -> None:
        if not token:
            raise MAAuthError(
                "auth", f"MA schema {schema} needs a token (MA_TOKEN or --ma-token-file)"
            )
        try:
            ok = await asyncio.wait_for(self.command("auth", token=token), limit_s)
        except MAError as exc:
            raise MAAuthError(exc.code, f"token rejected ({exc.details})") from None
        if not ok:
            raise MAAuthError("auth", "token rejected")
        user = ok.get("user") if isinstance(ok, dict) else None
        self.user = user if isinstance(user, dict) else {}

    @property
    def schema(self) -> int:
        return int(self.server_info.get("schema_version") or 0)

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
