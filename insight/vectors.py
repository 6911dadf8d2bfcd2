"""Checking and normalising embeddings: one rule set for every caller.

A vector from outside (an API body, a point handed to a store, an embedding to classify) is
usable when it is numeric, has the model's dimension, holds only finite values and is not all
zeros: a zero vector has no direction, so its cosine similarity is undefined; stored, it would
match nothing and poison every mean it is part of. Each failure is a ``BadRequest`` naming
``what`` was wrong, so the caller's error says which vector it was.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from insight.errors import BadRequest


def checked(values: Any, dim: int, what: str = "vector") -> np.ndarray:
    """A 1-d float32 copy of ``values``; BadRequest unless it has ``dim`` finite values, not
    all zero."""
    try:
        with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf, refused below
            vec = np.array(values, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"{what} is not numeric: {e}") from None
    if vec.shape[0] != dim:
        raise BadRequest(f"{what} dimension mismatch: expected {dim}, got {vec.shape[0]}")
    if not np.isfinite(vec).all():
        raise BadRequest(f"{what} contains NaN or infinite values")
    if not vec.any():
        raise BadRequest(f"{what} is all zeros (cosine similarity is undefined)")
    return vec


def unit(values: Any, dim: int, what: str = "vector") -> np.ndarray:
    """:func:`checked`, scaled to length 1."""
    vec = checked(values, dim, what)
    return vec / np.float32(np.linalg.norm(vec))


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    """Each row of ``matrix`` (or one vector) scaled to length 1, in the input's precision,
    returned as float32; an all-zero row stays zero."""
    m = np.asarray(matrix)
    norms = np.linalg.norm(m, axis=-1, keepdims=True)
    return (m / np.where(norms > 0, norms, 1.0)).astype(np.float32)
