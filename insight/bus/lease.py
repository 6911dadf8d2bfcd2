"""One store behind the ``insight`` service: a KV lease per store identity, held over the bus.

Every worker joins one queue group, so a request may land on any of them. That is right when
they share one store (Qdrant) and wrong when each has its own (a file store under its own data
dir): requests would alternate between stores that hold different data. So before a worker
opens its store or joins the queue group it takes the lease of the service's store role in the
``insight_store_lease`` bucket. The lease names a store identity (``file:<data dir instance
id>`` or ``qdrant:<url>/<collection prefix>``); any node with that identity may serve, a node
with another identity is refused while the lease is live.

The bucket's TTL (``INSIGHT_STORAGE__LEASE_TTL_S``, 15 s) is the lease's life; holders renew it
every third of that. A node that dies stops renewing and its lease is gone one TTL later; a
restart on the same data dir has the same identity and takes its lease back at once. A clean
stop of a private store's node deletes the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from nats.js.api import KeyValueConfig
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from insight.bus import subjects
from insight.config import StorageSettings

if TYPE_CHECKING:
    from nats.js import JetStreamContext

log = logging.getLogger("insight.bus.lease")

ATTEMPTS = 5  # compare-and-set rounds before a race counts as lost
RELEASE_WAIT_S = 10.0  # longest a stop waits for the renewal loop (a request times out in 5 s)


@dataclass(frozen=True)
class StoreIdentity:
    """Which store a node serves from; ``shared`` stores may be served by many nodes."""

    id: str
    shared: bool
    where: str


def store_identity(settings: StorageSettings, instance_id: str) -> StoreIdentity | None:
    """The identity of the configured store; None when storage is disabled (nothing to split)."""
    if not settings.enabled:
        return None
    mode = getattr(settings.mode, "value", settings.mode)
    if mode == "qdrant":
        url = settings.url.rstrip("/")
        prefix = settings.collection_prefix
        return StoreIdentity(f"qdrant:{url}/{prefix}", True, f"Qdrant at {url} prefix {prefix!r}")
    return StoreIdentity(f"file:{instance_id}", False, f"file store in {settings.data_dir}")


@dataclass(frozen=True)
class Holder:
    """The value of a lease: who renewed it last, and the store it stands for."""

    store: str
    shared: bool
    where: str
    node: str
    host: str
    pid: int

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> Holder | None:
        try:
            raw = json.loads(data or b"")
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__})
        except (ValueError, KeyError, TypeError):
            return None  # not ours: treated as a foreign holder


class StoreConflict(Exception):
    """Another store serves this service; ``insight worker``/``serve`` exit with code 3."""


class LeaseLost(StoreConflict):
    """The lease expired while this node was cut off and another store took it."""


class LeaseRefused(StoreConflict):
    """Another store serves this service: this node must not serve from its own."""

    def __init__(self, mine: StoreIdentity, holder: Holder | None, ttl_s: float) -> None:
        if holder is None:
            who = "another node (its lease could not be read)"
        else:
            who = f"node {holder.node} on {holder.host} (pid {holder.pid}) with the {holder.where}"
        super().__init__(
            f"the insight service on this bus already serves from another store: {who}. "
            f"This worker's {mine.where} would split the data (requests answered by either "
            "store). Fix: share one store (INSIGHT_STORAGE__MODE=qdrant with the same "
            "INSIGHT_STORAGE__URL and COLLECTION_PREFIX on every worker), or run this worker "
            "as `insight worker --role inference` (embedding work for the store's node, no "
            "store), or stop "
            f"the other node; a crashed node's lease expires {ttl_s:g} s after its last renewal"
        )
        self.holder = holder


async def lease_bucket(js: JetStreamContext, ttl_s: float, replicas: int = 1) -> KeyValue:
    """The lease bucket; an existing one keeps its TTL (see ``StoreLease.ttl_s``)."""
    try:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=subjects.STORE_LEASE_BUCKET, history=1, ttl=ttl_s, replicas=replicas
            )
        )
    except BadRequestError:  # exists with another TTL: theirs wins, for every node alike
        return await js.key_value(subjects.STORE_LEASE_BUCKET)


class StoreLease:
    """Take, renew and give back the lease of ``key`` for ``identity``."""

    def __init__(
        self,
        js: JetStreamContext,
        identity: StoreIdentity,
        node: str,
        ttl_s: float,
        key: str = subjects.STORE_LEASE_KEY,
        replicas: int = 1,
    ) -> None:
        self.js, self.identity, self.key, self.ttl_s = js, identity, key, ttl_s
        self.replicas = replicas
        self.me = Holder(
            identity.id, identity.shared, identity.where, node, socket.gethostname(), os.getpid()
        )
        self.kv: KeyValue | None = None
        self.revision = 0
        self.lost = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def acquire(self) -> None:
        """Take the lease (or join it, same identity); raises LeaseRefused, then renews it."""
        self.kv = await lease_bucket(self.js, self.ttl_s, self.replicas)
        ttl = (await self.kv.status()).ttl
        if ttl:
            self.ttl_s = ttl
        await self._claim()
        log.info(
            "store_lease_taken key=%s store=%s ttl_s=%g", self.key, self.identity.id, self.ttl_s
        )
        self._task = asyncio.create_task(self._renew_forever(), name="store-lease")

    async def _claim(self) -> None:
        assert self.kv is not None
        for _ in range(ATTEMPTS):
            try:
                entry = await self.kv.get(self.key)
            except KeyNotFoundError:
                with contextlib.suppress(KeyWrongLastSequenceError):
                    self.revision = await self.kv.create(self.key, self.me.encode())
                    return
                continue  # someone created it first: look again
            holder = Holder.decode(entry.value)
            if holder is None or holder.store != self.identity.id:
                raise LeaseRefused(self.identity, holder, self.ttl_s)
            with contextlib.suppress(KeyWrongLastSequenceError):
                self.revision = await self.kv.update(
                    self.key, self.me.encode(), last=entry.revision
                )
                return
        raise LeaseRefused(self.identity, None, self.ttl_s)

    async def _renew_forever(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.ttl_s / 3)
                return
            try:
                await self._claim()
            except LeaseRefused as exc:
                log.error("store_lease_lost key=%s error=%s", self.key, exc)
                self.lost.set()
                return
            except Exception as exc:  # bus down: nothing reaches us either; try again
                log.warning("store_lease_renew_failed key=%s error=%r", self.key, exc)

    async def release(self) -> None:
        """Stop renewing; a private store's lease is deleted so its successor need not wait.

        A shared store's lease is left to expire: other nodes of that store still renew it.
        """
        self._stopping.set()
        if self._task is not None:
            # the flag stops the loop even when Python 3.11's wait_for (inside nats.py's
            # requests) swallows the cancel; the bound keeps a stuck request from hanging stop
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=RELEASE_WAIT_S)
            self._task = None
        if self.kv is None or self.identity.shared or self.lost.is_set():
            return
        with contextlib.suppress(Exception):
            entry = await self.kv.get(self.key)
            if Holder.decode(entry.value) == self.me:
                await self.kv.delete(self.key, last=entry.revision)
                log.info("store_lease_released key=%s", self.key)
