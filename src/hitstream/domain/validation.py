"""Validation of one decoded JSON event: a value back, or the named reasons it was refused.

Pure and total: whatever JSON value comes in, ``validate_event`` returns either an
``AcceptedEvent`` (not yet stamped with an id or a visitor) or a non-empty list of ``Problem``;
it never raises, so bad input can never turn into a 5xx.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import Final, TypeGuard
from urllib.parse import urlsplit

from hitstream.domain.events import (
    DEFAULT_LIMITS,
    EVENT_TYPES,
    FOLLOW_UP,
    AcceptedEvent,
    EventType,
    Limits,
    Problem,
    Props,
)

KNOWN_FIELDS: Final = frozenset(
    {
        "site_id",
        "type",
        "name",
        "url",
        "path",
        "referrer",
        "title",
        "user_id",
        "session_id",
        "event_id",
        "props",
        "timestamp",
        "duration_ms",
        "load_time_ms",
        "screen_width",
        "engaged_ms",
        "scroll_depth",
    }
)
_SITE_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]*$")
_EVENT_ID: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
LOCATION_CACHE: Final = 4096
"""Distinct (url, path) pairs whose split is remembered (LRU)."""
MAX_SAFE_INTEGER: Final = 2**53 - 1
"""Numbers beyond this lose precision in JavaScript and in a float column: refused, not
rounded (JSON itself has no bound: a 400-digit integer is valid JSON)."""


Getter = Callable[[str], object]
"""A decoded event's field by name (None: absent or null): ``dict.get`` of a generic decode,
or the attribute of a typed one (``services/typed_body.py``): one set of rules for both."""


def _text(
    data: Getter,
    key: str,
    limit: int,
    problems: list[Problem],
    *,
    required: bool = False,
) -> str:
    value = data(key)
    if value is None:
        if required:
            problems.append(Problem(key, "is required"))
        return ""
    if not isinstance(value, str):
        problems.append(Problem(key, "must be a string"))
        return ""
    if len(value) > limit:
        problems.append(Problem(key, f"is longer than {limit} characters"))
        return ""
    if _CONTROL.search(value):
        problems.append(Problem(key, "contains control characters"))
        return ""
    if required and not value.strip():
        problems.append(Problem(key, "must not be empty"))
    return value


def _int(data: Getter, key: str, upper: int, problems: list[Problem]) -> int | None:
    value = data(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(Problem(key, "must be a number"))
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(Problem(key, "must be a finite number"))
        return None
    if value < 0 or value > upper:
        problems.append(Problem(key, f"must be between 0 and {upper}"))
        return None
    return int(value)


def _props(data: Getter, limits: Limits, problems: list[Problem]) -> Props:
    return props_value(data("props"), limits, problems)


def props_value(value: object, limits: Limits, problems: list[Problem]) -> Props:
    """The ``props`` rules on the value as sent (None: absent)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(Problem("props", "must be an object"))
        return {}
    if len(value) > limits.max_props:
        problems.append(Problem("props", f"has more than {limits.max_props} keys"))
        return {}
    props: Props = {}
    for key, item in value.items():
        where = f"props.{key}"
        if not key or len(key) > limits.max_prop_key or _CONTROL.search(key):
            problems.append(
                Problem("props", f"key {key[:20]!r} must be 1 to {limits.max_prop_key} characters")
            )
        elif isinstance(item, bool):
            props[key] = item
        elif isinstance(item, int):
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                props[key] = item
            else:
                problems.append(Problem(where, f"must be within ±{MAX_SAFE_INTEGER}"))
        elif isinstance(item, float):
            if math.isfinite(item) and abs(item) <= MAX_SAFE_INTEGER:
                props[key] = item
            else:
                problems.append(
                    Problem(where, f"must be a finite number within ±{MAX_SAFE_INTEGER}")
                )
        elif isinstance(item, str):
            if len(item) > limits.max_prop_value:
                problems.append(
                    Problem(where, f"is longer than {limits.max_prop_value} characters")
                )
            elif "\x00" in item:  # no store holds it (PostgreSQL refuses the text)
                problems.append(Problem(where, "must not contain a NUL character"))
            else:
                props[key] = item
        else:
            problems.append(Problem(where, "must be a string, number or boolean"))
    return props


def parse_timestamp(value: object) -> int | None:
    """Epoch milliseconds from an ISO 8601 string (offset required) or a number of ms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value <= MAX_SAFE_INTEGER else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and 0 <= value <= MAX_SAFE_INTEGER else None
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return None
        return int(parsed.timestamp() * 1000)
    return None


def _is_number(value: object) -> TypeGuard[int | float]:
    """An int (of any size) or a finite float: never a bool."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def _timestamp(data: Getter, now_ms: int, limits: Limits, problems: list[Problem]) -> int:
    value = data("timestamp")
    if value is None:
        return now_ms
    parsed = parse_timestamp(value)
    if parsed is None:
        if _is_number(value):  # epoch ms, but out of any range
            parsed = -1 if value < 0 else MAX_SAFE_INTEGER
        else:
            problems.append(
                Problem("timestamp", "must be ISO 8601 with a UTC offset or epoch milliseconds")
            )
            return now_ms
    if parsed < now_ms - limits.max_past_ms:
        problems.append(
            Problem("timestamp", f"is more than {limits.max_past_ms // 1000} s in the past")
        )
    elif parsed > now_ms + limits.max_future_ms:
        problems.append(
            Problem("timestamp", f"is more than {limits.max_future_ms // 1000} s in the future")
        )
    return parsed


_ESCAPES: Final = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_UNRESERVED: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _readable_run(found: re.Match[str]) -> str:
    raw = bytes.fromhex(found.group(0).replace("%", ""))
    out: list[str] = []
    for char in raw.decode("utf-8", errors="surrogateescape"):
        code = ord(char)
        if code < 0x80:
            out.append(char if char in _UNRESERVED else f"%{code:02X}")
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8: stays escaped
            out.append(f"%{code - 0xDC00:02X}")
        elif char.isprintable():
            out.append(char)
        else:  # invisible or a separator (U+200B, U+2028 ...): stays escaped
            out.append("".join(f"%{b:02X}" for b in char.encode("utf-8")))
    return "".join(out)


def readable_path(path: str) -> str:
    """A path as people read it and as the same page always reads: percent-escapes of
    letters and other printable non-ASCII characters decoded (``/%C3%BCber`` is ``/über``,
    what a browser's ``location.href`` sends for it), and of ASCII letters, digits and
    ``-._~`` (RFC 3986 calls them equivalent); every other escape kept, in capitals (``%2F``
    stays a slash inside a segment, ``%20`` a space, ``%25`` a percent sign; bytes that are not
    UTF-8 and invisible characters stay escaped). Decision 0050."""
    if "%" not in path:
        return path
    return _ESCAPES.sub(_readable_run, path)


def split_location(url: str, path: str) -> tuple[str, str, str]:
    """(hostname, path, query) from the event's url and/or path; path wins when both exist.
    An event with neither (a server-side custom event) has no page: path "" (the page
    breakdown's "" row, the dashboard's "(none)"), not the home page "/" it was put on.

    The fragment is kept only when it is a hash-router route (``#/about``, ``#!/about``); the
    path is made ``readable_path``.
    """
    hostname = ""
    query = ""
    if url:
        parts = urlsplit(url)
        hostname = (parts.hostname or "").lower()
        query = parts.query
        if not path:
            path = parts.path or "/"
            if parts.fragment.startswith(("/", "!/")):
                path = f"{path}#{parts.fragment}"
    if path:
        path_parts = urlsplit(path)
        if path_parts.query and not query:
            query = path_parts.query
        route = path_parts.path or "/"
        if path_parts.fragment.startswith(("/", "!/")):
            route = f"{route}#{path_parts.fragment}"
        path = readable_path(route)
    return hostname, path, query


def _location(
    data: Getter, limits: Limits, problems: list[Problem], event_type: str
) -> tuple[str, str, str, str]:
    before = len(problems)
    url = _text(data, "url", limits.max_url, problems)
    path = _text(data, "path", limits.max_url, problems)
    if len(problems) > before:
        return "", "", "/", ""
    located = event_type if event_type in (EventType.PAGEVIEW, EventType.ENGAGEMENT) else ""
    found = _locate(url, path, located)
    if isinstance(found, Problem):
        problems.append(found)
        return "", "", "/", ""
    return found


def locate(url: str, path: str, located: str) -> tuple[str, str, str, str] | Problem:
    """``_locate``, for the typed fast pass (``services/typed_body.py``)."""
    return _locate(url, path, located)


@lru_cache(maxsize=LOCATION_CACHE)
def _locate(url: str, path: str, located: str) -> tuple[str, str, str, str] | Problem:
    """(url, hostname, route, query) of checked text fields, or the one problem: the same
    few URLs arrive again and again, so each distinct pair is split once (cached).
    ``located``: the event type that must name a page (pageview, engagement), or ``""``."""
    if url:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in ("http", "https"):
            return Problem("url", "must be an absolute http(s) URL")
        try:
            urlsplit(url).port  # noqa: B018 - a port past 65535 raises only when read
        except ValueError:
            return Problem("url", "is not a valid URL (its host or port)")
    if path and not path.startswith("/"):
        return Problem("path", "must start with '/'")
    if located and not url and not path:
        return Problem("url", f"a {located} needs url or path")
    hostname, route, query = split_location(url, path)
    return url, hostname, route, query


def _engagement(
    data: Getter, event_type: str, name: str, limits: Limits, problems: list[Problem]
) -> tuple[int | None, int | None]:
    """``engaged_ms`` (required) and ``scroll_depth`` (0..100) belong to engagement events
    only: on any other event they would be numbers nothing reads, so they are refused. A
    follow-up report (``FOLLOW_UP``) adds time only: the pageview's depth is its first's."""
    engaged = _int(data, "engaged_ms", limits.max_engaged_ms, problems)
    depth = _int(data, "scroll_depth", limits.max_scroll_depth, problems)
    if event_type == EventType.ENGAGEMENT:
        if data("engaged_ms") is None:
            problems.append(Problem("engaged_ms", "is required for an engagement event"))
        if name == FOLLOW_UP and data("scroll_depth") is not None:
            problems.append(
                Problem("scroll_depth", f"is not taken on a {FOLLOW_UP} report (time only)")
            )
        return engaged, depth
    for key in ("engaged_ms", "scroll_depth"):
        if data(key) is not None:
            problems.append(Problem(key, "is only allowed on engagement events"))
    return None, None


def validate_event(
    data: object, *, now_ms: int, limits: Limits = DEFAULT_LIMITS
) -> AcceptedEvent | list[Problem]:
    """Check one decoded JSON value against the event schema and every limit.

    Returns an ``AcceptedEvent`` whose ``event_id`` is the client's idempotency key (or empty)
    and whose visitor fields are empty: the collector stamps those.
    """
    if not isinstance(data, dict):
        return [Problem("event", "each event must be a JSON object")]
    problems: list[Problem] = []
    if not data.keys() <= KNOWN_FIELDS:
        unknown = sorted(key for key in data if key not in KNOWN_FIELDS)
        problems.extend(
            Problem(str(key)[:64] or "(empty key)", "is not a known field") for key in unknown
        )
    return validate_fields(data.get, now_ms=now_ms, limits=limits, problems=problems)


def validate_fields(
    data: Getter, *, now_ms: int, limits: Limits = DEFAULT_LIMITS, problems: list[Problem]
) -> AcceptedEvent | list[Problem]:
    """The rules of every known field, on an event read through ``data`` (``problems``
    holds what was found already: unknown fields); the result as ``validate_event``'s."""
    site_id = _text(data, "site_id", limits.max_site_id, problems, required=True)
    if site_id and not _SITE_ID.match(site_id):
        problems.append(Problem("site_id", "may hold only letters, digits and . _ : -"))

    raw_type = data("type")
    if raw_type is None:  # absent or null, as for every optional field
        raw_type = EventType.PAGEVIEW.value
    event_type = raw_type if isinstance(raw_type, str) else ""
    if event_type not in EVENT_TYPES:
        problems.append(Problem("type", f"must be one of {', '.join(sorted(EVENT_TYPES))}"))

    name = _text(data, "name", limits.max_name, problems, required=event_type == EventType.CUSTOM)
    url, hostname, path, query = _location(data, limits, problems, event_type)
    referrer = _text(data, "referrer", limits.max_referrer, problems)
    title = _text(data, "title", limits.max_title, problems)
    user_id = _text(data, "user_id", limits.max_user_id, problems)
    session_id = _text(data, "session_id", limits.max_session_id, problems)
    event_id = _text(data, "event_id", limits.max_event_id, problems)
    if event_id and not _EVENT_ID.match(event_id):
        problems.append(Problem("event_id", "may hold only letters, digits, '-' and '_'"))
    props = _props(data, limits, problems)
    timestamp = _timestamp(data, now_ms, limits, problems)
    duration_ms = _int(data, "duration_ms", limits.max_duration_ms, problems)
    load_time_ms = _int(data, "load_time_ms", limits.max_load_time_ms, problems)
    screen_width = _int(data, "screen_width", limits.max_screen_width, problems)
    engaged_ms, scroll_depth = _engagement(data, event_type, name, limits, problems)

    if problems:
        return problems
    return AcceptedEvent(
        event_id=event_id,
        site_id=site_id,
        type=event_type,
        timestamp=timestamp,
        received_at=now_ms,
        visitor_id="",
        visitor_id_prev="",
        name=name,
        url=url,
        hostname=hostname,
        path=path,
        query=query,
        referrer=referrer,
        title=title,
        user_id=user_id,
        session_id=session_id,
        props=props,
        duration_ms=duration_ms,
        load_time_ms=load_time_ms,
        screen_width=screen_width,
        engaged_ms=engaged_ms,
        scroll_depth=scroll_depth,
    )
