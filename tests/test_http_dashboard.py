"""The bridge serves the dashboard's files at / (public, fixed types, nothing outside)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from conftest import make_settings, start_running, stop_running
from yarl import URL


async def test_dashboard_files_are_served_and_nothing_else(tmp_path: Path) -> None:
    r = await start_running(make_settings(tmp_path / "data", None, server={"api_key": "k"}))
    base = f"http://127.0.0.1:{r.stack.bridge.port}"
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(base + "/") as page:
                assert page.status == 200 and page.content_type == "text/html"
                assert '<script type="module" src="/ui/app.js">' in await page.text()
                assert "script-src 'self'" in page.headers["Content-Security-Policy"]
            for name, ctype in (
                ("app.js", "text/javascript"),
                ("pages/map.js", "text/javascript"),
                ("style.css", "text/css"),
            ):
                async with s.get(f"{base}/ui/{name}") as f:
                    assert f.status == 200 and f.content_type == ctype, name
            async with s.get(base + "/ui/config.json") as f:
                assert await f.json() == {"auth": True}
            bad_names = ("/ui/%2e%2e/http/bridge.py", "/ui/..%2fapp.py", "/ui/nope.js", "/ui/x.py")
            for bad in bad_names:
                url = URL(base + bad, encoded=True)  # sent as written, not normalised
                async with s.get(url, headers={"Accept": "application/json"}) as f:
                    assert f.status == 404, bad
                    assert (await f.json())["error"]["code"] == "NOT_FOUND"
            async with s.get(base + "/api/v1/playlists") as f:  # the API still wants the key
                assert f.status == 401
    finally:
        await stop_running(r)
