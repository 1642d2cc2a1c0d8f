"""Plausible's tracker: ``POST /api/event`` as its script (and its Events API) sends it,
translated to canonical events and collected like ``POST /api/v1/events``.

The body is one JSON object, sent as ``text/plain`` by the script, with short or long names:
``n``/``name`` (the event: ``pageview``, ``engagement`` or a custom name), ``u``/``url``,
``d``/``domain`` (one or several comma-separated domains, each a registered site's
``site_id``; ``www.`` dropped; absent: the URL's host), ``r``/``referrer``,
``p``/``props``/``m``/``meta`` (an object, or a JSON string of one), ``$``/``revenue``
(``{amount, currency}``), ``i``/``interactive``, ``h``/``hashMode``, and on engagement events
``sd`` (scroll depth, percent) and ``e`` (engaged time, ms).

What maps to what: ``pageview`` is a pageview; another name is a custom event; a domain list
gives one event per site. Events that Plausible does not count as interactions (its
``engagement`` events, and custom events with ``interactive: false``) become ``session``
events, which hitstream does not count as interactions either (they cannot un-bounce a
visit), named ``engagement`` or as sent, with ``scroll_depth`` and ``engagement_time_ms`` as
props. Props become strings, as Plausible stores them; revenue becomes the props
``revenue_amount`` and ``revenue_currency``. In hash mode the URL's fragment is part of the
path when it is a route (``#/pricing``).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from hitstream.domain.events import DEFAULT_LIMITS, EventType
from hitstream.web.collect import ANSWER_SCHEMA
from hitstream.web.compat.trackers import (
    Refused,
    collector_of,
    deliver,
    read_object,
    refuse,
    registered,
)
from hitstream.web.openapi import ERROR_REF, RETRY_AFTER

router = APIRouter(tags=["compatibility"])

MAX_DOMAINS: Final = 10
MAX_PROPS: Final = DEFAULT_LIMITS.max_props
MAX_ENGAGEMENT_MS: Final = 30 * 24 * 3600 * 1000
"""Plausible ignores engaged times this long (an old script's bug); so do we."""
_PROP_TEXT: Final = DEFAULT_LIMITS.max_prop_value


_LONG_NAMES = ("name", "url", "domain", "referrer", "props", "revenue")


def _field(data: dict[str, Any], *names: str) -> tuple[str, Any]:
    """The first of ``names`` (short, then long) present (not null) in ``data``, and its
    value; when none is, the name in the spelling the body uses for the others (a body of
    ``name`` and ``domain`` is told ``url`` is missing, not ``u``)."""
    for name in names:
        if data.get(name) is not None:
            return name, data[name]
    long_form = len(names) > 1 and any(key in data for key in _LONG_NAMES)
    return names[1] if long_form else names[0], None


def _event_name(data: dict[str, Any]) -> tuple[str, str]:
    key, value = _field(data, "n", "name")
    if value is None:
        raise Refused(422, key, "is required (the event's name, e.g. pageview)", "n")
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Refused(422, key, "must be a string", "n")
    name = str(value).strip()
    if not name:
        raise Refused(422, key, "must not be empty", "n")
    return key, name


def _domains(data: dict[str, Any], url: str) -> tuple[str, list[str]]:
    key, value = _field(data, "d", "domain")
    if value is None:
        host = urlsplit(url).hostname or ""
        value = host
    if not isinstance(value, str):
        raise Refused(422, key, "must be a string: the site's domain", "d")
    domains: list[str] = []
    for part in value.split(","):
        domain = part.strip().lower().removeprefix("www.")
        if domain and domain not in domains:
            domains.append(domain)
    if not domains:
        raise Refused(422, key, "must name a registered site", "d")
    if len(domains) > MAX_DOMAINS:
        raise Refused(422, key, f"may name at most {MAX_DOMAINS} sites", "d")
    return key, domains


def _named_sites(data: dict[str, Any]) -> list[str]:
    """The sites a body names (``d``/``domain``, else its URL's host), read leniently: what a
    refusal is counted under when one of them is registered."""
    value = data.get("d", data.get("domain"))
    if not isinstance(value, str):
        url = data.get("u", data.get("url"))
        try:
            value = urlsplit(url).hostname or "" if isinstance(url, str) else ""
        except ValueError:
            value = ""
    return [part.strip().lower().removeprefix("www.") for part in value.split(",")][:MAX_DOMAINS]


def _prop_text(value: object) -> str | None:
    """A prop's value as Plausible stores it (text), or None when Plausible drops it."""
    if value is None or isinstance(value, list | dict):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        text = str(int(value)) if abs(value) < 1e16 else str(value)
    else:
        text = str(value)
    return text if text.strip() else None


def _props(data: dict[str, Any]) -> tuple[str, dict[str, str | int]]:
    key, raw = _field(data, "p", "props", "m", "meta")
    if raw is None:
        return key, {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise Refused(422, key, "must be an object or a JSON string of one", "p") from None
    if not isinstance(raw, dict):
        raise Refused(422, key, "must be an object or a JSON string of one", "p")
    props: dict[str, str | int] = {}
    for name, value in raw.items():
        text = _prop_text(value)
        if text is not None and name.strip() and len(props) < MAX_PROPS:
            props[name] = text
    return key, props


def _revenue(data: dict[str, Any]) -> dict[str, str]:
    key, raw = _field(data, "$", "revenue")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise Refused(422, key, "must be an object with amount and currency", "$")
    amount, currency = raw.get("amount"), raw.get("currency")
    try:
        if isinstance(amount, bool) or not isinstance(amount, str | int | float):
            raise InvalidOperation
        value = Decimal(str(amount).strip())
        if not value.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise Refused(422, f"{key}.amount", "must be a number", "$") from None
    if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
        raise Refused(422, f"{key}.currency", "must be an ISO 4217 code such as EUR", "$")
    return {"revenue_amount": str(value), "revenue_currency": currency.upper()}


def _whole(value: object, upper: int) -> int | None:
    """A whole number (or a string of one) within 0..upper; None when absent or not one."""
    if isinstance(value, str):
        value = int(value) if value.strip().isdigit() else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return min(value, upper)


def _engagement(data: dict[str, Any]) -> dict[str, str | int]:
    depth = _whole(data.get("sd"), 100)
    engaged = _whole(data.get("e"), MAX_ENGAGEMENT_MS)
    if engaged is not None and engaged >= MAX_ENGAGEMENT_MS:
        engaged = None
    if depth is None and engaged is None:
        raise Refused(422, "sd", "an engagement event needs 'sd' or 'e' as a whole number", "sd")
    out: dict[str, str | int] = {}
    if depth is not None:
        out["scroll_depth"] = depth
    if engaged is not None:
        out["engagement_time_ms"] = engaged
    return out


def _hash_path(url: str) -> str | None:
    """The path with the URL's fragment, for sites with hash-based routing."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.fragment:
        return None
    return f"{parts.path or '/'}#{parts.fragment}"


def translate(data: dict[str, Any]) -> tuple[list[dict[str, object]], dict[str, str]]:
    """The canonical events a Plausible body stands for (one per domain), and the names the
    body used for the canonical fields (to name refusals). ``Refused`` when it cannot."""
    name_key, name = _event_name(data)
    url_key, url = _field(data, "u", "url")
    if url is None:
        raise Refused(422, url_key, "is required (the page's URL)", "u")
    if not isinstance(url, str):
        raise Refused(422, url_key, "must be a string", "u")
    domain_key, domains = _domains(data, url)
    props_key, props = _props(data)
    props.update(_revenue(data))
    _, interactive = _field(data, "i", "interactive")
    event: dict[str, object] = {"url": url}
    if name == "pageview":
        event["type"] = EventType.PAGEVIEW.value
    elif name == "engagement":
        event.update(type=EventType.SESSION.value, name=name)
        props.update(_engagement(data))
    else:
        quiet = interactive is False
        event.update(type=EventType.SESSION.value if quiet else EventType.CUSTOM.value, name=name)
    referrer_key, referrer = _field(data, "r", "referrer")
    if isinstance(referrer, str) and referrer:
        event["referrer"] = referrer[: DEFAULT_LIMITS.max_referrer]
    _, hash_mode = _field(data, "h", "hashMode")
    if hash_mode in (1, True, "1"):
        path = _hash_path(url)
        if path is not None:
            event["path"] = path
    if props:
        event["props"] = props
    names = {
        "site_id": domain_key,
        "url": url_key,
        "path": url_key,
        "name": name_key,
        "type": name_key,
        "props": props_key,
        "referrer": referrer_key,
    }
    return [{"site_id": domain, **event} for domain in domains], names


_ERROR: Final = {"application/json": {"schema": ERROR_REF}}
REQUEST_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["n", "u"],
    "properties": {
        "n": {
            "type": "string",
            "description": "pageview, engagement or a custom event's name (long name: name)",
            "examples": ["pageview"],
        },
        "u": {"type": "string", "description": "the page's URL (url)"},
        "d": {
            "type": "string",
            "description": "registered sites' domains, comma-separated "
            "(domain); default: the URL's host",
        },
        "r": {"type": ["string", "null"], "description": "referrer (referrer)"},
        "p": {
            "type": ["object", "string"],
            "description": "custom props, or a JSON string of them (props, m, meta)",
        },
        "$": {
            "type": "object",
            "description": "revenue (revenue): amount and currency",
            "properties": {
                "amount": {"type": ["number", "string"]},
                "currency": {"type": "string"},
            },
        },
        "i": {"type": "boolean", "description": "false: not an interaction (interactive)"},
        "h": {"type": "integer", "description": "1: hash-based routing (hashMode)"},
        "sd": {"type": "integer", "description": "engagement: scroll depth, percent"},
        "e": {"type": "integer", "description": "engagement: engaged time, ms"},
    },
}


@router.post(
    "/api/event",
    status_code=202,
    summary="Plausible's tracker: one event as Plausible's script or Events API sends it",
    description="Mapped to canonical events (one per domain in `d`) and collected like "
    "`POST /api/v1/events`: 202 once the event log has them. Refusals name the field as "
    "Plausible's body names it.",
    responses={
        202: {
            "description": "Stored durably in the event log",
            "content": {"application/json": {"schema": ANSWER_SCHEMA}},
        },
        400: {"description": "Body is not a JSON object", "content": _ERROR},
        401: {"description": "An `Authorization` header with an unknown key", "content": _ERROR},
        413: {"description": "Body larger than one event may be", "content": _ERROR},
        415: {"description": "Content-Type other than JSON or text/plain", "content": _ERROR},
        422: {
            "description": "No event could be made or accepted: a missing `n` or `u`, a `d` "
            "that is no registered site, a URL host the site does not allow ...",
            "content": {"application/json": {"schema": {"anyOf": [ANSWER_SCHEMA, ERROR_REF]}}},
        },
        429: {"description": "Over a rate limit", "headers": RETRY_AFTER, "content": _ERROR},
        503: {"description": "Event log unavailable", "headers": RETRY_AFTER, "content": _ERROR},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/plain": {"schema": REQUEST_SCHEMA},
                "application/json": {"schema": REQUEST_SCHEMA},
            },
        }
    },
)
async def plausible_event(request: Request) -> Response:
    collector = collector_of(request)
    data: dict[str, Any] | None = None
    try:
        data = await read_object(request, collector)
        events, names = translate(data)
    except Refused as problem:
        site = await registered(collector, _named_sites(data)) if data is not None else ""
        result = refuse(collector, "plausible", problem, site)
    else:
        result = await deliver(request, collector, events, names)
    headers = {"Retry-After": str(result.retry_after)} if result.retry_after else None
    return JSONResponse(result.body(), status_code=result.status, headers=headers)
