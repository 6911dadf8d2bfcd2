"""Checks and names shared by the backends."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from insight.errors import BadRequest

_NAME = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


def full_name(prefix: str, name: str) -> str:
    """The real collection name: ``f"{prefix}_{name}"`` when a prefix is set."""
    check_name(name)
    return f"{prefix}_{name}" if prefix else name


def check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadRequest(f"invalid collection name {name!r} (letters, digits, _ and - only)")


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise BadRequest(f"point key must be a non-empty string, got {key!r}")
    return key


def check_vector(vector: Any, dim: int) -> np.ndarray:
    """A float32 copy of ``vector``; BadRequest when its size is not ``dim`` or it is unusable."""
    try:
        arr = np.array(vector, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"vector is not numeric: {e}") from None
    if arr.shape[0] != dim:
        raise BadRequest(f"expected {dim}-d vector, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise BadRequest("vector contains NaN or infinite values")
    if not np.any(arr):
        raise BadRequest("vector is all zeros (cosine similarity is undefined)")
    return arr


def check_limit(limit: int) -> int:
    if not isinstance(limit, int) or limit < 0:
        raise BadRequest(f"limit must be a non-negative integer, got {limit!r}")
    return limit
