"""OpenAPI 3.1 document generated from the endpoint table and the pydantic schemas."""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import models_json_schema

from insight import __version__
from insight.api import Endpoint

REF = "#/components/schemas/{model}"
ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
STATUS_TEXT = {
    400: "Bad input",
    401: "Missing or wrong API key",
    404: "Unknown resource",
    408: "Body not received in time (INSIGHT_SERVER__BODY_TIMEOUT_S)",
    409: "Conflict",
    413: "Body too large",
    415: "Unsupported content type",
    429: "Busy, retry later",
    503: "Not ready (no model, storage or worker)",
    504: "No reply from the bus in time",
}
COMMON_ERRORS = (400, 401, 404, 408, 413, 415, 429, 503, 504)
NEGOTIATION = (
    "Bodies are MessagePack (application/msgpack) or JSON. The reply is in the format the "
    "`Accept` header names; without one (or with `*/*`) it is in the format of the request "
    "body, so a JSON body gets a JSON reply; a request with neither (a bare GET) gets "
    "MessagePack, the default. A JSON-only client (one generated from this document) works "
    "as is for requests with a body; for GET and DELETE it sends `Accept: application/json`."
)


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}, "application/msgpack": {"schema": schema}}


def _operation(ep: Endpoint, schemas: dict[str, Any]) -> dict[str, Any]:
    req_schema = copy.deepcopy(schemas[ep.request.__name__])
    props: dict[str, Any] = req_schema.get("properties", {})
    required: list[str] = req_schema.get("required", [])
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for p in ep.path_params
    ]
    for p in ep.path_params:
        props.pop(p, None)
        if p in required:
            required.remove(p)
    if not required:
        req_schema.pop("required", None)
    op: dict[str, Any] = {
        "operationId": ep.name.replace(".", "_"),
        "summary": ep.summary,
        "tags": [ep.tag],
        "description": f"Bus subject: `{ep.subject}`",
    }
    if ep.body == "none":
        params += [
            {"name": name, "in": "query", "required": name in required, "schema": sch}
            for name, sch in props.items()
            if sch.get("type") in ("string", "boolean", "integer", "number") or "enum" in sch
        ]
    elif ep.body == "raw":
        params += [
            {"name": name, "in": "query", "required": False, "schema": props[name]}
            for name in ep.query
        ]
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    elif props:
        op["requestBody"] = {
            "required": ep.body == "json" and bool(required),
            "content": _content(req_schema),
        }
    if params:
        op["parameters"] = params
    ok: dict[str, Any] = {"description": "Success"}
    if ep.response is not None and ep.status != 204:
        ok["content"] = _content({"$ref": REF.format(model=ep.response.__name__)})
    op["responses"] = {str(ep.status): ok} | {
        str(code): {
            "description": STATUS_TEXT[code],
            "content": _content({"$ref": REF.format(model="Error")}),
        }
        for code in sorted(set(COMMON_ERRORS) | set(ep.errors))
        if code in STATUS_TEXT
    }
    return op


def openapi_document(endpoints: list[Endpoint]) -> dict[str, Any]:
    models = {ep.request for ep in endpoints} | {ep.response for ep in endpoints if ep.response}
    _, defs = models_json_schema(
        [(m, "validation") for m in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    schemas: dict[str, Any] = defs.get("$defs", {})
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        path = "/api/v1" + ep.path.replace(":.+}", "}")
        paths.setdefault(path, {})[ep.method.lower()] = _operation(ep, schemas)
    schemas["Error"] = ERROR_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "insight",
            "version": __version__,
            "description": "CLAP embeddings, semantic search, mood, taste profiles and "
            "recommendations for Music Assistant. " + NEGOTIATION,
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>insight API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .2rem}li{margin:.2rem 0}</style></head>
<body><h1>insight API</h1>
<p>The machine-readable document is <a href="openapi.json">openapi.json</a> (OpenAPI 3.1).
Bodies are MessagePack by default; a JSON body gets a JSON reply, and
<code>Accept: application/json</code> asks for JSON anywhere.</p>
<ul id="eps"></ul>
<script>
fetch('openapi.json').then(r => r.json()).then(doc => {
  const ul = document.getElementById('eps');
  for (const [path, ops] of Object.entries(doc.paths)) for (const [m, op] of Object.entries(ops)) {
    const li = document.createElement('li');
    li.innerHTML = `<code>${m.toUpperCase()} ${path}</code> — ${op.summary}`;
    ul.appendChild(li);
  }
});
</script></body></html>
"""
