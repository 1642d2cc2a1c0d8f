"""The seeds' write endpoints: ``POST /event``, ``/events``, ``/ingest``, ``/api/analytics``.

Each body is translated to ONE canonical event (``POST /api/v1/events``'s shape) and handed
to the same collector path: the same size cap, validation, site and Origin checks, rate
limits, durable append before the 2xx and rejection tally. A refusal names the field as the
client sent it (``metadata.load_time``, ``page_url``), not the canonical one. Fields the
canonical event has no place for become props; a client-sent ``ip_address``/``user_agent``
is used (never stored) only with a write key of the site, else the connection's own are.
A body that names a ``site_id`` (seed 001's do; any may) goes to that site, others to the
configured one (``seed_sites``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hitstream.domain import access
from hitstream.domain.access import Action, Principal
from hitstream.domain.errors import QueryError
from hitstream.services.collector import JSON_TYPES, Collector, CollectResult
from hitstream.services.json_body import BodyProblem
from hitstream.services.json_body import decode as decode_json
from hitstream.web.collect import collector_of, principal_of, read_body, respond, submit
from hitstream.web.compat.seed_sites import configured_site
from hitstream.web.deps import services_of
from hitstream.web.openapi import ERROR_REF, RETRY_AFTER

router = APIRouter(tags=["compat"])

SEED_TYPES: Final = {
    "page_view": "pageview",
    "pageview": "pageview",
    "page-view": "pageview",
    "click": "click",
    "session": "session",
}
"""A seed's event type -> the canonical type; any other name is a custom event of that name."""
ELEMENT_PROPS: Final = {
    "element": "element_name",
    "element_name": "element_name",
    "element_id": "element_id",
    "element_text": "element_text",
    "element_type": "element_type",
}
NEVER_KEPT: Final = frozenset({"ip", "ip_address", "user_agent", "useragent", "userAgent"})
"""Fields never made props, whatever the credential: no raw IP or User-Agent is stored."""
_ENCODER = msgspec.json.Encoder()


@dataclass(slots=True)
class Translated:
    """A canonical event, and where each canonical field came from in the seed's body."""

    event: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    props: dict[str, Any] = field(default_factory=dict)
    prop_origins: dict[str, str] = field(default_factory=dict)

    def put(self, canonical: str, value: Any, origin: str) -> None:
        if value is not None:
            self.event[canonical] = value
            self.origins[canonical] = origin

    def prop(self, key: str, value: Any, origin: str) -> None:
        if value is not None and key not in NEVER_KEPT:
            self.props[key] = value
            self.prop_origins[key] = origin

    def seed_field(self, canonical: str) -> str:
        """The field the client sent for a canonical field of a refusal."""
        if canonical.startswith("props."):
            key = canonical[len("props.") :]
            return self.prop_origins.get(key, key)
        return self.origins.get(canonical, canonical)

    def finish(self) -> dict[str, Any]:
        if self.props and "props" not in self.event:  # a metadata that is no object: refused
            self.event["props"] = self.props
        return self.event


def event_type(raw: object) -> tuple[object, str]:
    """(canonical type, custom name) for a seed's type name; a non-string is passed on as it
    is, for validation to refuse by name."""
    if not isinstance(raw, str):
        return raw, ""
    known = SEED_TYPES.get(raw.strip().lower())
    return (known, "") if known else ("custom", raw)


def millis(seconds: object) -> object:
    """Seconds (the seeds' durations) as whole milliseconds; anything else as it is."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return seconds
    if isinstance(seconds, float) and not math.isfinite(seconds):
        return seconds
    return round(seconds * 1000)


def _location(out: Translated, value: object, origin: str) -> None:
    """A seed's page: an absolute URL, or a path."""
    if isinstance(value, str) and value.startswith("/"):
        out.put("path", value, origin)
    else:
        out.put("url", value, origin)


def _type(out: Translated, raw: object, origin: str) -> None:
    kind, name = event_type(raw)
    out.put("type", kind, origin)
    if name:
        out.put("name", name, origin)


def _extras(out: Translated, body: Mapping[str, Any], known: frozenset[str], where: str) -> None:
    """Every other field of the body becomes a prop of its own name."""
    for key, value in body.items():
        if key not in known and value is not None:
            out.prop(str(key), value, f"{where}{key}")


def _overrides(out: Translated, body: Mapping[str, Any], writer: bool) -> None:
    """The visitor's IP and User-Agent as the client says: believed from a write key only."""
    if writer:
        out.put("ip", body.get("ip_address"), "ip_address")
        out.put("user_agent", body.get("user_agent"), "user_agent")


_S000: Final = frozenset(
    {"type", "user_id", "session_id", "url", "path", "referrer", "user_agent", "ip_address"}
    | {"metadata", "timestamp", "site_id"}
)


def from_page_events(body: Mapping[str, Any], site: object, writer: bool) -> Translated:
    """Seed 000: ``{"type": "page_view", "user_id", "session_id", "url", "path", "referrer",
    "user_agent", "ip_address", "metadata": {...}}``."""
    out = Translated()
    out.put("site_id", site, "site_id")
    _type(out, body.get("type"), "type")
    for name in ("user_id", "session_id", "url", "path", "referrer", "timestamp"):
        out.put(name, body.get(name), name)
    _overrides(out, body, writer)
    meta = body.get("metadata")
    if isinstance(meta, Mapping):
        for key, value in meta.items():
            where = f"metadata.{key}"
            if key == "page_title":
                out.put("title", value, where)
            elif key == "load_time":
                out.put("load_time_ms", value, where)
            elif key == "duration":
                out.put("duration_ms", millis(value), where)
                out.prop("duration", millis(value), where)
            elif key in ELEMENT_PROPS:
                out.prop(ELEMENT_PROPS[key], value, where)
            else:
                out.prop(str(key), value, where)
    elif meta is not None:
        out.put("props", meta, "metadata")
    _extras(out, body, _S000, "")
    return out


_S004: Final = frozenset({"site_id", "user_id", "action", "element", "duration", "timestamp"})


def from_action(body: Mapping[str, Any], site: object, writer: bool) -> Translated:
    """Seed 004: ``{"user_id", "action": "play", "element": "video_player", "duration": 12.5,
    "timestamp"}``: a custom event named by the action, the element and duration as props."""
    out = Translated()
    out.put("site_id", site, "site_id")
    out.put("type", "custom", "action")
    action = body.get("action")
    out.put("name", "" if action is None else action, "action")  # a custom event needs one
    out.put("user_id", body.get("user_id"), "user_id")
    out.put("timestamp", body.get("timestamp"), "timestamp")
    out.prop("element_name", body.get("element"), "element")
    duration = millis(body.get("duration"))
    out.put("duration_ms", duration, "duration")
    out.prop("duration", duration, "duration")
    _overrides(out, body, writer)
    _extras(out, body, _S004 | {"ip_address", "user_agent"}, "")
    return out


_S001: Final = frozenset({"site_id", "event_type", "path", "user_id", "timestamp"})


def from_site_events(body: Mapping[str, Any], site: object, writer: bool) -> Translated:
    """Seed 001: ``{"site_id", "event_type": "page_view", "path", "user_id", "timestamp"}``."""
    out = Translated()
    out.put("site_id", site, "site_id")
    _type(out, body.get("event_type", "page_view"), "event_type")
    _location(out, body.get("path"), "path")
    out.put("user_id", body.get("user_id"), "user_id")
    out.put("timestamp", body.get("timestamp"), "timestamp")
    _overrides(out, body, writer)
    _extras(out, body, _S001 | {"ip_address", "user_agent"}, "")
    return out


_S002: Final = frozenset({"site_id", "event_id", "user_id", "event_type", "page_url", "time_stamp"})


def from_ingest(body: Mapping[str, Any], site: object, writer: bool) -> Translated:
    """Seed 002: ``{"event_id", "user_id", "event_type": "click", "page_url", "time_stamp"}``
    (``event_id`` is the idempotency key: sent twice, stored once)."""
    if body.get("page_url") is None:  # "{}" was stored as a click on no page
        raise QueryError("page_url", "is required: the page of the click (a URL or a path)")
    out = Translated()
    out.put("site_id", site, "site_id")
    out.put("event_id", body.get("event_id"), "event_id")
    out.put("user_id", body.get("user_id"), "user_id")
    _type(out, body.get("event_type", "click"), "event_type")
    _location(out, body.get("page_url"), "page_url")
    out.put("timestamp", body.get("time_stamp"), "time_stamp")
    _overrides(out, body, writer)
    _extras(out, body, _S002 | {"ip_address", "user_agent"}, "")
    return out


_S003: Final = frozenset(
    {"site_id", "event_type", "page", "session_id", "timestamp", "screen_width"}
)


def from_api_analytics(body: Mapping[str, Any], site: object, writer: bool) -> Translated:
    """Seed 003: ``{"event_type", "page", "session_id", "timestamp", "screen_width",
    "screen_height"}`` (the screen height, and anything else, kept as props)."""
    out = Translated()
    out.put("site_id", site, "site_id")
    _type(out, body.get("event_type", "page_view"), "event_type")
    _location(out, body.get("page"), "page")
    out.put("session_id", body.get("session_id"), "session_id")
    out.put("timestamp", body.get("timestamp"), "timestamp")
    out.put("screen_width", body.get("screen_width"), "screen_width")
    _overrides(out, body, writer)
    _extras(out, body, _S003 | {"ip_address", "user_agent"}, "")
    return out


Translate = Callable[[Mapping[str, Any], Any, bool], Translated]


def is_action(body: Mapping[str, Any]) -> bool:
    """Seed 004's shape on ``POST /event``: an ``action``, no ``type``."""
    return "action" in body and "type" not in body


def _refuse(collector: Collector, status: int, field_name: str, reason: str) -> Response:
    result = CollectResult(status, error={"field": field_name, "reason": reason})
    return respond(collector.reject_request(result))


async def _decoded(request: Request, collector: Collector) -> dict[str, Any] | Response:
    body = await read_body(request, collector)
    if isinstance(body, Response):
        return body
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in JSON_TYPES:
        return _refuse(collector, 415, "content-type", "must be application/json or text/plain")
    if len(body) > collector.limits.max_body_bytes:
        limit = collector.limits.max_body_bytes
        return _refuse(collector, 413, "body", f"an event may be at most {limit} bytes")
    try:
        decoded = decode_json(body)
    except BodyProblem as exc:
        result = CollectResult(400, error={"field": "body", "reason": exc.reason})
        result.label = f"body: {exc.kind}"
        return respond(collector.reject_request(result))
    if not isinstance(decoded, dict):
        return _refuse(collector, 422, "body", "must be a JSON object (one event)")
    return decoded


async def _collect(
    request: Request,
    family: str,
    translate: Translate,
    answer: Callable[[CollectResult, Mapping[str, Any]], dict[str, Any]],
) -> Response:
    """Translate one seed event and collect it; the seed's answer, or a named refusal."""
    collector = collector_of(request)
    body = await _decoded(request, collector)
    if isinstance(body, Response):
        return body
    principal = await principal_of(request, collector)
    if isinstance(principal, Response):
        return principal
    if family == "event" and is_action(body):
        family, translate = "action", from_action
    given = body.get("site_id")
    gate = services_of(request).gate
    if isinstance(given, str) and gate is not None:  # as registered, whatever its case
        named = await gate.site_named(given)
        given = named.site_id if named is not None else given
    try:  # a site the body names (seed 001's) is checked by the collector like any other
        site = given if given is not None else configured_site(request, family)
        out = translate(body, site, isinstance(site, str) and _writer(principal, site))
    except QueryError as exc:
        return _refuse(collector, 422, exc.field, exc.reason)
    canonical = _ENCODER.encode(out.finish())
    result = await submit(request, collector, canonical, "application/json", principal)
    if isinstance(result, Response):
        return result
    if result.status != 202:
        return _refusal(result, out)
    return JSONResponse(answer(result, body), status_code=202)


def _writer(principal: Principal, site: str) -> bool:
    return access.allowed(principal, Action.WRITE_EVENTS, site)


def _refusal(result: CollectResult, out: Translated) -> Response:
    """The collector's refusal, with fields named as the client sent them."""
    if result.error is not None:
        error = dict(result.error)
        error["field"] = out.seed_field(error.get("field", ""))
        headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
        return JSONResponse({"error": error}, status_code=result.status, headers=headers)
    errors: list[dict[str, str]] = []
    for rejected in result.rejected:
        listed = rejected.get("errors")
        for problem in listed if isinstance(listed, list) else []:
            errors.append(
                {"field": out.seed_field(str(problem["field"])), "reason": str(problem["reason"])}
            )
    first = errors[0] if errors else {"field": "body", "reason": "was refused"}
    return JSONResponse({"error": first, "errors": errors}, status_code=result.status)


_ERROR: Final = {"application/json": {"schema": ERROR_REF}}
_REFUSALS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "Not JSON", "content": _ERROR},
    401: {"description": "An unknown or revoked key", "content": _ERROR},
    413: {"description": "Body too large", "content": _ERROR},
    415: {"description": "Not JSON or text/plain", "content": _ERROR},
    422: {
        "description": "Refused, naming the field as sent (`metadata.load_time`, `page_url`) "
        "and the reason; no site given or configured (`site_id`); an unregistered site",
        "content": _ERROR,
    },
    429: {
        "description": "Over a rate limit; nothing stored; retry after Retry-After",
        "headers": RETRY_AFTER,
        "content": _ERROR,
    },
    503: {
        "description": "Event log unavailable; nothing stored; retry after Retry-After",
        "headers": RETRY_AFTER,
        "content": _ERROR,
    },
}


def _body(example: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
        }
    }


def _accepted(example: dict[str, Any]) -> dict[int | str, dict[str, Any]]:
    return {
        202: {
            "description": "Stored durably in the event log",
            "content": {"application/json": {"example": example}},
        },
        **_REFUSALS,
    }


@router.post(
    "/event",
    status_code=202,
    summary="Seed 000's event (type page_view/click/session/custom + metadata), or seed "
    "004's user action (user_id, action, element, duration), told apart by shape",
    responses=_accepted({"status": "accepted", "id": "0193a5e4-..."}),
    openapi_extra=_body(
        {
            "type": "page_view",
            "user_id": "user123",
            "session_id": "session456",
            "url": "https://example.com/home",
            "path": "/home",
            "referrer": "https://google.com",
            "metadata": {"page_title": "Home Page", "load_time": 1200},
        }
    ),
)
async def post_event(request: Request) -> Response:
    return await _collect(
        request, "event", from_page_events, lambda r, _: {"status": "accepted", "id": r.ids[0]}
    )


@router.post(
    "/events",
    status_code=202,
    summary="Seed 001's event: site_id, event_type, path, user_id, timestamp",
    responses=_accepted({"message": "Event accepted"}),
    openapi_extra=_body(
        {"site_id": "example.com", "event_type": "page_view", "path": "/home", "user_id": "u1"}
    ),
)
async def post_events(request: Request) -> Response:
    return await _collect(
        request, "events", from_site_events, lambda _, __: {"message": "Event accepted"}
    )


@router.post(
    "/ingest",
    status_code=202,
    summary="Seed 002's click event: event_id (idempotency key), user_id, event_type, "
    "page_url, time_stamp",
    responses=_accepted({"status": "accepted", "event_id": "test_123"}),
    openapi_extra=_body(
        {
            "event_id": "test_123",
            "user_id": "user_1",
            "event_type": "click",
            "page_url": "https://example.com",
        }
    ),
)
async def post_ingest(request: Request) -> Response:
    def answer(result: CollectResult, body: Mapping[str, Any]) -> dict[str, Any]:
        given = body.get("event_id")
        return {
            "status": "accepted",
            "event_id": given if isinstance(given, str) else result.ids[0],
        }

    return await _collect(request, "ingest", from_ingest, answer)


@router.post(
    "/api/analytics",
    status_code=202,
    summary="Seed 003's event: event_type, page, session_id, timestamp, screen size",
    responses=_accepted(
        {
            "status": "success",
            "message": "Event queued",
            "partition": 0,
            "offset": 42,
            "id": "0193a5e4-...",
        }
    ),
    openapi_extra=_body(
        {"event_type": "page_view", "page": "/", "session_id": "session-123", "screen_width": 1920}
    ),
)
async def post_api_analytics(request: Request) -> Response:
    """``partition`` and ``offset``: where the event log put the event (SQLite: partition 0
    and the row; Kafka: the topic's); null where the log cannot tell (Redis Streams)."""

    def answer(result: CollectResult, _: Mapping[str, Any]) -> dict[str, Any]:
        partition, offset = result.positions[0] if result.positions else (None, None)
        return {
            "status": "success",
            "message": "Event queued",
            "partition": partition,
            "offset": offset,
            "id": result.ids[0],
        }

    return await _collect(request, "api_analytics", from_api_analytics, answer)
