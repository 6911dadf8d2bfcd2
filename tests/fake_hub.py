"""A loopback stand-in for the Hugging Face hub's HTTP interface (model info + file resolve).

Serves folders as hub repos: ``GET /api/models/{owner}/{name}[/revision/{rev}]`` (file list
with sizes and sha256) and ``HEAD|GET /{owner}/{name}/resolve/{rev}/{path}`` with ranges. Knobs
for tests: cut the connection mid-file, throttle, serve wrong bytes, count requests.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

SHA = "0123456789abcdef0123456789abcdef01234567"


def hub_layout(model_dir: Path) -> dict[str, bytes]:
    """A tiny model folder in the Xenova layout (towers under ``onnx/``)."""
    files: dict[str, bytes] = {}
    for p in sorted(model_dir.iterdir()):
        if p.is_file():
            name = f"onnx/{p.name}" if p.suffix == ".onnx" else p.name
            files[name] = p.read_bytes()
    files["README.md"] = b"# test model\n"
    return files


@dataclass
class FakeHub:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    cut_once: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before a cut
    cut_always: dict[str, int] = field(default_factory=dict)
    throttle_s: float = 0.0  # sleep per 64 KiB chunk
    corrupt: set[str] = field(default_factory=set)  # files served with flipped bytes
    requests: Counter[str] = field(default_factory=Counter)
    runner: web.AppRunner | None = None
    url: str = ""

    async def start(self) -> FakeHub:
        app = web.Application()
        app.router.add_get("/api/models/{owner}/{name}", self.info)
        app.router.add_get("/api/models/{owner}/{name}/revision/{rev}", self.info)
        app.router.add_route("*", "/{owner}/{name}/resolve/{rev}/{path:.+}", self.resolve)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _repo(self, request: web.Request) -> tuple[str, dict[str, bytes]]:
        repo_id = f"{request.match_info['owner']}/{request.match_info['name']}"
        if repo_id not in self.repos:
            raise web.HTTPNotFound(
                headers={"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"}
            )
        return repo_id, self.repos[repo_id]

    async def info(self, request: web.Request) -> web.Response:
        repo_id, files = self._repo(request)
        self.requests["info"] += 1
        siblings = []
        for name, data in files.items():
            entry: dict[str, object] = {"rfilename": name, "size": len(data)}
            entry["blobId"] = hashlib.sha1(data).hexdigest()
            if name.endswith(".onnx"):
                sha = hashlib.sha256(data).hexdigest()
                entry["lfs"] = {"sha256": sha, "size": len(data), "pointerSize": 130}
            siblings.append(entry)
        return web.json_response(
            {"id": repo_id, "modelId": repo_id, "sha": SHA, "siblings": siblings, "private": False}
        )

    async def resolve(self, request: web.Request) -> web.StreamResponse:
        _, files = self._repo(request)
        name = request.match_info["path"]
        if name not in files:
            raise web.HTTPNotFound(headers={"X-Error-Code": "EntryNotFound"})
        data = files[name]
        if name in self.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        etag = (
            hashlib.sha256(files[name]).hexdigest()
            if name.endswith(".onnx")
            else (hashlib.sha1(files[name]).hexdigest())
        )
        headers = {"X-Repo-Commit": SHA, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(data))
            return web.Response(status=200, headers=headers)
        self.requests[name] += 1
        start = 0
        rng = request.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
        body = data[start:]
        status = 206 if start else 200
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        cut = self.cut_always.get(name)
        if cut is None and name in self.cut_once:
            cut = self.cut_once.pop(name)
        limit = len(body) if cut is None else max(0, min(cut - start, len(body)))
        for pos in range(0, limit, 65536):
            await resp.write(body[pos : min(pos + 65536, limit)])
            if self.throttle_s:
                await asyncio.sleep(self.throttle_s)
        if cut is not None:
            assert request.transport is not None
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp
