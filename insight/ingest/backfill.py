"""A complete backfill from Music Assistant deletes the tracks MA no longer has.

The bridge frames a listing of MA's whole library with ``backfill.started`` and
``backfill.completed`` (sent only after the last page: a failed or cut listing has no end
marker, and nothing is deleted). Each backfilled track carries the backfill id; the worker
remembers per track the last backfill that listed it (KV, next to the version guard). At the
end marker, an MA track (``source == "event"``) in the store that this backfill did not list,
and that no event changed since the backfill started, is gone from MA: it is deleted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from insight.storage.base import TRACKS_TEXT

if TYPE_CHECKING:
    from insight.library import Library
    from insight.state import StoreSlot

log = logging.getLogger("insight.events")

EVENT_SOURCE = "event"


class BackfillReconciler:
    def __init__(
        self, stores: StoreSlot, library: Library, kv: KeyValue, version_key: Callable[[str], str]
    ) -> None:
        self.stores, self.library = stores, library
        self.kv = kv
        self.version_key = version_key

    @staticmethod
    def _listed_key(track_id: str) -> str:
        return "b" + hashlib.sha1(track_id.encode()).hexdigest()

    @staticmethod
    def _start_key(backfill_id: str) -> str:
        return "s" + hashlib.sha1(backfill_id.encode()).hexdigest()

    async def started(self, backfill_id: str, seq: int) -> None:
        await self.kv.put(self._start_key(backfill_id), str(seq).encode())

    async def listed(self, track_id: str, backfill_id: str) -> None:
        await self.kv.put(self._listed_key(track_id), backfill_id.encode())

    async def _get(self, key: str) -> str | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def completed(
        self, backfill_id: str, seq: int, applied_seq: Callable[[str], Awaitable[int]]
    ) -> list[str]:
        """Delete the MA tracks this complete backfill did not list; returns their ids."""
        start = await self._get(self._start_key(backfill_id))
        if start is None:
            log.warning("backfill_without_start id=%s (nothing deleted)", backfill_id)
            return []
        store = self.stores.require_store()
        library = self.library
        gone: list[str] = []
        offset: str | None = None
        while True:
            points, offset = await store.scroll(
                TRACKS_TEXT, offset=offset, limit=512, where={"source": EVENT_SOURCE}
            )
            for p in points:
                if await self._get(self._listed_key(p.key)) == backfill_id:
                    continue
                if await applied_seq(p.key) >= int(start):
                    continue  # an event after the listing began: it knows better
                gone.append(p.key)
            if offset is None:
                break
        for track_id in gone:
            await library.delete_track(track_id)
            await self.kv.put(self.version_key(track_id), str(seq).encode())
        log.info("backfill_reconciled id=%s deleted=%d", backfill_id, len(gone))
        return gone
