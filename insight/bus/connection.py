"""Connecting to NATS with the credentials and TLS files of ``INSIGHT_NATS__*``."""

from __future__ import annotations

import contextlib
import logging
import ssl
from typing import Any

from nats.aio.client import Client as NATS

from insight.bus.auth import local_auth
from insight.config import ConfigError, NatsSettings, redact_url

log = logging.getLogger("insight.bus")


def connect_options(cfg: NatsSettings, name: str, url: str = "") -> dict[str, Any]:
    """``nats.connect`` options; with no credentials configured, a loopback URL gets the local
    embedded server's stored ones (``INSIGHT_NATS__AUTH_FILE``, see ``insight.bus.auth``)."""
    opts: dict[str, Any] = {"name": name, "max_reconnect_attempts": -1, "connect_timeout": 5}
    stored = local_auth(cfg, url) if url else None
    if stored is not None:
        opts.update(stored.client_options())
    if cfg.user:
        opts["user"] = cfg.user
    if cfg.password:
        opts["password"] = cfg.password.get_secret_value()
    if cfg.token:
        opts["token"] = cfg.token.get_secret_value()
    if cfg.creds_file:
        opts["user_credentials"] = str(cfg.creds_file)
    if cfg.tls_ca or cfg.tls_cert:
        ctx = ssl.create_default_context(cafile=str(cfg.tls_ca) if cfg.tls_ca else None)
        if cfg.tls_cert:
            ctx.load_cert_chain(str(cfg.tls_cert), str(cfg.tls_key) if cfg.tls_key else None)
        opts["tls"] = ctx
    return opts


class NatsAuthError(ConfigError):
    """The server refused our credentials at the first connect: retrying cannot help."""


async def connect(url: str, cfg: NatsSettings, name: str) -> NATS:
    """Connect, retrying while the server is unreachable; fail at once if it refuses us."""
    nc = NATS()

    async def on_error(exc: Exception) -> None:
        refused = "authorization violation" in str(exc).lower()
        if refused and not connected:
            raise NatsAuthError(
                f"NATS at {redact_url(url)} refused {name}'s credentials: set "
                "INSIGHT_NATS__USER/PASSWORD (or TOKEN); next to `insight serve` leave them empty "
                "and use its INSIGHT_STORAGE__DATA_DIR (or INSIGHT_NATS__AUTH_FILE)"
            ) from exc
        log.warning("nats_error name=%s error=%r", name, exc)

    async def on_disconnect() -> None:
        log.warning("nats_disconnected name=%s", name)

    async def on_reconnect() -> None:
        log.info("nats_reconnected name=%s", name)

    connected = False
    try:
        await nc.connect(
            servers=[u.strip() for u in url.split(",") if u.strip()],
            error_cb=on_error,
            disconnected_cb=on_disconnect,
            reconnected_cb=on_reconnect,
            **connect_options(cfg, name, url),
        )
    except NatsAuthError:
        with contextlib.suppress(Exception):
            await nc.close()
        raise
    connected = True
    return nc


async def flush_subscriptions(nc: NATS) -> None:
    """Return once the server has every subscription made so far on ``nc``.

    nats-py's ``flush()`` writes its PING straight to the socket, ahead of SUBs still queued
    for the flusher, so a PONG can arrive before the server knows the subscriptions (a request
    from another connection then gets "no responders"). Push the queue out first.
    """
    await nc._flush_pending(force_flush=True)
    await nc.flush()
