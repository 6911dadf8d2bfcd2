"""Credentials of the embedded nats-server: generated once, kept 0600 in the data dir.

``insight serve`` without ``INSIGHT_NATS__URL`` starts its own nats-server. It never runs open:
it takes ``INSIGHT_NATS__USER``/``PASSWORD`` or ``INSIGHT_NATS__TOKEN`` when given, else a
user ``insight`` with a random password written on first start to ``INSIGHT_NATS__AUTH_FILE``
(default ``<data_dir>/nats/auth.env``) and reused on every later start. Local clients on the
same data dir (``insight worker``, ``insight ma-bridge``) read that file when they are given
no credentials of their own; its ``KEY=value`` lines also work as an env file for other tools.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from insight.config import ConfigError, NatsSettings

log = logging.getLogger("insight.bus.auth")

GENERATED_USER = "insight"
USER_KEY = "INSIGHT_NATS__USER"
PASSWORD_KEY = "INSIGHT_NATS__PASSWORD"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, repr=False)
class BusAuth:
    """What the embedded server demands; ``repr`` never shows the secret."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    source: str = "generated"

    def __repr__(self) -> str:
        kind = "token" if self.token else f"user={self.user}"
        return f"BusAuth({kind}, source={self.source})"

    def server_block(self) -> str:
        """The ``authorization { ... }`` block of nats-server's config (values JSON-quoted)."""
        if self.token:
            return f"authorization {{\n  token: {json.dumps(self.token)}\n}}\n"
        return (
            "authorization {\n"
            f"  user: {json.dumps(self.user)}\n"
            f"  password: {json.dumps(self.password)}\n"
            "}\n"
        )

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments of ``nats.connect`` that authenticate as this user."""
        if self.token:
            return {"token": self.token}
        return {"user": self.user, "password": self.password}


def _check_value(name: str, value: str) -> str:
    if not value or any(ord(c) < 32 for c in value):
        raise ConfigError(f"{name} must be non-empty and without control characters")
    return value


def given_auth(cfg: NatsSettings) -> BusAuth | None:
    """Credentials the user set for the embedded server, or None to use the generated ones."""
    if cfg.creds_file is not None:
        raise ConfigError(
            "INSIGHT_NATS__CREDS_FILE needs a NATS server in operator (JWT) mode; the embedded "
            "server takes INSIGHT_NATS__USER + INSIGHT_NATS__PASSWORD or INSIGHT_NATS__TOKEN"
        )
    if cfg.token is not None:
        if cfg.user or cfg.password:
            raise ConfigError(
                "set either INSIGHT_NATS__TOKEN or INSIGHT_NATS__USER + INSIGHT_NATS__PASSWORD"
            )
        token = _check_value("INSIGHT_NATS__TOKEN", cfg.token.get_secret_value())
        return BusAuth(token=token, source="INSIGHT_NATS__TOKEN")
    if cfg.user or cfg.password:
        if not (cfg.user and cfg.password):
            raise ConfigError("INSIGHT_NATS__USER and INSIGHT_NATS__PASSWORD go together")
        user = _check_value("INSIGHT_NATS__USER", cfg.user)
        password = _check_value("INSIGHT_NATS__PASSWORD", cfg.password.get_secret_value())
        return BusAuth(user=user, password=password, source="INSIGHT_NATS__USER/PASSWORD")
    return None


def read_auth_file(path: Path) -> BusAuth | None:
    """The user and password stored in ``path``; None when it does not exist or is incomplete."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    user, password = values.get(USER_KEY), values.get(PASSWORD_KEY)
    if not user or not password:
        return None
    return BusAuth(user=user, password=password, source=str(path))


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (0600), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def generated_auth(path: Path) -> BusAuth:
    """The stored generated credentials, created (0600) on first use."""
    found = read_auth_file(path)
    if found is not None:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("nats_auth_file_mode_fixed path=%s was=%o now=600", path, mode)
        return found
    auth = BusAuth(user=GENERATED_USER, password=secrets.token_urlsafe(32), source=str(path))
    write_private(
        path,
        "# Credentials of insight's embedded nats-server, written on its first start.\n"
        "# Local clients on this data dir read them; delete the file to get new ones.\n"
        f"{USER_KEY}={auth.user}\n{PASSWORD_KEY}={auth.password}\n",
    )
    log.info("nats_auth_generated path=%s", path)
    return auth


def embedded_auth(cfg: NatsSettings, auth_file: Path) -> BusAuth:
    """The credentials the embedded server requires: the user's, else the generated ones."""
    return given_auth(cfg) or generated_auth(auth_file)


def _hosts(url: str) -> list[tuple[str | None, str | None]]:
    """(hostname, username) of each server of a comma-separated NATS URL list."""
    out = []
    for raw in url.split(","):
        u = raw.strip()
        if u:
            parts = urlsplit(u if "://" in u else f"nats://{u}")
            out.append((parts.hostname, parts.username))
    return out


def local_auth(cfg: NatsSettings, url: str) -> BusAuth | None:
    """For a client given no credentials: the embedded server's stored ones, when they apply.

    Only for loopback URLs (a local secret is never sent to another host) unless
    ``INSIGHT_NATS__AUTH_FILE`` was set explicitly, and never over credentials in the URL.
    """
    path = cfg.auth_path
    if path is None or cfg.user or cfg.password or cfg.token or cfg.creds_file:
        return None
    try:
        hosts = _hosts(url)
    except ValueError:  # nats-py reports the malformed URL itself
        return None
    if any(user for _, user in hosts):
        return None
    if cfg.auth_file is None and not all(host in LOOPBACK for host, _ in hosts):
        return None
    return read_auth_file(path)
