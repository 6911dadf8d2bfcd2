"""MessagePack (default) and JSON bodies for the schemas.

Floats go out as float32 in msgpack, as the original sidecar did, so a 512-d vector is 2.5 KB:
seven significant digits are plenty for scores, seconds and vectors. But an epoch timestamp as
float32 moves in 128 s steps (a play's time was off by up to a minute, and two listens
collapsed into one), so a single float of magnitude 2^24 or more goes out as float64.

Decoding never raises anything but ``DecodeError``/``BadRequest`` with a message a client can
act on.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, TypeVar

import msgpack
from pydantic import BaseModel, ValidationError

from insight.errors import BadRequest, DecodeError

M = TypeVar("M", bound=BaseModel)

MSGPACK = "application/msgpack"
JSON = "application/json"

# Bounds for untrusted msgpack: no single container or string may claim more than this.
_MAX_LEN = 16 * 1024 * 1024


class Format(StrEnum):
    MSGPACK = "msgpack"
    JSON = "json"

    @property
    def content_type(self) -> str:
        return MSGPACK if self is Format.MSGPACK else JSON


def format_of(content_type: str | None, *, default: Format = Format.MSGPACK) -> Format | None:
    """Body format from a Content-Type/Accept value; None when it names neither."""
    if not content_type:
        return default
    ct = content_type.lower()
    if "msgpack" in ct:
        return Format.MSGPACK
    if "json" in ct:
        return Format.JSON
    return None


def pack(obj: Any, fmt: Format = Format.MSGPACK) -> bytes:
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="python" if fmt is Format.MSGPACK else "json")
    if fmt is Format.JSON:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=_json_default).encode()
    if not _has_wide_float(obj):
        return msgpack.packb(obj, use_bin_type=True, use_single_float=True, default=_mp_default)
    return _MsgpackWriter().pack(obj)


# From here float32 cannot even hold every whole number: 1.8e9 s steps by 128 s.
_WIDE = float(2**24)


def _wide(x: float) -> bool:
    return not -_WIDE < x < _WIDE  # NaN and inf are not wide: float32 holds them


def _has_wide_float(obj: Any) -> bool:
    """Whether a float outside a vector is too wide for float32 (a timestamp)."""
    if type(obj) is float:
        return _wide(obj)
    if isinstance(obj, dict):
        return any(_has_wide_float(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        if obj and type(obj[0]) is float and all(type(v) is float for v in obj):
            return False  # a vector: float32 by design
        return any(_has_wide_float(v) for v in obj)
    return hasattr(obj, "tolist") and not isinstance(obj, (str, bytes))


class _MsgpackWriter:
    """One body's msgpack: vectors as float32, wide single floats as float64.

    msgpack's packer has one float width per packer, so containers are walked here and each
    leaf goes to the packer of its width (packers are per body: they are not thread-safe).
    """

    def __init__(self) -> None:
        self.f32 = msgpack.Packer(use_bin_type=True, use_single_float=True, default=_mp_default)
        self.f64 = msgpack.Packer(use_bin_type=True, use_single_float=False, default=_mp_default)
        self.out: list[bytes] = []

    def pack(self, obj: Any) -> bytes:
        self._add(obj)
        return b"".join(self.out)

    def _add(self, obj: Any) -> None:
        if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
            obj = obj.tolist()  # numpy arrays and scalars
        if isinstance(obj, float):
            self.out.append((self.f64 if _wide(obj) else self.f32).pack(obj))
        elif isinstance(obj, dict):
            self.out.append(self.f32.pack_map_header(len(obj)))
            for key, value in obj.items():
                self._add(key)
                self._add(value)
        elif isinstance(obj, (list, tuple)):
            if obj and all(type(v) is float for v in obj):
                self.out.append(self.f32.pack(obj))  # a vector
                return
            self.out.append(self.f32.pack_array_header(len(obj)))
            for value in obj:
                self._add(value)
        else:
            self.out.append(self.f32.pack(obj))


def unpack(data: bytes, fmt: Format = Format.MSGPACK) -> Any:
    """Decode a body to plain Python objects; empty body -> ``{}``."""
    if not data:
        return {}
    try:
        if fmt is Format.JSON:
            return json.loads(data)
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=False,
            max_str_len=_MAX_LEN,
            max_bin_len=_MAX_LEN * 4,
            max_array_len=_MAX_LEN,
            max_map_len=_MAX_LEN,
        )
    except RecursionError:
        raise DecodeError(f"Failed to deserialize {fmt.value}: nesting too deep") from None
    except Exception as exc:  # every decoder error is the client's
        raise DecodeError(
            f"Failed to deserialize {fmt.value}: {str(exc) or type(exc).__name__}"
        ) from None


def validate(model: type[M], obj: Any) -> M:
    if not isinstance(obj, dict):
        raise BadRequest(f"request body must be a map/object, got {type(obj).__name__}")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None
    except RecursionError:
        raise BadRequest("request body nested too deeply") from None


def decode(model: type[M], data: bytes, fmt: Format = Format.MSGPACK) -> M:
    return validate(model, unpack(data, fmt))


def describe(exc: ValidationError) -> str:
    """One readable line per problem: ``field.path: message``."""
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid request: " + "; ".join(parts)


def _mp_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, StrEnum):
        return str(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        import base64

        return base64.b64encode(obj).decode()
    return _mp_default(obj)
