"""What services share and may find missing: the loaded model's pool and the store.

A worker starts degraded, never fails: the model may be absent or still downloading and the
store may be down. Services get these slots (not the whole app) and ask them at the moment
of use: ``require_pool()`` / ``require_store()`` raise the project's ``NOT_READY`` errors
with the reason, the optional ``pool`` / ``store`` let a service skip work instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from insight.errors import MODEL_HINT, ModelNotLoaded, StorageNotReady

if TYPE_CHECKING:
    from insight.inference.model import EmbeddingModel
    from insight.inference.pool import InferencePool
    from insight.storage.base import VectorStore
    from insight.storage.spaces import Spaces


class ModelSlot:
    """The loaded model's inference pool (``None`` until one loads) and why none is loaded."""

    def __init__(self) -> None:
        self.pool: InferencePool | None = None
        self.error: str | None = MODEL_HINT

    def require_pool(self) -> InferencePool:
        if self.pool is None:
            raise ModelNotLoaded(self.error or MODEL_HINT)
        return self.pool

    @property
    def model_id(self) -> str | None:
        """The id recorded with every vector the loaded model makes (``None``: no model)."""
        return self.pool.model.model_id if self.pool is not None else None


class StoreSlot:
    """The vector store (``None`` while disabled or down) and why it is not open."""

    def __init__(self) -> None:
        self.store: VectorStore | None = None  # the loaded model's space
        self.spaces: Spaces | None = None  # every space opened so far (closed at stop)
        self.error: str | None = "storage not opened yet"

    def require_store(self) -> VectorStore:
        if self.store is None:
            raise StorageNotReady(self.error or "storage not ready")
        return self.store


class ModelListener(Protocol):
    """A service told when a model is (re)loaded, e.g. to rebuild what it cached per model."""

    async def on_model_loaded(self, model: EmbeddingModel) -> None: ...
