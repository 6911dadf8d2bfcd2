"""A client generated from /api/v1/openapi.json works against a real server (issue 15).

openapi-python-client reads only the JSON media types of the document and sends no Accept
header (httpx sends ``*/*``). Before, every reply was msgpack unless Accept named JSON, so the
generated client failed on its first call; now a JSON body gets a JSON reply. A bodiless GET
still gets msgpack (the documented default) unless the client asks for JSON.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import typing
import urllib.request
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from tests.adversarial.conftest import Served

META = ("--meta", "none")  # just the package, no pyproject around it


def generate(served: Served, where: Path) -> None:
    with urllib.request.urlopen(f"{served.base}/openapi.json", timeout=10) as r:
        doc = json.load(r)
    assert "a JSON body gets a JSON reply" in doc["info"]["description"]
    assert "bare GET" in doc["info"]["description"]
    (where / "openapi.json").write_text(json.dumps(doc))
    exe = Path(sys.executable).with_name("openapi-python-client")
    done = subprocess.run(
        [str(exe), "generate", "--path", "openapi.json", "--output-path", "insight_client", *META],
        cwd=where,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert (where / "insight_client" / "client.py").is_file(), done.stdout + done.stderr


def body_of(module: ModuleType, data: dict[str, Any]) -> Any:
    """The generated body model of an operation, built from a plain dict."""
    hint = typing.get_type_hints(module.sync)["body"]
    for cls in typing.get_args(hint) or (hint,):
        if hasattr(cls, "from_dict"):
            return cls.from_dict(data)
    raise AssertionError(f"no body model in {hint}")


def test_generated_client_first_calls(served: Served, tmp_path: Path) -> None:
    generate(served, tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        pkg = importlib.import_module("insight_client")
        api = importlib.import_module("insight_client.api")
        embed_text = importlib.import_module("insight_client.api.embed.embed_text")
        upsert = importlib.import_module("insight_client.api.tracks.tracks_upsert")
        search = importlib.import_module("insight_client.api.tracks.tracks_search_text")
        health = importlib.import_module("insight_client.api.system.health")
        assert api is not None
        client = pkg.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=30)

        # first call, out of the box: a POST with a JSON body
        got = embed_text.sync(client=client, body=body_of(embed_text, {"text": "calm piano"}))
        assert type(got).__name__ == "TextEmbedResponse", got
        vec = np.asarray(got.embedding)
        assert vec.shape == (512,) and abs(np.linalg.norm(vec) - 1) < 1e-4
        assert got.text == "calm piano"

        meta = {"name": "Gymnopédie No.1", "artists": ["Satie"], "genres": ["piano"]}
        stored = upsert.sync(
            client=client,
            body=body_of(
                upsert,
                {"track_id": "gen/1", "metadata": meta, "text_embedding": vec.tolist()},
            ),
        )
        assert type(stored).__name__ == "UpsertResponse", stored
        assert stored.track_id == "gen/1" and stored.text_stored is True

        found = search.sync(client=client, body=body_of(search, {"query": "calm piano"}))
        assert type(found).__name__ == "SearchResponse", found
        assert [r.track_id for r in found.results] == ["gen/1"]
        assert found.results[0].score > 0.99

        # errors come back parsed too
        bad = search.sync(client=client, body=body_of(search, {"query": "x", "limit": 1000}))
        assert type(bad).__name__ == "Error" and "limit" in bad.error.message

        # a bare GET gets the msgpack default; with Accept: application/json it is parsed
        raw = client.get_httpx_client().get("/api/v1/health")
        assert raw.headers["content-type"] == "application/msgpack"
        json_client = pkg.Client(
            base_url=f"http://127.0.0.1:{served.port}", headers={"Accept": "application/json"}
        )
        ok = health.sync(client=json_client)
        assert type(ok).__name__ == "HealthResponse" and ok.model_loaded is True
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("insight_client")]:
            del sys.modules[name]
