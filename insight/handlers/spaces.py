"""Model spaces: list them, drop one that re-embedding has replaced."""

from __future__ import annotations

from typing import TYPE_CHECKING

from insight.api import Router
from insight.errors import StorageNotReady
from insight.schemas import Empty
from insight.schemas.spaces import SpaceDropResponse, SpaceInfo, SpaceRef, SpacesResponse
from insight.storage.spaces import DEFAULT_KEY

if TYPE_CHECKING:
    from insight.app import App
    from insight.storage.spaces import Spaces

router = Router(tag="storage")
DEFAULT_NAME = "default"


def _spaces(app: App) -> Spaces:
    if app.spaces is None or app.store is None:
        raise StorageNotReady(app.store_error or "storage not ready")
    return app.spaces


@router.endpoint("storage.spaces", "GET", "/storage/spaces", errors=(503,))
async def list_spaces(app: App, req: Empty) -> SpacesResponse:
    """Model spaces of this data dir: dimension, model, vectors per collection, current."""
    described = await _spaces(app).describe()
    return SpacesResponse(
        spaces=[
            SpaceInfo(
                space=d["key"] or DEFAULT_NAME,
                dim=d["dim"],
                model_id=d["model_id"],
                current=d["current"],
                migrating=d["migrating"],
                counts=d["counts"],
            )
            for d in described
        ]
    )


@router.endpoint("storage.spaces.drop", "DELETE", "/storage/spaces/{space}", errors=(404, 409, 503))
async def drop_space(app: App, req: SpaceRef) -> SpaceDropResponse:
    """Delete a model space's collections (once its tracks are re-embedded in the current)."""
    key = DEFAULT_KEY if req.space == DEFAULT_NAME else req.space
    dropped = await _spaces(app).drop(key)
    return SpaceDropResponse(
        space=req.space,
        dim=dropped.dim,
        model_id=dropped.model_id,
        message=f"dropped the {dropped.dim}-d space of {dropped.model_id or 'no model'}",
    )
