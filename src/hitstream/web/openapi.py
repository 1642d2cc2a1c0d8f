"""The OpenAPI document as hitstream really answers: 400 (not 422) for bad parameters, and
the edge's answers (431, 503) on every operation.

FastAPI documents a 422 ``HTTPValidationError`` for every operation with parameters, but
hitstream answers a bad parameter with 400 and its own error body; the HTTP edge
(``web/server.py``) answers an oversized request head with 431 and a connection past the cap
with 503. A client generated from the document, or a schema fuzzer, must find no answer the
document does not list: the schema fuzz test (``tests/e2e/test_schema_fuzz.py``) checks it.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

ERROR_REF: Final = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA: Final = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["field", "reason"],
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
        }
    },
}
RETRY_AFTER: Final = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_JSON_ERROR: Final = {"application/json": {"schema": ERROR_REF}}
_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _edge_responses(operation: dict[str, Any]) -> dict[str, Any]:
    """What any operation may answer besides its own success, as the edge answers it."""
    takes_input = bool(operation.get("parameters")) or "requestBody" in operation
    extra: dict[str, Any] = {}
    if takes_input:
        extra["400"] = {
            "description": "A parameter or the body is invalid: the answer names it",
            "content": _JSON_ERROR,
        }
    extra["431"] = {
        "description": "Request line and headers larger than HITSTREAM_MAX_HEADER_BYTES, or "
        "more than HITSTREAM_MAX_HEADERS headers (the connection is then closed)",
        "content": _JSON_ERROR,
    }
    extra["503"] = {
        "description": "Unavailable: a backing service is down, or the server holds "
        "HITSTREAM_MAX_CONNECTIONS connections; nothing was done, retry after Retry-After",
        "headers": RETRY_AFTER,
        "content": _JSON_ERROR,
    }
    return extra


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with FastAPI's default 422 replaced by what hitstream answers."""
    for item in schema.get("paths", {}).values():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses: dict[str, Any] = operation.setdefault("responses", {})
            default_422 = responses.get("422", {}).get("description") == "Validation Error"
            if default_422:
                del responses["422"]
            for status, response in _edge_responses(operation).items():
                responses.setdefault(status, response)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = ERROR_SCHEMA
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed document at the app's ``openapi_url`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                    tags=app.openapi_tags,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
