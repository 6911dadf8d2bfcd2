"""MessagePack/JSON round-trips of every schema, float32 vectors, and clear decode errors."""

from __future__ import annotations

import inspect
import math
import types
import typing
from enum import Enum
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from insight import schemas
from insight.codec import Format, decode, pack, unpack
from insight.errors import BadRequest, DecodeError

ALL_SCHEMAS = [
    cls
    for _, cls in inspect.getmembers(schemas, inspect.isclass)
    if issubclass(cls, schemas.Schema) and cls.__module__.startswith(schemas.__name__ + ".")
]

# Values that satisfy the constraints of the fields they are used for.
SPECIAL = {
    "profile_type": "mood:happy",
    "track_ids": ["t/1", "t/2"],
    "seed_ids": ["seed"],
    "sample_rate": 44100,
    "channels": 2,
    "tracks": [],
    "session_id": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    "signal_type": "full_play",
    "play_count": 3,
    "query": "upbeat electronic",
    "state": "watching",
    "mode": "file",
}


def sample(annotation: Any, name: str) -> Any:
    """A valid value for a field, built from its type."""
    if name in SPECIAL:
        return SPECIAL[name]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return sample(args[0], name)
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)), name)
    if origin is typing.Literal:
        return args[0]
    if origin is list:
        return [sample(args[0], name)]
    if origin is dict:
        return {"energetic": sample(args[1], name)}
    if inspect.isclass(annotation) and issubclass(annotation, Enum):
        return next(iter(annotation)).value
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return example(annotation)
    return {str: f"{name}-ünï/çode", int: 7, float: 0.25, bool: True, bytes: b"\x00\x01pcm"}[
        annotation
    ]


def example(model: type[BaseModel]) -> dict[str, Any]:
    return {name: sample(field.annotation, name) for name, field in model.model_fields.items()}


@pytest.mark.parametrize("model", ALL_SCHEMAS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("fmt", list(Format))
def test_round_trip_every_schema(model: type[BaseModel], fmt: Format) -> None:
    original = model.model_validate(example(model))
    back = decode(model, pack(original, fmt), fmt)
    assert close(back.model_dump(), original.model_dump()), model.__name__


def close(a: Any, b: Any) -> bool:
    """Equal, with float32 rounding allowed for floats."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_vectors_are_msgpack_float32_arrays() -> None:
    body = pack(schemas.TextEmbedResponse(embedding=[0.1] * 512, text="x"))
    assert len(body) < 512 * 5 + 32  # 5 bytes per float32, not 9 per float64
    raw = msgpack.unpackb(body)
    assert isinstance(raw["embedding"], list) and len(raw["embedding"]) == 512
    assert b"\xca" in body  # msgpack float32 marker


@given(st.lists(st.floats(-1, 1, width=32), min_size=1, max_size=600))
@settings(max_examples=50, deadline=None)
def test_float32_vectors_survive_exactly(values: list[float]) -> None:
    back = decode(schemas.SearchRequest, pack({"embedding": values}))
    assert back.embedding == values


@given(st.floats(1.0e9, 4.0e9, allow_nan=False))
@settings(max_examples=50, deadline=None)
def test_timestamps_survive_msgpack_exactly(ts: float) -> None:
    """An epoch time beside a vector: the vector stays float32, the time is not rounded."""
    body = pack({"timestamp": ts, "seconds": 12.5, "embedding": [0.25] * 4, "nested": [{"t": ts}]})
    back = unpack(body)
    assert back["timestamp"] == ts and back["nested"][0]["t"] == ts
    assert back["seconds"] == 12.5 and back["embedding"] == [0.25] * 4
    # the vector and the seconds stay float32 (5 bytes each); each timestamp takes 9
    wide = pack({"timestamp": ts, "embedding": [0.25] * 512})
    assert len(wide) == len(pack({"timestamp": 1.0, "embedding": [0.25] * 512})) + 4


def test_a_play_time_is_not_rounded_to_128_seconds() -> None:
    """float32 has a 128 s step at today's epoch: two plays 40 s apart used to pack equal."""
    a, b = 1796000010.5, 1796000050.25
    assert unpack(pack({"ts": a}))["ts"] == a
    assert unpack(pack({"ts": b}))["ts"] == b
    assert np.float32(a) == np.float32(b)  # what the old float32-only packing sent


@pytest.mark.parametrize(
    "data",
    [b"\xc1", b"\x92\x01", b"\xdb\xff\xff\xff\xff", b"\x91" * 200_000, b"\xa3ab"],
    ids=["never-used", "truncated-array", "huge-str-length", "deep-nesting", "short-str"],
)
def test_malformed_msgpack_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError) as exc:
        unpack(data)
    assert exc.value.status == 400
    assert exc.value.body()["error"]["code"] == "DESERIALIZATION_ERROR"
    assert "msgpack" in exc.value.message


def test_malformed_json_and_wrong_shapes() -> None:
    with pytest.raises(DecodeError):
        unpack(b'{"text": ', Format.JSON)
    with pytest.raises(BadRequest, match="must be a map"):
        decode(schemas.TextEmbedRequest, pack([1, 2, 3]))
    with pytest.raises(BadRequest, match="Either 'text' or 'metadata'"):
        decode(schemas.TextEmbedRequest, pack({}))
    with pytest.raises(BadRequest, match="channels"):
        decode(
            schemas.AudioEmbedRequest,
            pack({"format": "pcm_s16_le", "sample_rate": 48000, "channels": 3, "data": b""}),
        )


def test_empty_body_is_an_empty_map() -> None:
    assert unpack(b"") == {}
    assert decode(schemas.EndStreamRequest, pack({"session_id": "x"})).store is True
