"""Umami's tracker: ``POST /api/send`` as its script sends it, translated to canonical events
and collected like ``POST /api/v1/events``, with Umami's cache-token round trip.

The body is ``{"type": "event" | "identify", "payload": {...}}``; the payload's ``website``
is a site's ``umami_website_id`` (``hitstream sites update DOMAIN --umami-website-id UUID``)
or, for a new setup, the site's own ``site_id``. An ``event`` without ``name`` is a pageview,
with one a custom event whose ``data`` are its props (nested objects flattened to ``a.b``
keys, lists kept as JSON text); ``identify`` becomes a ``session`` event named ``identify``
(not an interaction) carrying its ``data``; ``id`` (the identity ``umami.identify`` sets) is
the ``user_id``. ``screen`` gives ``screen_width``. Both generations of the script are read:
older ones send the path (``encodeURI``'d) and an ``encodeURIComponent``'d title, newer ones
the full URL; ``hostname`` completes a path into a URL.

The cache token: Umami answers a token the script keeps in memory and sends back in the
``x-umami-cache`` header (older scripts send back the whole answer's text). hitstream keeps
no session state at the edge, so its token is only a hint: ``hs1.<site>.<signature>``, the
site it was answered for, signed with a key derived from the day's visitor salt (so it
expires at the salt's rotation and cannot be forged). It is not a cookie, holds nothing of
the visitor, and is never needed: a missing, stale or forged one is replaced, never refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any, Final
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hitstream.domain.events import EventType
from hitstream.domain.sites import Site
from hitstream.services.collector import CollectResult
from hitstream.web.collect import ANSWER_SCHEMA
from hitstream.web.compat.trackers import (
    Refused,
    collector_of,
    deliver,
    read_object,
    refuse,
)
from hitstream.web.deps import services_of
from hitstream.web.openapi import ERROR_REF, RETRY_AFTER

router = APIRouter(tags=["compatibility"])

CACHE_HEADER: Final = "x-umami-cache"
TOKEN_VERSION: Final = "hs1"
_SCREEN: Final = re.compile(r"^(\d{1,6})x(\d{1,6})$")
_ESCAPES: Final = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_RESERVED: Final = frozenset(";/?:@&=+$,#")
"""What JavaScript's ``decodeURI`` leaves escaped."""
MAX_DATA_DEPTH: Final = 4


# -- the cache token -----------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, site_id: str) -> str:
    mac = hmac.new(key, f"umami-cache\x1f{site_id}".encode(), hashlib.sha256).digest()
    return _b64(mac[:16])


def cache_token(key: bytes, site_id: str) -> str:
    """The token answered for ``site_id``: the site and a signature, nothing else."""
    return f"{TOKEN_VERSION}.{_b64(site_id.encode())}.{_signature(key, site_id)}"


def token_site(keys: tuple[bytes, ...], header: str) -> str | None:
    """The site a token sent back was answered for, if one of ``keys`` signed it (how an
    operator or a test reads one; the route needs none).

    Older scripts send back the whole answer they got (a JSON object holding ``cache``)."""
    text = header.strip()
    if text.startswith("{"):
        try:
            decoded = json.loads(text)
        except ValueError:
            return None
        text = decoded.get("cache", "") if isinstance(decoded, dict) else ""
        if not isinstance(text, str):
            return None
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != TOKEN_VERSION:
        return None
    try:
        site_id = _unb64(parts[1]).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    for key in keys:
        if hmac.compare_digest(parts[2], _signature(key, site_id)):
            return site_id
    return None


async def _token_keys(request: Request) -> tuple[bytes, ...]:
    """Keys derived from today's and yesterday's visitor salts (never the salts)."""
    salts = await collector_of(request).salts.salts(int(time.time() * 1000))
    return tuple(
        hashlib.blake2b(b"hitstream umami cache token", key=salt[:64], digest_size=32).digest()
        for salt in dict.fromkeys((salts.current, salts.previous))
    )


# -- translation ---------------------------------------------------------------------------


def decode_uri(text: str) -> str:
    """What JavaScript's ``decodeURI`` gives: escapes decoded, except of reserved characters
    (``%3F`` stays ``%3F``); a sequence that is not UTF-8 stays as it is."""

    def run(match: re.Match[str]) -> str:
        escaped = match.group(0)
        try:
            decoded = bytes.fromhex(escaped.replace("%", "")).decode("utf-8")
        except UnicodeDecodeError:
            return escaped
        return "".join(f"%{ord(c):02X}" if c in _RESERVED else c for c in decoded)

    return _ESCAPES.sub(run, text)


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(422, f"payload.{name}", "must be a string", name)
    return value


def _flatten(data: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, object]:
    """Umami's event data as props: nested objects as ``a.b`` keys, lists as JSON text,
    nulls dropped."""
    out: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and depth < MAX_DATA_DEPTH:
            out.update(_flatten(value, f"{name}.", depth + 1))
        elif isinstance(value, list | dict):
            out[name] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        elif value is not None:
            out[name] = value
    return out


def _location(payload: dict[str, Any]) -> dict[str, str]:
    """The canonical ``url`` (or ``path``) and ``referrer``, whichever script generation sent
    them; and whether the title was escaped (older scripts)."""
    url = _text(payload, "url")
    referrer = _text(payload, "referrer")
    hostname = _text(payload, "hostname").strip().lower()
    out: dict[str, str] = {}
    if url.lower().startswith(("http://", "https://")):
        out["url"] = url
    elif url.startswith("/"):  # an older script: encodeURI(path + search)
        path = decode_uri(url)
        if hostname:
            out["url"] = f"https://{hostname}{path}"
        else:
            out["path"] = path
        referrer = decode_uri(referrer)
        out["escaped"] = "1"
    elif url:
        raise Refused(422, "payload.url", "must be a path or an absolute http(s) URL", "url")
    elif hostname:
        out["url"] = f"https://{hostname}/"
    if referrer:
        out["referrer"] = referrer
    return out


def _screen_width(payload: dict[str, Any]) -> int | None:
    screen = _text(payload, "screen")
    if not screen:
        return None
    match = _SCREEN.fullmatch(screen.strip())
    if match is None:
        raise Refused(422, "payload.screen", "must be WIDTHxHEIGHT, e.g. 1920x1080", "screen")
    return int(match.group(1))


def translate(body: dict[str, Any], site: Site) -> dict[str, object]:
    """The canonical event an Umami body stands for, for ``site``; ``Refused`` when none."""
    kind = body.get("type")
    payload = body.get("payload")
    if not isinstance(kind, str) or kind.lower() not in ("event", "identify"):
        raise Refused(422, "type", "must be event or identify", "type")
    if not isinstance(payload, dict):
        raise Refused(422, "payload", "is required: an object", "payload")
    event: dict[str, object] = {"site_id": site.site_id}
    location = _location(payload)
    escaped = location.pop("escaped", "")
    event.update(location)
    title = _text(payload, "title")
    if title:
        event["title"] = unquote(title) if escaped else title
    width = _screen_width(payload)
    if width is not None:
        event["screen_width"] = width
    data = payload.get("data")
    if data is not None and not isinstance(data, dict):
        raise Refused(422, "payload.data", "must be an object", "data")
    props = _flatten(data or {})
    tag = _text(payload, "tag")
    if tag:
        props.setdefault("tag", tag)
    identity = payload.get("id")
    if isinstance(identity, str) and identity:
        event["user_id"] = identity
    name = _text(payload, "name").strip()
    if kind.lower() == "identify":
        if not props and "user_id" not in event:
            raise Refused(422, "payload.data", "an identify needs data or an id", "data")
        event.update(type=EventType.SESSION.value, name="identify")
    elif name:
        event.update(type=EventType.CUSTOM.value, name=name)
    else:
        event["type"] = EventType.PAGEVIEW.value
        if "url" not in event and "path" not in event:
            raise Refused(422, "payload.url", "a pageview needs the page's url", "url")
    if props:
        event["props"] = props
    return event


def _host_from_hostname(body: dict[str, Any]) -> bool:
    """Whether the page's host came from ``payload.hostname`` (the URL sent was a path, as
    the tracker sends it)."""
    payload = body.get("payload")
    if not isinstance(payload, dict):
        return False
    url, hostname = payload.get("url"), payload.get("hostname")
    absolute = isinstance(url, str) and url.lower().startswith(("http://", "https://"))
    return isinstance(hostname, str) and bool(hostname) and not absolute


def _name_host_refusals(result: CollectResult) -> None:
    """A refusal of the page's host names ``payload.hostname``, where it came from (it named
    ``payload.url``, which held the path)."""
    found: list[Any] = [result.error]
    for item in result.rejected:
        errors = item.get("errors")
        found += errors if isinstance(errors, list) else []
    for error in found:
        if (
            isinstance(error, dict)
            and error.get("field") == "payload.url"
            and "host" in str(error.get("reason", ""))
        ):
            error["field"] = "payload.hostname"


NAMES: Final = {
    "site_id": "payload.website",
    "url": "payload.url",
    "path": "payload.url",
    "referrer": "payload.referrer",
    "title": "payload.title",
    "name": "payload.name",
    "props": "payload.data",
    "screen_width": "payload.screen",
    "user_id": "payload.id",
}


async def _site(request: Request, body: dict[str, Any]) -> Site:
    payload = body.get("payload")
    if not isinstance(payload, dict):
        raise Refused(422, "payload", "is required: an object", "payload")
    website = payload.get("website")
    if not isinstance(website, str) or not website.strip():
        raise Refused(422, "payload.website", "is required: the site's website id", "website")
    gate = services_of(request).gate
    if gate is not None:
        site = await gate.umami_site(website)
        if site is None:
            site = await gate.site_named(website.strip())
        if site is not None:
            return site
    raise Refused(
        422,
        "payload.website",
        "is neither the Umami website id nor the site_id of a registered site",
        "website",
    )


_ERROR: Final = {"application/json": {"schema": ERROR_REF}}
_TEXT: Final = {"type": "string"}
REQUEST_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["type", "payload"],
    "properties": {
        "type": {"type": "string", "enum": ["event", "identify"]},
        "payload": {
            "type": "object",
            "required": ["website"],
            "properties": {
                "website": {
                    "type": "string",
                    "description": "the site's umami_website_id (or its site_id)",
                },
                "hostname": _TEXT,
                "url": {"type": "string", "description": "full URL, or path and query"},
                "referrer": _TEXT,
                "title": _TEXT,
                "screen": {"type": "string", "examples": ["1920x1080"]},
                "language": _TEXT,
                "name": {"type": "string", "description": "a custom event's name"},
                "data": {"type": "object", "description": "the event's props"},
                "tag": _TEXT,
                "id": {"type": "string", "description": "identity: the user_id"},
            },
        },
    },
}
ANSWER: Final[dict[str, Any]] = {
    "allOf": [
        ANSWER_SCHEMA,
        {
            "type": "object",
            "properties": {
                "cache": {
                    "type": "string",
                    "description": "send it back in the x-umami-cache header (not needed)",
                }
            },
        },
    ]
}


@router.post(
    "/api/send",
    status_code=202,
    summary="Umami's tracker: one event or identify as Umami's script sends it",
    description="Mapped to a canonical event for the site whose `umami_website_id` is the "
    "payload's `website` and collected like `POST /api/v1/events`: 202 once the event log "
    "has it, with a `cache` token the script sends back in `x-umami-cache`.",
    responses={
        202: {
            "description": "Stored durably in the event log",
            "content": {"application/json": {"schema": ANSWER}},
        },
        400: {"description": "Body is not a JSON object", "content": _ERROR},
        401: {"description": "An `Authorization` header with an unknown key", "content": _ERROR},
        413: {"description": "Body larger than one event may be", "content": _ERROR},
        415: {"description": "Content-Type other than JSON or text/plain", "content": _ERROR},
        422: {
            "description": "No event could be made or accepted: no `payload`, a `website` "
            "that is no registered site's, a bad `screen` ...",
            "content": {"application/json": {"schema": {"anyOf": [ANSWER_SCHEMA, ERROR_REF]}}},
        },
        429: {"description": "Over a rate limit", "headers": RETRY_AFTER, "content": _ERROR},
        503: {"description": "Event log unavailable", "headers": RETRY_AFTER, "content": _ERROR},
    },
    openapi_extra={
        "parameters": [
            {
                "name": CACHE_HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "the token of a previous answer (optional)",
            }
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": REQUEST_SCHEMA}},
        },
    },
)
async def umami_send(request: Request) -> Response:
    collector = collector_of(request)
    site: Site | None = None
    try:
        body = await read_object(request, collector)
        site = await _site(request, body)
        event = translate(body, site)
    except Refused as problem:
        result = refuse(collector, "umami", problem, site.site_id if site is not None else "")
    else:
        result = await deliver(request, collector, [event], NAMES)
        if _host_from_hostname(body):
            _name_host_refusals(result)
    answer = result.body()
    if result.status == 202 and site is not None:  # the answer's token replaces the sent one
        answer["cache"] = cache_token((await _token_keys(request))[0], site.site_id)
    headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
    return JSONResponse(answer, status_code=result.status, headers=headers)
