"""Provider uris → library uris, from MA's provider mappings.

MA reports a play with the uri of the queue item's media item: ``library://track/12`` when it was
queued from the library, ``spotify--x://track/abc`` (a provider instance) or ``filesystem_local://
track/a.mp3`` when it was queued from a provider's listing. insight stores library tracks under
their library uri, so a play must name that uri to meet the track's vectors. Every library track
MA sends (events, backfill) lists its ``provider_mappings``; the resolver remembers them, and
asks MA (``music/get_library_item``) for a provider uri it has not seen.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from insight.integrations.ma_events import parse_uri, provider_uris

log = logging.getLogger("insight.ma")

Command = Callable[..., Awaitable[Any]]

LIBRARY = "library"
MAX_ENTRIES = 200_000
ASK_TIMEOUT_S = 10.0


class UriResolver:
    def __init__(self) -> None:
        self._map: dict[str, str] = {}
        self._unknown: set[str] = set()

    @property
    def mapping(self) -> dict[str, str]:
        return self._map

    def learn(self, track: dict[str, Any]) -> None:
        uri = track.get("uri")
        if not isinstance(uri, str) or not uri.startswith(f"{LIBRARY}://"):
            return
        if len(self._map) > MAX_ENTRIES:
            self._map.clear()  # bounded: MA is asked again for what is forgotten
        for prov in provider_uris(track):
            self._map[prov] = uri
            self._unknown.discard(prov)

    def forget(self, uri: str) -> None:
        for prov in [p for p, lib in self._map.items() if lib == uri]:
            del self._map[prov]

    async def resolve(self, uri: str, command: Command | None) -> str:
        """The library uri for ``uri`` (itself when it is one, or MA has no library item)."""
        parts = parse_uri(uri)
        if parts is None or parts[0] == LIBRARY:
            return uri
        if uri in self._map:
            return self._map[uri]
        if command is None or uri in self._unknown:
            return uri
        provider, media_type, item_id = parts
        try:
            item = await asyncio.wait_for(
                command(
                    "music/get_library_item",
                    media_type=media_type,
                    item_id=item_id,
                    provider_instance_id_or_domain=provider,
                ),
                ASK_TIMEOUT_S,
            )
        except Exception as exc:  # MA down or slow, unknown provider: keep the provider uri
            log.info("ma_resolve_failed uri=%s error=%s", uri, exc)
            return uri
        if isinstance(item, dict) and isinstance(item.get("uri"), str):
            self.learn(item)
            self._map[uri] = item["uri"]
            return str(item["uri"])
        if len(self._unknown) > MAX_ENTRIES:
            self._unknown.clear()
        self._unknown.add(uri)
        return uri

    async def report(
        self, message: dict[str, Any], data: dict[str, Any], command: Command | None
    ) -> dict[str, Any]:
        """A progress report naming the library uri of the provider item it played (the same
        message when there is nothing to resolve; the provider uri kept as ``provider_uri``)."""
        uri = message.get("object_id") or data.get("uri")
        if not isinstance(uri, str):
            return message
        library_uri = await self.resolve(uri, command)
        if library_uri == uri:
            return message
        data = {**data, "uri": library_uri, "provider_uri": uri}
        return {**message, "object_id": library_uri, "data": data}
