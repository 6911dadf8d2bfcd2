"""Credentials of the embedded bus: generation, reuse, the user's own, who reads the file."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import nats
import pytest

from insight.bus.auth import (
    BusAuth,
    embedded_auth,
    generated_auth,
    given_auth,
    local_auth,
    read_auth_file,
)
from insight.bus.connection import NatsAuthError, connect
from insight.bus.embedded import EmbeddedNats
from insight.bus.serverlog import ServerLogDrain
from insight.config import ConfigError, NatsSettings, Settings


def settings(data_dir: Path, **nats_values: object) -> Settings:
    return Settings(storage={"data_dir": data_dir}, nats=nats_values)


def test_generated_once_0600_reused_and_mode_repaired(tmp_path: Path) -> None:
    path = tmp_path / "nats" / "auth.env"
    first = generated_auth(path)
    assert first.user == "insight" and first.password and len(first.password) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert generated_auth(path) == first
    os.chmod(path, 0o644)
    assert generated_auth(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"INSIGHT_NATS__PASSWORD={first.password}\n" in path.read_text()  # an env file
    assert first.password not in repr(first)


def test_the_users_credentials_win_and_bad_combinations_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.env"
    s = settings(tmp_path, user="u", password="p")
    assert embedded_auth(s.nats, path) == BusAuth(
        user="u", password="p", source="INSIGHT_NATS__USER/PASSWORD"
    )
    assert given_auth(settings(tmp_path, token="t").nats) == BusAuth(
        token="t", source="INSIGHT_NATS__TOKEN"
    )
    assert not path.exists()
    for bad, words in (
        ({"user": "u"}, "go together"),
        ({"password": "p"}, "go together"),
        ({"user": "u", "password": "p", "token": "t"}, "either"),
        ({"creds_file": "/x.creds"}, "operator"),
        ({"user": "u", "password": "a\nb"}, "control characters"),
    ):
        with pytest.raises(ConfigError, match=words):
            given_auth(settings(tmp_path, **bad).nats)


def test_clients_read_the_file_only_for_loopback_and_without_their_own(tmp_path: Path) -> None:
    stored = generated_auth(tmp_path / "nats" / "auth.env")
    cfg = settings(tmp_path).nats
    assert cfg.auth_path == tmp_path / "nats" / "auth.env"
    for url in ("nats://127.0.0.1:4222", "localhost:4222", "nats://[::1]:1,nats://127.0.0.1:2"):
        assert local_auth(cfg, url) == stored, url
    for url in ("nats://nats:4222", "nats://127.0.0.1:1,nats://10.0.0.5:2", "nats://a:b@127.0.0.1"):
        assert local_auth(cfg, url) is None, url  # never sent to another host or over the URL's
    assert local_auth(settings(tmp_path, user="x", password="y").nats, "nats://127.0.0.1") is None
    assert local_auth(settings(tmp_path, token="t").nats, "nats://127.0.0.1") is None
    elsewhere = settings(tmp_path / "other", auth_file=tmp_path / "nats" / "auth.env").nats
    assert local_auth(elsewhere, "nats://nats:4222") == stored  # explicitly asked for
    assert local_auth(settings(tmp_path / "empty").nats, "nats://127.0.0.1") is None
    assert read_auth_file(tmp_path / "missing") is None


async def test_clients_on_the_data_dir_connect_and_strangers_fail_at_once(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path)
    server = EmbeddedNats(tmp_path / "nats", auth=embedded_auth(s.nats, s.nats.auth_path))
    await server.start()
    try:
        nc = await connect(server.url, s.nats, name="t")  # no credentials given: the file's
        assert (await nc.jetstream().account_info()).limits is not None
        await nc.close()
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(NatsAuthError, match="refused t's credentials"):
            await connect(server.url, settings(tmp_path / "other").nats, name="t")
        with pytest.raises(NatsAuthError):
            await connect(server.url, NatsSettings(user="insight", password="guess"), name="t")
        assert loop.time() - start < 10  # not retried forever
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await nats.connect(server.url, allow_reconnect=False)
    finally:
        server.stop()


def test_server_log_is_forwarded_rate_limited_and_summarised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="insight.nats")
    read_fd, write_fd = os.pipe()
    drain = ServerLogDrain(os.fdopen(read_fd, "rb"), burst=5, window_s=60).start()
    with os.fdopen(write_fd, "wb") as out:
        out.write(b"[1] 2026/11/30 00:00:00.000000 [INF] Server is ready\n")
        out.write(b"[1] 2026/11/30 00:00:00.000000 [WRN] Plaintext passwords detected\n")
        for i in range(200):
            out.write(b"[1] 2026/11/30 00:00:00.000000 [ERR] 127.0.0.1:%d - bad\x1b[31m\n" % i)
        out.write(b"[1] 2026/11/30 00:00:00.000000 [FTL] disk gone\n")
    drain.join(timeout=5)
    assert not drain._thread.is_alive()  # ended with the pipe
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "insight.nats"]
    assert msgs[0] == (logging.DEBUG, "nats_server Server is ready")
    assert msgs[1] == (logging.DEBUG, "nats_server Plaintext passwords detected")
    warned = [m for lvl, m in msgs if lvl == logging.WARNING and "bad" in m]
    assert warned == [f"nats_server 127.0.0.1:{i} - bad?[31m" for i in range(5)]
    assert (logging.ERROR, "nats_server disk gone") in msgs  # never held back
    assert msgs[-1][1].startswith("nats_server_log_suppressed lines=195 ")
    assert drain.lines == 203 and drain.suppressed_total == 195
