"""Build the configured store: ``file`` (usearch + SQLite) or ``qdrant``."""

from __future__ import annotations

from insight.config import StorageSettings
from insight.storage.base import VectorStore
from insight.storage.file import FileStore
from insight.storage.qdrant import QdrantStore


def make_store(settings: StorageSettings, dim: int) -> VectorStore:
    """The store ``settings`` describe, not opened yet."""
    mode = getattr(settings.mode, "value", settings.mode)
    if mode == "file":
        return FileStore(settings.data_dir, dim, settings.collection_prefix)
    if mode == "qdrant":
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        return QdrantStore(dim, settings.url, key, settings.collection_prefix)
    raise ValueError(f"unknown storage mode {mode!r}")


async def open_store(settings: StorageSettings, dim: int) -> VectorStore:
    """Build and open the configured store (raises StorageNotReady when it cannot)."""
    store = make_store(settings, dim)
    await store.open()
    return store
