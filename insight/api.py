"""The endpoint table: one declaration per capability, served on the bus and over HTTP.

A handler is a plain async function ``(app, request_model) -> reply_model``. ``@router.endpoint``
records its bus name (subject ``insight.v1.<name>``), its HTTP method and path, and takes the
request and reply types from the annotations. The bus service and the HTTP bridge are both
built from ``insight.handlers.all_endpoints()`` (the routers of every capability), so the two
can never drift apart. This module imports no handler: handlers import it.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from insight.schemas import Schema

if TYPE_CHECKING:
    from insight.app import App

SUBJECT_PREFIX = "insight.v1"

Handler = Callable[["App", Any], Awaitable[Schema | None]]
BodyKind = Literal["json", "optional", "none", "raw"]


@dataclass(frozen=True)
class Endpoint:
    name: str  # dotted, e.g. "tracks.get" -> subject insight.v1.tracks.get
    method: str
    path: str  # under /api/v1, aiohttp syntax: {track_id} or {model_id:.+}
    handler: Handler
    request: type[Schema]
    response: type[Schema] | None
    summary: str
    tag: str
    body: BodyKind = "json"
    status: int = 200
    errors: tuple[int, ...] = ()
    query: tuple[str, ...] = ()  # query parameters of a raw-body endpoint (HTTP only)

    @property
    def subject(self) -> str:
        return f"{SUBJECT_PREFIX}.{self.name}"

    @property
    def path_params(self) -> list[str]:
        return [seg[1:-1].split(":")[0] for seg in self.path.split("/") if seg.startswith("{")]


@dataclass
class Router:
    tag: str
    endpoints: list[Endpoint] = field(default_factory=list)

    def endpoint(
        self,
        name: str,
        method: str,
        path: str,
        *,
        body: BodyKind | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        query: tuple[str, ...] = (),
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            request, response = _io_types(fn)
            kind: BodyKind = body or ("none" if method in ("GET", "DELETE") else "json")
            doc = (fn.__doc__ or name).strip().splitlines()[0]
            self.endpoints.append(
                Endpoint(
                    name=name,
                    method=method,
                    path=path,
                    handler=fn,
                    request=request,
                    response=None if response in (None, "None", type(None)) else response,
                    summary=doc,
                    tag=self.tag,
                    body=kind,
                    status=status,
                    errors=errors,
                    query=query,
                )
            )
            return fn

        return register


def _io_types(fn: Handler) -> tuple[Any, Any]:
    """Request and reply types of a handler (its last parameter and its return)."""
    sig = inspect.signature(fn)
    last = list(sig.parameters.values())[-1].annotation

    def resolve(ann: Any) -> Any:
        return eval(ann, fn.__globals__) if isinstance(ann, str) else ann

    return resolve(last), resolve(sig.return_annotation)
