"""The scan work queue's stream, subjects and bodies (docs: subjects.md, deployment.md).

A job names a file by its path: every node that takes part must see the library at the same
path (a shared mount). A result carries the analysis (tags, track vector, window count,
duration) or the reason the file could not be analysed, keyed by the job's work id.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import msgpack
import numpy as np
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from insight.bus import subjects
from insight.watcher.analysis import Analysis
from insight.watcher.decode import DecodeFailed
from insight.watcher.guard import OverBudget, Refused
from insight.watcher.tags import TrackTags

SCAN_STREAM = subjects.SCAN_STREAM
SCAN_WORK = subjects.SCAN_WORK
SCAN_CONSUMER = subjects.SCAN_CONSUMER
RESULT_PREFIX = subjects.SCAN_RESULT_PREFIX
MAX_DELIVER = 5

STREAM = StreamConfig(
    name=SCAN_STREAM,
    subjects=[SCAN_WORK],
    retention=RetentionPolicy.WORK_QUEUE,
    storage=StorageType.FILE,
    max_age=24 * 3600.0,
    max_bytes=256 << 20,
    duplicate_window=600.0,
    discard=DiscardPolicy.NEW,
)


def result_subject(store_node: str) -> str:
    return f"{RESULT_PREFIX}.{store_node}"


def pack_job(
    work_id: str, path: str, reply: str, mode: str, sampled_windows: int, model_id: str
) -> bytes:
    return msgpack.packb(
        {
            "id": work_id,
            "path": path,
            "reply": reply,
            "mode": mode,
            "sampled": sampled_windows,
            "model": model_id,
            "ask": True,  # its store node answers probes (older ones do not: never asked)
        }
    )


def unpack_job(data: bytes) -> dict[str, Any]:
    job = msgpack.unpackb(data)
    if not isinstance(job, dict) or not all(
        isinstance(job.get(k), str) for k in ("id", "path", "reply", "mode", "model")
    ):
        raise ValueError("a scan job needs id, path, reply, mode and model strings")
    return job


def pack_probe(work_id: str, node: str) -> bytes:
    """The question "do you still wait for this job?", asked on the result subject before
    analysing a job marked ``ask`` (only store nodes that answer it mark their jobs). No ``id``
    key: were it sent to an older store node, that one could not mistake it for a result."""
    return msgpack.packb({"probe": work_id, "node": node})


def pack_analysis(work_id: str, node: str, result: Analysis) -> bytes:
    return msgpack.packb(
        {
            "id": work_id,
            "node": node,
            "tags": asdict(result.tags),
            "vector": np.asarray(result.vector, dtype=np.float32).tobytes(),
            "windows": result.windows,
            "duration": result.duration_s,
        }
    )


ERRORS: dict[str, type[Exception]] = {
    "undecodable": DecodeFailed,
    "over_budget": OverBudget,
    "refused": Refused,
}


def error_kind(exc: Exception) -> str:
    for kind, cls in ERRORS.items():
        if isinstance(exc, cls):
            return kind
    return "undecodable"


def pack_error(work_id: str, node: str, kind: str, message: str) -> bytes:
    return msgpack.packb({"id": work_id, "node": node, "error": kind, "message": message})


def unpack_result(body: dict[str, Any]) -> Analysis:
    """The analysis of a result body; an error result raises the watcher's own exception, so
    the store node records the file as it would after a local failure."""
    if body.get("error"):
        cls = ERRORS.get(str(body["error"]), DecodeFailed)
        raise cls(f"{body.get('message')} (on node {body.get('node')})")
    tags = TrackTags(**body["tags"])
    vector = np.frombuffer(body["vector"], dtype=np.float32).copy()
    return Analysis(tags, vector, int(body["windows"]), float(body["duration"]))
