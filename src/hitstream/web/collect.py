"""The ingestion route: ``POST /api/v1/events`` (one event, a JSON array, or NDJSON).

It reads the body with a hard size cap, finds the client IP (believing ``X-Forwarded-For``
only from trusted proxies), and hands everything to the collector service. 202 means the
event log has the events durably; 503 with ``Retry-After`` means nothing was stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from hitstream.domain.access import Principal
from hitstream.domain.events import DEFAULT_LIMITS, EVENT_TYPES
from hitstream.domain.validation import MAX_SAFE_INTEGER
from hitstream.errors import AccessDenied
from hitstream.web.auth import credentials_of
from hitstream.web.deps import Network, services_of
from hitstream.web.encoding import EncodingProblem
from hitstream.web.ingest import Trust, answer, forwarded_ip
from hitstream.web.openapi import ERROR_REF, RETRY_AFTER

router = APIRouter(tags=["collect"])


def client_ip(request: Request, trusted: Sequence[Network]) -> str:
    """The peer address, or the right-most untrusted hop of X-Forwarded-For behind a proxy."""
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for", "")
    return forwarded_ip(peer, forwarded, Trust(trusted), bool(trusted))


_L = DEFAULT_LIMITS
_PRINTABLE = "^[^\\x00-\\x1f\\x7f]*$"


def _text(limit: int, **extra: Any) -> dict[str, Any]:
    """An optional text field: ``null`` counts as absent; control characters are refused."""
    return {"type": ["string", "null"], "maxLength": limit, "pattern": _PRINTABLE, **extra}


def _count(limit: int) -> dict[str, Any]:
    return {
        "type": ["number", "null"],
        "minimum": 0,
        "maximum": limit,
        "description": "a fraction is truncated",
    }


EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["site_id"],
    "properties": {
        "site_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": _L.max_site_id,
            "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]*$",
            "examples": ["example.com"],
        },
        "type": {"type": ["string", "null"], "enum": [*sorted(EVENT_TYPES), None]},
        "name": _text(_L.max_name, description="required for custom"),
        "url": _text(_L.max_url, pattern="^[hH][tT][tT][pP][sS]?:[^\\x00-\\x1f\\x7f]*$"),
        "path": _text(_L.max_url, pattern="^/[^\\x00-\\x1f\\x7f]*$"),
        "referrer": _text(_L.max_referrer),
        "title": _text(_L.max_title),
        "user_id": _text(_L.max_user_id),
        "session_id": _text(_L.max_session_id),
        "event_id": _text(
            _L.max_event_id,
            pattern="^[A-Za-z0-9_-]*$",
            description="idempotency key: the same key for a site is stored once",
        ),
        "props": {
            "type": ["object", "null"],
            "maxProperties": _L.max_props,
            "propertyNames": {"minLength": 1, "maxLength": _L.max_prop_key, "pattern": _PRINTABLE},
            "additionalProperties": {
                "anyOf": [
                    {"type": "string", "maxLength": _L.max_prop_value},
                    {"type": "number", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
                    {"type": "boolean"},
                ]
            },
        },
        "timestamp": {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "integer", "minimum": 0, "maximum": MAX_SAFE_INTEGER},
                {"type": "null"},
            ],
            "description": "ISO 8601 with offset or epoch ms, at most 24 h old and 5 min ahead; "
            "default: receipt time",
        },
        "duration_ms": _count(_L.max_duration_ms),
        "load_time_ms": _count(_L.max_load_time_ms),
        "screen_width": _count(_L.max_screen_width),
    },
}
_FIELD_REASON = {
    "type": "object",
    "required": ["field", "reason"],
    "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
}
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["accepted", "ids"],
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "ids": {"type": "array", "items": {"type": "string"}},
        "rejected": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "errors"],
                "properties": {
                    "index": {"type": "integer", "minimum": 0},
                    "errors": {"type": "array", "items": _FIELD_REASON},
                },
            },
        },
        "error": _FIELD_REASON,
    },
}
_ERROR = {"application/json": {"schema": ERROR_REF}}


@router.post(
    "/api/v1/events",
    status_code=202,
    summary="Send one event, a batch (JSON array, at most 500) or NDJSON",
    responses={
        202: {
            "description": "Stored durably in the event log (ids returned; refused events of "
            "a batch listed by index)",
            "content": {"application/json": {"schema": ANSWER_SCHEMA}},
        },
        400: {
            "description": "Body is not JSON (or nests too deep, is not UTF-8, holds a number "
            "out of range), or a compressed body is corrupt",
            "content": _ERROR,
        },
        401: {
            "description": "An `Authorization` header with an unknown or revoked key",
            "content": _ERROR,
        },
        413: {"description": "Body (inflated too) or batch too large", "content": _ERROR},
        415: {"description": "Unsupported Content-Type or Content-Encoding", "content": _ERROR},
        422: {
            "description": "No event was valid (each refusal names field and reason: an "
            "unregistered `site_id`, a `url` or `origin` whose host the site does not allow "
            "...), or the body holds no event",
            "content": {"application/json": {"schema": {"anyOf": [ANSWER_SCHEMA, ERROR_REF]}}},
        },
        429: {
            "description": "More events per second than this client address or site may "
            "send (HITSTREAM_INGEST_RATE_PER_IP, HITSTREAM_INGEST_RATE_PER_SITE); nothing "
            "stored; retry after Retry-After",
            "headers": RETRY_AFTER,
            "content": _ERROR,
        },
        503: {
            "description": "Event log unavailable; nothing stored; retry after Retry-After",
            "headers": RETRY_AFTER,
            "content": _ERROR,
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            EVENT_SCHEMA,
                            {
                                "type": "array",
                                "items": EVENT_SCHEMA,
                                "minItems": 1,
                                "maxItems": _L.max_batch_events,
                            },
                        ]
                    }
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
async def collect_events(request: Request) -> Response:
    """Documents the route; ``HitstreamApp`` hands these requests to ``web/ingest.LeanIngest``
    before FastAPI sees them, and both answer through ``ingest.answer``."""
    services = services_of(request)
    trust = Trust(services.trusted_proxies)

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in request.stream():
                yield chunk
        except ClientDisconnect:
            raise EncodingProblem(400, "body", "was not complete", "body: incomplete") from None

    principal_of = None
    gate = services.gate
    if request.headers.get("authorization") and gate is not None:
        try:
            principal = (await gate.resolve(credentials_of(request))).principal
        except AccessDenied as exc:
            denied = exc

            def refuse() -> Principal:
                raise denied

            principal_of = refuse
        else:
            principal_of = lambda: principal  # noqa: E731
    peer = request.client.host if request.client else ""
    status, body, headers = await answer(
        services, request.headers, peer, chunks(), principal_of, trust
    )
    return JSONResponse(body, status_code=status, headers=headers or None)
