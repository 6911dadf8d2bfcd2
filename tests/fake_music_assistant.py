"""A stand-in Music Assistant server on loopback speaking MA's websocket wire format.

It sends server info first, answers ``auth`` (schema >= 28), pages
``music/tracks/library_items`` (results split into ``partial`` chunks, as MA streams large
results), pushes events ``{"event", "object_id", "data"}`` to every authenticated client, and
can drop every connection to exercise the client's reconnect.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from insight.bus.embedded import free_port


class FakeMusicAssistant:
    def __init__(
        self,
        library: list[dict[str, Any]],
        token: str = "secret",
        schema: int = 28,
        user_id: str = "user-a",
    ) -> None:
        self.library = library
        self.token = token
        self.schema = schema
        self.user_id = user_id
        self.fail_page_at: int | None = None  # offset whose page answers an error
        self.sent = 0  # events sent (to every client)
        self.auth_names_user = True
        # Runs once when a page is asked for, after the page is read and before it is sent (MA
        # read its database, then an edit's event went out first).
        self.before_page: Callable[[], Awaitable[None]] | None = None
        self.port = free_port()
        self.clients: set[web.WebSocketResponse] = set()
        self.connects = 0
        self.auths = 0
        self.commands: list[dict[str, Any]] = []
        self.authed = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self.drop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def drop(self) -> None:
        """Close every client connection (as a restarting MA would)."""
        self.authed.clear()
        for ws in list(self.clients):
            await ws.close()
        self.clients.clear()

    async def emit(self, event: str, object_id: str | None, data: Any) -> None:
        msg = {"event": event, "object_id": object_id, "data": data}
        for ws in list(self.clients):
            await ws.send_json(msg)
            self.sent += 1

    async def emit_raw(self, text: str) -> None:
        """An event exactly as serialised elsewhere (e.g. ``MassEvent.to_json()``)."""
        for ws in list(self.clients):
            await ws.send_str(text)
            self.sent += 1

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connects += 1
        await ws.send_json(
            {
                "server_id": "fake-ma",
                "server_version": "2.7.0",
                "schema_version": self.schema,
                "min_supported_schema_version": 24,
                "base_url": self.url,
                "homeassistant_addon": False,
                "onboard_done": True,
            }
        )
        authed = self.schema < 28
        if authed:
            self._authed(ws)
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            cmd = json.loads(msg.data)
            self.commands.append(cmd)
            mid, name, args = cmd["message_id"], cmd["command"], cmd.get("args") or {}
            if name == "auth":
                self.auths += 1
                if args.get("token") == self.token:
                    authed = True
                    result: dict[str, Any] = {"authenticated": True}
                    if self.auth_names_user:  # as MA does (webserver/websocket_client.py)
                        result["user"] = {"user_id": self.user_id, "username": "a"}
                    await ws.send_json({"message_id": mid, "result": result})
                    self._authed(ws)
                else:
                    await ws.send_json(
                        {"message_id": mid, "error_code": 20, "details": "invalid token"}
                    )
            elif not authed:
                await ws.send_json(
                    {"message_id": mid, "error_code": 6, "details": "Authentication required"}
                )
            elif name == "music/tracks/library_items":
                offset = int(args.get("offset", 0))
                if offset == self.fail_page_at:
                    await ws.send_json({"message_id": mid, "error_code": 999, "details": "boom"})
                    continue
                await self._page(ws, mid, offset, int(args.get("limit", 500)))
            elif name == "auth/me":
                await ws.send_json({"message_id": mid, "result": {"user_id": self.user_id}})
            elif name == "music/get_library_item":
                await ws.send_json({"message_id": mid, "result": self._by_mapping(args)})
            else:
                await ws.send_json(
                    {"message_id": mid, "error_code": 1, "details": f"unknown command {name}"}
                )
        self.clients.discard(ws)
        return ws

    def _by_mapping(self, args: dict[str, Any]) -> dict[str, Any] | None:
        prov, item_id = args.get("provider_instance_id_or_domain"), args.get("item_id")
        for track in self.library:
            for m in track.get("provider_mappings") or []:
                if m.get("item_id") == item_id and prov in (
                    m.get("provider_instance"),
                    m.get("provider_domain"),
                ):
                    return track
        return None

    def _authed(self, ws: web.WebSocketResponse) -> None:
        self.clients.add(ws)
        self.authed.set()

    async def _page(self, ws: web.WebSocketResponse, mid: str, offset: int, limit: int) -> None:
        items = [dict(t) for t in self.library[offset : offset + limit]]
        hook, self.before_page = self.before_page, None
        if hook is not None:
            await hook()
        half = len(items) // 2
        if half:
            await ws.send_json({"message_id": mid, "result": items[:half], "partial": True})
        await ws.send_json({"message_id": mid, "result": items[half:]})


def ma_track(n: int, *, genre: str = "rock", favorite: bool = False) -> dict[str, Any]:
    """A Track as MA serialises it (shapes vary: artist objects or names, album object/str)."""
    uri = f"library://track/{n}"
    artists: list[Any] = (
        [
            {
                "item_id": str(n % 7),
                "provider": "library",
                "name": f"Artist {n % 7}",
                "media_type": "artist",
                "uri": f"library://artist/{n % 7}",
            }
        ]
        if n % 2
        else [f"Artist {n % 7}"]
    )
    album: Any = (
        {
            "item_id": str(n % 5),
            "provider": "library",
            "name": f"Album {n % 5}",
            "media_type": "album",
        }
        if n % 3
        else (f"Album {n % 5}" if n % 3 == 0 and n % 2 else None)
    )
    return {
        "item_id": str(n),
        "provider": "library",
        "name": f"Song {n}",
        "version": "",
        "sort_name": f"song {n}",
        "uri": uri,
        "media_type": "track",
        "external_ids": [],
        "is_playable": True,
        "favorite": favorite,
        "position": None,
        "date_added": None,
        "provider_mappings": [
            {
                "item_id": f"/music/{n}.flac",
                "provider_domain": "filesystem_local",
                "provider_instance": "filesystem_local--abc",
                "available": True,
                "in_library": True,
            }
        ],
        "metadata": {"genres": [genre], "mood": None, "style": None, "images": None},
        "duration": 180 + n,
        "artists": artists,
        "album": album,
        "disc_number": 1,
        "track_number": n,
        "last_played": 0,
    }


def ma_played(n: int, user: str, *, seconds: float, is_playing: bool) -> dict[str, Any]:
    """A MediaItemPlaybackProgressReport."""
    duration = 180 + n
    return {
        "uri": f"library://track/{n}",
        "media_type": "track",
        "name": f"Song {n}",
        "artist": f"Artist {n % 7}",
        "artists": [f"Artist {n % 7}"],
        "album": f"Album {n % 5}",
        "duration": duration,
        "seconds_played": seconds,
        "fully_played": duration - seconds < 5,
        "is_playing": is_playing,
        "userid": user,
        "player_id": "player-1",
        "image_url": None,
        "mbid": None,
    }
