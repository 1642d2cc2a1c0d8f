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

from hitstream.domain.access import ANONYMOUS, Principal
from hitstream.domain.events import DEFAULT_LIMITS, EVENT_TYPES
from hitstream.domain.validation import MAX_SAFE_INTEGER
from hitstream.errors import AccessDenied, LogUnavailable
from hitstream.services.collector import Collector, CollectResult
from hitstream.web.auth import credentials_of
from hitstream.web.deps import Network, services_of
from hitstream.web.encoding import EncodingProblem, inflate
from hitstream.web.ingest import Trust, answer, forwarded_ip
from hitstream.web.openapi import ERROR_REF, RETRY_AFTER

router = APIRouter(tags=["collect"])


def client_ip(request: Request, trusted: Sequence[Network]) -> str:
    """The peer address, or the right-most untrusted hop of X-Forwarded-For behind a proxy."""
    peer = request.client.host if request.client else ""
    forwarded = request.headers.get("x-forwarded-for", "")
    return forwarded_ip(peer, forwarded, Trust(trusted), bool(trusted))


async def read_capped_body(request: Request, cap: int) -> bytes | None:
    """The body, or None past ``cap``; raises ``EncodingProblem`` if the client went away
    (the edge closed it for sending too slowly) before it was complete."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > cap:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        raise EncodingProblem(400, "body", "was not complete", "body: incomplete") from None
    return b"".join(chunks)


def respond(result: CollectResult) -> JSONResponse:
    headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
    return JSONResponse(result.body(), status_code=result.status, headers=headers)


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
        "engaged_ms": {
            **_count(_L.max_engaged_ms),
            "description": "engagement events only (required there): visible, focused time "
            "on the page in ms",
        },
        "scroll_depth": {
            **_count(_L.max_scroll_depth),
            "description": "engagement events only: the deepest scroll reached, percent",
        },
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

    resolve = None
    gate = services.gate
    if request.headers.get("authorization") and gate is not None:
        try:
            principal = (await gate.resolve(credentials_of(request))).principal
        except AccessDenied as exc:
            denied = exc

            def refuse() -> Principal:
                raise denied

            resolve = refuse
        else:
            resolve = lambda: principal  # noqa: E731
    peer = request.client.host if request.client else ""
    status, body, headers = await answer(services, request.headers, peer, chunks(), resolve, trust)
    return JSONResponse(body, status_code=status, headers=headers or None)


def collector_of(request: Request) -> Collector:
    collector = services_of(request).collector
    if collector is None:  # the routes are mounted only with the collector role
        raise RuntimeError("this process built no collector, yet serves an ingestion route")
    return collector


async def read_body(request: Request, collector: Collector) -> bytes | Response:
    """The request's body, inflated, within the collector's cap; or the refusal (counted)."""
    cap = collector.limits.max_batch_body_bytes
    try:
        body = await read_capped_body(request, cap)
        if body is not None:
            body = inflate(body, request.headers.get("content-encoding", ""), cap)
    except EncodingProblem as exc:
        error = {"field": exc.field, "reason": exc.reason}
        return respond(
            collector.reject_request(CollectResult(exc.status, error=error, label=exc.label))
        )
    if body is None:
        return respond(
            collector.reject_request(
                CollectResult(
                    status=413, error={"field": "body", "reason": f"is larger than {cap} bytes"}
                )
            )
        )
    return body


async def principal_of(request: Request, collector: Collector) -> Principal | Response:
    """Who sends: anonymous, or the key of an ``Authorization`` header (an unknown key is
    refused, not ignored: 401)."""
    services = services_of(request)
    if not request.headers.get("authorization") or services.gate is None:
        return ANONYMOUS
    try:  # a server sending with a key
        return (await services.gate.resolve(credentials_of(request))).principal
    except AccessDenied as exc:
        error = {"field": exc.field, "reason": exc.reason}
        return respond(collector.reject_request(CollectResult(401, error=error)))


async def submit(
    request: Request, collector: Collector, body: bytes, media_type: str, principal: Principal
) -> CollectResult | Response:
    """Hand canonical events to the collector: its result, or 503 when the log is down."""
    try:
        return await collector.collect(
            body,
            media_type,
            client_ip(request, services_of(request).trusted_proxies),
            request.headers.get("user-agent", ""),
            origin=request.headers.get("origin", ""),
            principal=principal,
        )
    except LogUnavailable:
        collector.reject_request(
            CollectResult(status=503, error={"field": "log", "reason": "unavailable"})
        )
        return JSONResponse(
            {"error": {"field": "log", "reason": "event log unavailable; nothing was stored"}},
            status_code=503,
            headers={"Retry-After": "5"},
        )
