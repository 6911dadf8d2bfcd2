"""The wire of remote inference: subjects and msgpack bodies (docs: subjects.md).

A request carries a work id, the model id the vectors must come from, and either texts or
audio windows ``[B, N]`` as raw bytes; the reply carries the same work id and the vectors
``[B, D]`` as float32 bytes, or an error ``{"error": status, "message": ...}``. Bytes, not
lists: a 10 s window is 480 000 samples.

Windows travel as 16-bit PCM scaled per window (``"pcm": "s16"``, ``scales``: float32 ``[B]``,
sample = int16 * scale): half the bytes of float32, and the quantisation noise sits 96 dB
under each window's peak, below what decoded 16-bit audio carries anyway (vectors within
cosine 0.9999 of float32's, tests/test_scale_wire.py). ``"pcm": "f32"`` (or no ``pcm``: older
nodes) is raw float32, bit-exact. ``bulk``: background work (a scan) the worker runs on its
bulk lane, one window at a time beside interactive requests; bulk texts (a scan's track
sentences) do not count as interactive there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import numpy as np

from insight.bus import subjects
from insight.errors import BadRequest, InsightError, PayloadTooLarge

PREFIX = subjects.INFER_PREFIX
HELLO = subjects.INFER_HELLO
BYE = subjects.INFER_BYE
DISCOVER = subjects.INFER_DISCOVER
QUEUE_GROUP = subjects.INFER_QUEUE_GROUP

Kind = Literal["audio", "text"]
KINDS: tuple[Kind, ...] = ("audio", "text")
MAX_TEXT_CHARS = 4096


def shared_subject(kind: Kind) -> str:
    """Served by every inference worker in the queue group ``insight-infer``."""
    return f"{PREFIX}.{kind}"


def worker_subject(worker_id: str, kind: Kind) -> str:
    """One worker's own subject: the dispatcher chooses the worker (bounded in-flight)."""
    return f"{PREFIX}.w.{worker_id}.{kind}"


@dataclass(frozen=True)
class Hello:
    worker_id: str
    model_id: str
    dim: int
    inflight: int  # requests it takes at once
    max_items: int  # windows or texts per request
    scan_slots: int = 0  # files it analyses at once from the scan work queue
    host: str = ""
    pid: int = 0

    def pack(self) -> bytes:
        return msgpack.packb(
            {
                "id": self.worker_id,
                "model": self.model_id,
                "dim": self.dim,
                "inflight": self.inflight,
                "max_items": self.max_items,
                "scan_slots": self.scan_slots,
                "host": self.host,
                "pid": self.pid,
            }
        )

    @classmethod
    def unpack(cls, data: bytes) -> Hello:
        d = msgpack.unpackb(data)
        return cls(
            str(d["id"]),
            str(d["model"]),
            int(d["dim"]),
            int(d["inflight"]),
            int(d["max_items"]),
            int(d.get("scan_slots", 0)),
            str(d.get("host", "")),
            int(d.get("pid", 0)),
        )


Pcm = Literal["s16", "f32"]
S16_MAX = 32767.0


def pack_request(
    work_id: str, model_id: str, kind: Kind, items: Any, *, pcm: Pcm = "s16", bulk: bool = False
) -> bytes:
    body: dict[str, Any] = {"id": work_id, "model": model_id, "bulk": bulk}
    if kind == "text":
        body["texts"] = list(items)
        return msgpack.packb(body)
    arr = np.ascontiguousarray(items, dtype=np.float32)
    body["shape"] = list(arr.shape)
    packed = to_s16(arr) if pcm == "s16" else None
    if packed is None:  # float32 asked for, or samples s16 cannot carry (NaN, infinite)
        body["pcm"] = "f32"
        body["windows"] = arr.data.cast("B")  # no copy before msgpack's own
    else:
        body["pcm"] = "s16"
        body["scales"] = packed[1].tobytes()
        body["windows"] = packed[0].data.cast("B")
    return msgpack.packb(body)


def to_s16(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``windows`` [B, N] float32 → (int16 samples, float32 scale per window); None when a
    window holds a sample that is not finite."""
    peak = np.maximum(windows.max(axis=1), -windows.min(axis=1))
    if not np.isfinite(peak).all():
        return None
    scales = np.where(peak > 1e-30, peak / S16_MAX, 1.0).astype(np.float32)  # silence: 1
    scaled = np.multiply(windows, (1.0 / scales)[:, None], dtype=np.float32)
    np.rint(scaled, out=scaled)
    np.clip(scaled, -S16_MAX, S16_MAX, out=scaled)  # rounding of 1/scale can overshoot
    return scaled.astype(np.int16), scales


def from_s16(samples: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """The float32 windows of ``to_s16``'s output (one pass)."""
    return np.multiply(samples, scales[:, None], dtype=np.float32)


@dataclass
class Request:
    work_id: str
    model_id: str
    kind: Kind
    items: Any  # list[str] or np.ndarray [B, N]
    bulk: bool = False  # background work: the worker's bulk lane

    @property
    def size(self) -> int:
        return len(self.items)


def unpack_request(data: bytes, kind: Kind, max_items: int) -> Request:
    """Checks every field; a bad request is a ``BadRequest`` naming what is wrong."""
    try:
        body = msgpack.unpackb(data)
    except Exception as exc:
        raise BadRequest(f"inference request is not msgpack: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        raise BadRequest("inference request needs an `id` string")
    model = body.get("model")
    if not isinstance(model, str):
        raise BadRequest("inference request needs a `model` string")
    if kind == "text":
        texts = body.get("texts")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadRequest("text request needs `texts`: a list of strings")
        if not texts or len(texts) > max_items:
            raise PayloadTooLarge(f"{len(texts)} texts per request; 1 to {max_items} allowed")
        bulk = bool(body.get("bulk", False))
        return Request(body["id"], model, kind, [t[:MAX_TEXT_CHARS] for t in texts], bulk)
    shape, raw, pcm = body.get("shape"), body.get("windows"), body.get("pcm", "f32")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(n, int) and n > 0 for n in shape)
        or not isinstance(raw, bytes)
        or pcm not in ("s16", "f32")
    ):
        raise BadRequest("audio request needs `shape` [B, N], `pcm` s16 or f32 and `windows` bytes")
    if shape[0] > max_items:
        raise PayloadTooLarge(f"{shape[0]} windows per request; at most {max_items} allowed")
    width = 2 if pcm == "s16" else 4
    if len(raw) != shape[0] * shape[1] * width:
        raise BadRequest(
            f"`windows` holds {len(raw)} bytes, {pcm} shape {shape} needs "
            f"{shape[0] * shape[1] * width}"
        )
    if pcm == "s16":
        scales_raw = body.get("scales")
        if not isinstance(scales_raw, bytes) or len(scales_raw) != shape[0] * 4:
            raise BadRequest(f"s16 windows need `scales`: {shape[0]} float32 bytes")
        scales = np.frombuffer(scales_raw, dtype=np.float32)
        if not (np.isfinite(scales).all() and (scales > 0).all()):
            raise BadRequest("`scales` must be finite and positive")
        samples = np.frombuffer(raw, dtype=np.int16).reshape(shape)
        windows = from_s16(samples, scales)  # int16 samples are finite by construction
    else:
        windows = np.frombuffer(raw, dtype=np.float32).reshape(shape)
        if not np.isfinite(windows).all():
            raise BadRequest("audio windows hold NaN or infinite samples")
    return Request(body["id"], model, kind, windows, bool(body.get("bulk", False)))


def pack_reply(work_id: str, model_id: str, vectors: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(vectors, dtype=np.float32)
    return msgpack.packb(
        {"id": work_id, "model": model_id, "shape": list(arr.shape), "vectors": arr.tobytes()}
    )


def pack_error(work_id: str | None, err: InsightError) -> bytes:
    return msgpack.packb({"id": work_id, "error": err.status, "message": err.message})


def unpack_reply(data: bytes, work_id: str, model_id: str, size: int) -> np.ndarray:
    """The vectors of ``work_id``; an error reply raises it, a reply to another work or from
    another model raises ``InsightError`` (the caller drops that answer)."""
    body = msgpack.unpackb(data)
    if body.get("error") is not None:
        raise InsightError(str(body.get("message")), status=int(body["error"]))
    if body.get("id") != work_id or body.get("model") != model_id:
        raise InsightError(
            f"reply for work {body.get('id')} of model {body.get('model')}, "
            f"expected {work_id} of {model_id}"
        )
    shape = body["shape"]
    vectors = np.frombuffer(body["vectors"], dtype=np.float32).reshape(shape)
    if vectors.shape[0] != size:
        raise InsightError(f"reply holds {vectors.shape[0]} vectors for {size} items")
    return vectors
