"""Build the configured store: ``file`` (usearch + SQLite) or ``qdrant``."""

from __future__ import annotations

from insight.config import StorageSettings
from insight.storage.base import VectorStore
from insight.storage.file import FileStore
from insight.storage.qdrant import QdrantStore


def make_store(settings: StorageSettings, dim: int, prefix: str | None = None) -> VectorStore:
    """The store ``settings`` describe, not opened yet; ``prefix`` replaces the configured
    collection prefix (a model space, :mod:`insight.storage.spaces`)."""
    mode = getattr(settings.mode, "value", settings.mode)
    prefix = settings.collection_prefix if prefix is None else prefix
    if mode == "file":
        return FileStore(settings.data_dir, dim, prefix)
    if mode == "qdrant":
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        return QdrantStore(dim, settings.url, key, prefix)
    raise ValueError(f"unknown storage mode {mode!r}")


async def open_store(settings: StorageSettings, dim: int, prefix: str | None = None) -> VectorStore:
    """Build and open the configured store (raises StorageNotReady when it cannot)."""
    store = make_store(settings, dim, prefix)
    await store.open()
    return store
