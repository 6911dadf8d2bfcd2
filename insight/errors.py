"""One error shape everywhere: ``{"error": {"code": ..., "message": ...}}``.

Handlers raise ``InsightError`` subclasses; the bus puts the code and status in the micro
service error headers and the shape in the body; the HTTP bridge maps the status back.
"""

from __future__ import annotations

from typing import Any, ClassVar


class InsightError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        if status is not None:
            self.status = status  # type: ignore[misc]

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}

    @classmethod
    def from_body(cls, body: Any, status: int) -> InsightError:
        """Rebuild an error from its wire shape (what the bridge receives from the bus)."""
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return InsightError(
                str(err.get("message", "")), code=str(err.get("code", "ERROR")), status=status
            )
        return InsightError(f"unexpected error reply: {body!r}"[:500], status=status)


class BadRequest(InsightError):
    status = 400
    code = "BAD_REQUEST"


class DecodeError(BadRequest):
    code = "DESERIALIZATION_ERROR"


class NotFound(InsightError):
    status = 404
    code = "NOT_FOUND"


class Conflict(InsightError):
    status = 409
    code = "CONFLICT"


class PayloadTooLarge(InsightError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(InsightError):
    status = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


class RequestTimeout(InsightError):
    status = 408
    code = "REQUEST_TIMEOUT"


class Busy(InsightError):
    status = 429
    code = "BUSY"


class Unauthorized(InsightError):
    status = 401
    code = "UNAUTHORIZED"


class NotReady(InsightError):
    """A dependency (model, storage, watcher) is not available; the message says how to fix it."""

    status = 503
    code = "NOT_READY"


class ModelNotLoaded(NotReady):
    code = "MODEL_NOT_LOADED"


class StorageNotReady(NotReady):
    code = "STORAGE_NOT_READY"


class DimensionMismatch(StorageNotReady):
    """A collection holds vectors of another dimension than the store was opened with."""


class BusUnavailable(InsightError):
    """NATS or a JetStream leader did not answer (a node lost, a leader being elected)."""

    status = 503
    code = "BUS_UNAVAILABLE"


class BusTimeout(InsightError):
    status = 504
    code = "BUS_TIMEOUT"


MODEL_HINT = (
    "No model is loaded. Download one with `POST /api/v1/models/download` "
    "(or `insight models download`), or point INSIGHT_MODEL__PATH at a local model folder."
)
