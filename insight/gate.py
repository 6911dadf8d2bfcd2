"""A read/write gate: many holders share it, one holds it alone.

``Library`` writes hold it shared from embedding to upsert and mirror; a model migration's
switch holds it alone, so a vector embedded by the old model never lands in the new space.
Waiting to hold it alone blocks new shared holders (a switch is not starved by writes).
Nothing here holds it shared twice in one task (that could wait on a pending switch forever).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Gate:
    def __init__(self) -> None:
        self.shared_holders = 0
        self.alone = False
        self.waiting = 0  # tasks waiting to hold it alone
        self._changed = asyncio.Event()

    def _kick(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        while self.alone or self.waiting:
            await self._changed.wait()
        self.shared_holders += 1
        try:
            yield
        finally:
            self.shared_holders -= 1
            self._kick()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        self.waiting += 1
        try:
            while self.alone or self.shared_holders:
                await self._changed.wait()
        finally:
            self.waiting -= 1
            self._kick()
        self.alone = True
        try:
            yield
        finally:
            self.alone = False
            self._kick()
