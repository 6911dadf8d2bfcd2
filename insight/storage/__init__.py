"""Vector storage: the contract (base), the file and Qdrant backends, and the factory."""

from insight.storage.base import (
    COLLECTIONS,
    TASTE_PROFILES,
    TRACKS_AUDIO,
    TRACKS_TEXT,
    Point,
    ScoredPoint,
    StoreStats,
    VectorStore,
    point_id,
    profile_key,
)
from insight.storage.factory import make_store, open_store

__all__ = [
    "COLLECTIONS",
    "TASTE_PROFILES",
    "TRACKS_AUDIO",
    "TRACKS_TEXT",
    "Point",
    "ScoredPoint",
    "StoreStats",
    "VectorStore",
    "make_store",
    "open_store",
    "point_id",
    "profile_key",
]
