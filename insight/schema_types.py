"""Field types of the wire schemas with the checks pydantic's own types do not make.

An id is a non-empty string of at most ``MAX_ID_CHARS`` without NUL, everywhere; a vector holds
finite numbers only (``true`` is no 1.0, 2^64 no embedding value); a float range bound is
finite; a bytes field given as text must be strict base64 (``"abc"`` is not two bytes of PCM).
"""

from __future__ import annotations

import base64
import binascii
import math
from numbers import Real
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from insight.limits import (
    MAX_ID_CHARS,
    MAX_SAMPLE_RATE,
    MAX_VECTOR_DIM,
    MIN_SAMPLE_RATE,
    id_problem,
)

_EXACT_INT = 2**53  # larger integers are not exact as floats (and 2^64 does not fit msgpack)


def _vector(v: Any) -> Any:
    """Numbers only, finite, at most MAX_VECTOR_DIM of them: ``true`` is not 1.0 and 2^64 is
    no embedding value. One pass before pydantic's own float conversion."""
    if not isinstance(v, (list, tuple)):
        return v  # pydantic says what it expected
    if len(v) > MAX_VECTOR_DIM:
        raise ValueError(f"has {len(v)} values; an embedding has at most {MAX_VECTOR_DIM}")
    for i, x in enumerate(v):
        if type(x) is float or (isinstance(x, Real) and not isinstance(x, (bool, int))):
            if math.isfinite(float(x)):
                continue
            raise ValueError(f"value {i} is NaN or infinite")
        if isinstance(x, int) and not isinstance(x, bool):
            if -_EXACT_INT <= x <= _EXACT_INT:
                continue
            raise ValueError(f"value {i} ({str(x)[:40]}) is an integer beyond ±2^53")
        raise ValueError(f"value {i} ({str(x)[:40]}) is not a number")
    return v


def _id(v: str) -> str:
    problem = id_problem(v, "the id")
    if problem:
        raise ValueError(problem)
    return v


def _no_nul(v: str) -> str:
    if "\x00" in v:
        raise ValueError("must not contain a NUL character")
    return v


def _no_bool(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("must be a number, not a boolean")
    return v


def _pcm_bytes(v: Any) -> Any:
    """Bytes as they are (msgpack bin), or standard base64 text (JSON): strictly, so that
    ``"abc"`` is an error rather than two bytes of audio."""
    if isinstance(v, str):
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(
                "a string here must be standard base64 (with padding); send PCM as msgpack "
                "bin or base64 text in JSON"
            ) from None
    return v


Vector = Annotated[list[float], BeforeValidator(_vector)]
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(_id)]
"""Track and user ids: one limit everywhere (insight.limits.MAX_ID_CHARS), no NUL."""
TrackId = Id
Finite = Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False)]
Pcm = Annotated[bytes, BeforeValidator(_pcm_bytes)]
SampleRate = Annotated[int, Field(ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)]
FolderPath = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), AfterValidator(_no_nul)]
