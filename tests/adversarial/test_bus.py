"""A local process against the embedded bus of `insight serve`: no way in without the
credentials, no way to block the server with its own log, no noise when idle."""

from __future__ import annotations

import asyncio
import socket
import stat
from pathlib import Path

import nats
import pytest

from insight.bus.auth import read_auth_file
from insight.bus.embedded import free_port
from tests.adversarial.conftest import served_with

BAD_CONNECTIONS = 1500


async def refused(url: str, **creds: str) -> str:
    """The error of a connection attempt that must fail (one try, no reconnects)."""
    with pytest.raises(Exception) as info:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=3, **creds)
        await nc.close()
    return str(info.value)


async def health_over_bus(url: str, **creds: str) -> bytes:
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=3, **creds)
    try:
        return (await nc.request("insight.v1.health", b"", timeout=5)).data
    finally:
        await nc.close()


async def test_bus_needs_the_generated_credentials_kept_0600_and_reused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    served = served_with(tmp_path, tiny_model_dir, INSIGHT_NATS__PORT=free_port())
    try:
        url = served.nats_url()
        assert "Authorization Violation" in await refused(url)
        assert "Authorization Violation" in await refused(url, user="insight", password="guess")
        auth_file = served.data_dir / "nats" / "auth.env"
        assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
        conf = served.data_dir / "nats" / "nats-embedded.conf"
        assert stat.S_IMODE(conf.stat().st_mode) == 0o600  # it holds the password too
        auth = read_auth_file(auth_file)
        assert auth is not None and auth.user == "insight" and len(auth.password or "") >= 40
        assert b"status" in await health_over_bus(url, **auth.client_options())
        await asyncio.sleep(3)  # idle: the event consumers' empty fetches are not failures
        log = served.log()
        assert str(auth_file) in log and "nats_embedded_auth" in log  # how to connect...
        assert auth.password not in log  # ...never the secret
        assert "fetch_failed" not in log
    finally:
        assert served.stop() < 10

    again = served_with(tmp_path, tiny_model_dir, INSIGHT_NATS__PORT=free_port())
    try:
        assert read_auth_file(auth_file) == auth  # reused, not regenerated
        assert b"status" in await health_over_bus(again.nats_url(), **auth.client_options())
        assert "Authorization Violation" in await refused(again.nats_url())
    finally:
        assert again.stop() < 10


@pytest.mark.parametrize(
    "env, creds",
    [
        (
            {"INSIGHT_NATS__USER": "me", "INSIGHT_NATS__PASSWORD": 'p$w "#{x}'},
            {"user": "me", "password": 'p$w "#{x}'},
        ),
        ({"INSIGHT_NATS__TOKEN": "tok-3f9a"}, {"token": "tok-3f9a"}),
    ],
)
async def test_user_given_credentials_are_the_ones_required(
    tmp_path: Path, tiny_model_dir: Path, env: dict[str, str], creds: dict[str, str]
) -> None:
    served = served_with(tmp_path, tiny_model_dir, INSIGHT_NATS__PORT=free_port(), **env)
    try:
        url = served.nats_url()
        assert b"status" in await health_over_bus(url, **creds)
        assert "Authorization Violation" in await refused(url)
        assert not (served.data_dir / "nats" / "auth.env").exists()  # nothing generated
        secret = creds.get("password") or creds["token"]
        assert secret not in served.log()
    finally:
        assert served.stop() < 10


def garbage_connections(port: int, n: int) -> None:
    """``n`` connections that each make nats-server log an error line, 100 open at a time."""
    for start in range(0, n, 100):
        socks = []
        for _ in range(min(100, n - start)):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"\x16\x03\x01GARBAGE NOT A NATS CONNECT\r\n")
            socks.append(s)
        for s in socks:
            s.close()


async def test_a_flood_of_bad_connections_cannot_block_the_server_or_our_log(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    served = served_with(tmp_path, tiny_model_dir, INSIGHT_NATS__PORT=free_port())
    try:
        creds = served.bus_credentials()
        port = int(served.env["INSIGHT_NATS__PORT"])
        assert b"status" in await health_over_bus(served.nats_url(), **creds)
        rss_before = served.rss_bytes()
        garbage_connections(port, BAD_CONNECTIONS)
        await asyncio.sleep(1)
        # well past a 64 KiB pipe of log, and the server still serves
        assert b"status" in await health_over_bus(served.nats_url(), **creds)
        assert served.rss_bytes() < rss_before * 1.1
    finally:
        took = served.stop()
    assert took < 10
    log = served.log()
    forwarded = log.count("insight.nats nats_server ")
    assert 1 <= forwarded <= 100, forwarded  # rate-limited, not 1 500 lines
    assert "nats_server_log_suppressed" in log  # the rest counted, once the window closes
