"""``/config`` shows where things are, never the credentials inside their URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from insight.config import redact_url
from tests.conftest import make_settings, start_running, stop_running


@pytest.mark.parametrize(
    "url, shown",
    [
        ("http://user:secret@host:6334", "http://user:***@host:6334"),
        ("https://tok3n@qdrant.example/x", "https://***@qdrant.example/x"),
        (
            "http://host:6334/?api_key=k3y&timeout=5#frag",
            "http://host:6334/?api_key=***&timeout=***",
        ),
        ("http://u%40x:p%40ss@h:1", "http://u%40x:***@h:1"),
        ("user:secret@qdrant:6334", "***@qdrant:6334"),
        ("http://[::1:6334", "***"),
        ("http://localhost:6334", "http://localhost:6334"),
        ("nats://a:b@127.0.0.1:4222", "nats://a:***@127.0.0.1:4222"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


async def test_config_redacts_the_storage_url_over_http_and_bus(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    url = "http://qdrant-user:S3cr3t-pw@qdrant.example:6334/?api_key=K3y-999"
    r = await start_running(make_settings(tmp_path / "d", tiny_model_dir, storage={"url": url}))
    try:
        async with r.api.session.get(
            r.api.base + "/config", headers={"Accept": "application/json"}
        ) as resp:
            raw = await resp.read()
        assert resp.status == 200
        shown = "http://qdrant-user:***@qdrant.example:6334/?api_key=***"
        assert json.loads(raw)["storage"]["url"] == shown
        assert b"S3cr3t" not in raw and b"K3y-999" not in raw
        assert (await r.bus.call("insight.v1.config"))["storage"]["url"] == shown
    finally:
        await stop_running(r)
