"""Playlists and the map under a hostile client: concurrent re-clustering, bad input, restart.

Concurrent cluster runs must leave exactly K playlists that split the library (no duplicate,
no lost track); hostile bodies get the error shape and change nothing; after a restart the
playlists, their ids and the refresh schedule are still there.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from tests.adversarial.conftest import Served, start_served

CLUSTERS = 3
PER_CLUSTER = 60


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    req = urllib.request.Request(base + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def seed(base: str) -> dict[str, int]:
    rng = np.random.default_rng(1)
    centres = np.eye(CLUSTERS, 512)
    truth: dict[str, int] = {}
    tracks = []
    for c in range(CLUSTERS):
        for i in range(PER_CLUSTER):
            v = centres[c] + 0.08 * rng.standard_normal(512)
            tid = f"library://track/{c}-{i}"
            truth[tid] = c
            tracks.append(
                {
                    "track_id": tid,
                    "metadata": {"name": f"Song {c}-{i}", "artists": [f"A{c}-{i % 7}"]},
                    "text_embedding": (v / np.linalg.norm(v)).tolist(),
                }
            )
    for start in range(0, len(tracks), 60):
        status, r = call(
            base, "POST", "/tracks/batch-upsert", {"tracks": tracks[start : start + 60]}
        )
        assert status == 200 and r["failed"] == 0, r
    return truth


def memberships(base: str) -> dict[str, list[str]]:
    status, listed = call(base, "GET", "/playlists")
    assert status == 200
    out = {}
    for p in listed["playlists"]:
        if p["kind"] == "cluster":
            status, got = call(base, "GET", f"/playlists/{p['playlist_id']}")
            assert status == 200, got
            out[p["playlist_id"]] = got["track_ids"]
    return out


def test_concurrent_reclustering_bad_input_and_restart(
    served: Served, tmp_path: Path, tiny_model_dir: Path
) -> None:
    base = served.base
    truth = seed(base)
    jobs = [("POST", "/playlists/clusters", {"clusters": CLUSTERS})] * 6
    jobs += [("GET", "/map?limit=100", None)] * 3
    jobs += [("POST", "/mixes", {"moods": [], "prompt": "calm", "size": 5, "save": True})] * 3
    with ThreadPoolExecutor(max_workers=12) as pool:
        futures = [pool.submit(call, base, *job) for job in jobs]
        started = time.monotonic()
        health, _ = call(base, "GET", "/health")  # the worker stays responsive meanwhile
        assert health == 200 and time.monotonic() - started < 5
        results = [f.result() for f in futures]
    assert all(status == 200 for status, _ in results), [r for r in results if r[0] != 200]
    before = memberships(base)
    assert len(before) == CLUSTERS  # no duplicate playlists from the racing runs
    members = [t for ids in before.values() for t in ids]
    assert sorted(members) == sorted(truth)  # every track exactly once
    for ids in before.values():
        assert len({truth[t] for t in ids}) == 1  # each playlist is one true cluster

    hostile = [
        ("POST", "/playlists/clusters", {"clusters": "many"}),
        ("POST", "/playlists/clusters", {"clusters": 10**9}),
        ("POST", "/playlists/clusters", {"clusters": 200}),  # more than the 180 tracks
        ("POST", "/playlists/clusters", {"clusters": 3, "refresh_interval_s": -1}),
        ("GET", "/playlists/" + "x" * 65, None),
        ("DELETE", "/playlists/" + "x" * 65, None),
        ("POST", "/tracks/path", {"start_id": "a", "end_id": "b", "steps": 10**6}),
        ("POST", "/mixes", {"moods": ["happy"] * 1000}),
        ("POST", "/mixes", {"prompt": "x" * 5000}),
        ("POST", "/mixes", {"moods": ["happy"], "min_tempo": -5}),
        ("GET", "/map?offset=-1", None),
        ("GET", "/map?limit=zero", None),
        ("GET", "/users/u/history?limit=100000", None),
    ]
    for method, path, body in hostile:
        status, err = call(base, method, path, body)
        assert status == 400, (path, body, status, err)
        assert err["error"]["code"] and err["error"]["message"], err
    assert memberships(base) == before  # bad input changed nothing

    status, r = call(
        base, "POST", "/playlists/clusters", {"clusters": CLUSTERS, "refresh_interval_s": 3600}
    )
    assert status == 200 and r["kept_share"] == 1.0
    assert served.stop() < 10
    (tmp_path / "again").mkdir()
    again = start_served(
        tmp_path / "again", tiny_model_dir, {"INSIGHT_STORAGE__DATA_DIR": str(served.data_dir)}
    )
    try:
        assert memberships(again.base) == before  # ids and tracks survive the restart
        some = next(iter(before))
        status, m3u = call(again.base, "GET", f"/playlists/{some}/m3u8")
        assert status == 200 and m3u["content"].startswith("#EXTM3U\n")
        assert set(m3u["content"].splitlines()[3::2]) == set(before[some])
        status, listed = call(again.base, "GET", "/playlists")
        assert listed["refresh_interval_s"] == 3600  # the schedule survives too
        assert 0 < listed["next_refresh_at"] - time.time() <= 3600
        assert "scheduled_clusters_failed" not in again.log()
    finally:
        again.stop()
