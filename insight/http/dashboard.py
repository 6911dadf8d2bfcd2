"""The web dashboard: static ES modules from ``insight/dashboard/``, served at ``/``.

No build step: the files are served as they are in the package. They are public (a browser
cannot send the API key when it navigates); the API calls they make carry the key the user
typed, kept in the tab's ``sessionStorage``. Only files inside the folder are served, with a
fixed content type per suffix and no caching (an upgrade shows at once).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from insight.errors import NotFound

ROOT = (Path(__file__).resolve().parent.parent / "dashboard").resolve()
PREFIX = "/ui/"
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain",
    ".md": "text/plain",
}
HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "connect-src 'self'; frame-ancestors 'none'"
    ),
}


def is_public(path: str) -> bool:
    """Paths the API key does not guard: the dashboard's page and its files."""
    return path == "/" or path.startswith(PREFIX)


def _file(name: str) -> Path:
    path = (ROOT / name).resolve()
    if not path.is_relative_to(ROOT) or not path.is_file() or path.suffix not in TYPES:
        raise NotFound(f"no dashboard file {name!r}")
    return path


def _config(auth: bool) -> web.Response:
    return web.json_response({"auth": auth}, headers=HEADERS)


async def index(_: web.Request) -> web.Response:
    return _serve(_file("index.html"))


async def asset(request: web.Request) -> web.Response:
    return _serve(_file(request.match_info["name"]))


def _serve(path: Path) -> web.Response:
    return web.Response(
        body=path.read_bytes(), content_type=TYPES[path.suffix], charset="utf-8", headers=HEADERS
    )


def add_dashboard(app: web.Application, *, auth: bool) -> None:
    """``auth``: whether the API asks for a key (the page then prompts before its first call)."""

    async def config(_: web.Request) -> web.Response:
        return _config(auth)

    app.router.add_get("/", index, name="dashboard")
    app.router.add_get(PREFIX + "config.json", config, name="dashboard-config")
    app.router.add_get(PREFIX + "{name:.+}", asset, name="dashboard-file")
