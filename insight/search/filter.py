"""The service boundary between the API's ``SearchFilter`` and the store's ``Where``."""

from __future__ import annotations

from insight.schemas import SearchFilter
from insight.storage.where import Where, where


def store_where(f: SearchFilter | None) -> Where | None:
    """``f`` as the store's filter; None when it constrains nothing."""
    if f is None:
        return None
    return where(**f.model_dump())
