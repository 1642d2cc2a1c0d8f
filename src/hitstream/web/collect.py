"""The ingestion route: ``POST /api/v1/events`` (one event, a JSON array, or NDJSON).

It reads the body with a hard size cap, finds the client IP (believing ``X-Forwarded-For``
only from trusted proxies), and hands everything to the collector service. 202 means the
event log has the events durably; 503 with ``Retry-After`` means nothing was stored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hitstream.domain.events import DEFAULT_LIMITS, EVENT_TYPES
from hitstream.errors import LogUnavailable
from hitstream.services.collector import CollectResult
from hitstream.web.deps import Network, services_of

router = APIRouter(tags=["collect"])


def client_ip(request: Request, trusted: Sequence[Network]) -> str:
    """The peer address, or the right-most untrusted hop of X-Forwarded-For behind a proxy."""
    peer = request.client.host if request.client else ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = request.headers.get("x-forwarded-for", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else peer
    return hops[0] if hops and _is_ip(hops[0]) else peer


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


async def _read_body(request: Request, cap: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _respond(result: CollectResult) -> JSONResponse:
    return JSONResponse(result.body(), status_code=result.status)


_L = DEFAULT_LIMITS
EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["site_id"],
    "properties": {
        "site_id": {"type": "string", "maxLength": _L.max_site_id, "examples": ["example.com"]},
        "type": {"type": "string", "enum": sorted(EVENT_TYPES), "default": "pageview"},
        "name": {"type": "string", "maxLength": _L.max_name, "description": "required for custom"},
        "url": {"type": "string", "maxLength": _L.max_url, "format": "uri"},
        "path": {"type": "string", "maxLength": _L.max_url, "pattern": "^/"},
        "referrer": {"type": "string", "maxLength": _L.max_referrer},
        "title": {"type": "string", "maxLength": _L.max_title},
        "user_id": {"type": "string", "maxLength": _L.max_user_id},
        "session_id": {"type": "string", "maxLength": _L.max_session_id},
        "event_id": {
            "type": "string",
            "maxLength": _L.max_event_id,
            "description": "idempotency key: the same key for a site is stored once",
        },
        "props": {
            "type": "object",
            "maxProperties": _L.max_props,
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "timestamp": {
            "oneOf": [{"type": "string", "format": "date-time"}, {"type": "integer"}],
            "description": "ISO 8601 with offset or epoch ms; default: receipt time",
        },
        "duration_ms": {"type": "integer", "minimum": 0, "maximum": _L.max_duration_ms},
        "load_time_ms": {"type": "integer", "minimum": 0, "maximum": _L.max_load_time_ms},
        "screen_width": {"type": "integer", "minimum": 0, "maximum": _L.max_screen_width},
    },
}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
        }
    },
}


@router.post(
    "/api/v1/events",
    status_code=202,
    summary="Send one event, a batch (JSON array, at most 500) or NDJSON",
    responses={
        202: {"description": "Stored durably in the event log (ids returned)"},
        400: {
            "description": "Body is not valid JSON",
            "content": {"application/json": {"schema": _ERROR}},
        },
        413: {
            "description": "Body or batch too large",
            "content": {"application/json": {"schema": _ERROR}},
        },
        415: {
            "description": "Unsupported content type",
            "content": {"application/json": {"schema": _ERROR}},
        },
        422: {"description": "No event was valid; each refusal names field and reason"},
        503: {"description": "Event log unavailable; nothing stored; retry after Retry-After"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [EVENT_SCHEMA, {"type": "array", "items": EVENT_SCHEMA}]}
                },
                "application/x-ndjson": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
            },
        }
    },
)
async def collect_events(request: Request) -> Response:
    services = services_of(request)
    collector = services.collector
    if collector is None:  # the route is mounted only with the collector role
        raise RuntimeError("this process built no collector, yet serves /api/v1/events")
    trusted = services.trusted_proxies
    body = await _read_body(request, collector.limits.max_batch_body_bytes)
    if body is None:
        return _respond(
            collector.reject_request(
                CollectResult(
                    status=413,
                    error={
                        "field": "body",
                        "reason": f"is larger than {collector.limits.max_batch_body_bytes} bytes",
                    },
                )
            )
        )
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    try:
        result = await collector.collect(
            body, media_type, client_ip(request, trusted), request.headers.get("user-agent", "")
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
    return _respond(result)
