"""The typed pass: a JSON body decoded straight into ``EventIn`` structs, then checked by the
domain's field rules (``validation.validate_fields``) on their attributes.

A request of well-formed events (the browser tracker's, a server's batch) skips building a
dict per event, the unknown-field scan and the type checks msgspec has done while decoding.
Anything the types refuse (an unknown field, a value of the wrong JSON type, a non-object in a
batch, invalid JSON, too deep, a number out of range) gives ``None``, and the collector takes
the generic path (``json_body.decode`` + ``validation.validate_event``), which names every
problem: the answers are the same either way (``tests/unit/test_typed_body.py`` proves it
on generated bodies). NDJSON always takes the generic path.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from hitstream.domain.events import EVENT_TYPES, FOLLOW_UP, EventType, Limits, Problem
from hitstream.domain.validation import locate, parse_timestamp, props_value
from hitstream.services.wire import Event

Scalar = str | int | float | bool


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """An event as it arrives: every known field, with the JSON types each may have (null:
    as if absent); ``ip`` and ``user_agent`` are a write key's overrides."""

    site_id: str | None = None
    type: str | None = None
    name: str | None = None
    url: str | None = None
    path: str | None = None
    referrer: str | None = None
    title: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    event_id: str | None = None
    props: dict[str, Scalar] | None = None
    timestamp: str | int | float | None = None
    duration_ms: int | float | None = None
    load_time_ms: int | float | None = None
    screen_width: int | float | None = None
    engaged_ms: int | float | None = None
    scroll_depth: int | float | None = None
    ip: str | None = None
    user_agent: str | None = None

    def field(self, name: str) -> object:
        """A field by name (the domain's ``Getter``)."""
        return getattr(self, name)

    def overrides(self) -> dict[str, object]:
        """``ip``/``user_agent`` as sent (not null)."""
        out: dict[str, object] = {}
        if self.ip is not None:
            out["ip"] = self.ip
        if self.user_agent is not None:
            out["user_agent"] = self.user_agent
        return out


_DECODER: Final = msgspec.json.Decoder(EventIn | list[EventIn])


def decode_typed(body: bytes) -> tuple[list[EventIn], bool] | None:
    """The events and whether the body was a batch, or None: take the generic path."""
    try:
        decoded = _DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None
    if isinstance(decoded, list):
        return decoded, True
    return [decoded], False


_SITE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
_EVENT_ID: Final = re.compile(r"[A-Za-z0-9_-]+")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_PAGEVIEW: Final = EventType.PAGEVIEW.value
_CUSTOM: Final = EventType.CUSTOM.value
_ENGAGEMENT: Final = EventType.ENGAGEMENT.value  # plain texts: an enum member's lookup costs
_LOCATED: Final = (_PAGEVIEW, _ENGAGEMENT)
_SITE_IDS: Final[set[str]] = set()
"""Site ids that matched ``_SITE_ID`` (a set lookup instead of the expression per event)."""
_SITE_IDS_KEPT: Final = 4096


def _site_id_ok(site_id: str) -> bool:
    """Whether ``site_id`` has a site id's characters (length is checked by the caller)."""
    if site_id in _SITE_IDS:
        return True
    if not _SITE_ID.fullmatch(site_id):
        return False
    if len(_SITE_IDS) >= _SITE_IDS_KEPT:
        _SITE_IDS.clear()
    _SITE_IDS.add(site_id)
    return True


def accept_fast(item: EventIn, now_ms: int, limits: Limits) -> Event | None:
    """The event ``validation.validate_fields`` would accept, checked in one pass over the
    typed attributes (one control-character search over all its texts), or None: the event
    breaks some rule, or might, and ``validate_fields`` names the problems.

    Conservative by construction: every test here is at least as strict as the rule it
    stands for, so an event accepted here is accepted there, with the same fields
    (``tests/unit/test_typed_body.py`` compares the two on generated events).
    """
    site_id = item.site_id
    if site_id is None or len(site_id) > limits.max_site_id or not _site_id_ok(site_id):
        return None
    event_type = _PAGEVIEW if item.type is None else item.type
    if event_type not in EVENT_TYPES:
        return None
    name = item.name or ""
    url = item.url or ""
    path = item.path or ""
    referrer = item.referrer or ""
    title = item.title or ""
    user_id = item.user_id or ""
    session_id = item.session_id or ""
    event_id = item.event_id or ""
    if (
        len(name) > limits.max_name
        or len(url) > limits.max_url
        or len(path) > limits.max_url
        or len(referrer) > limits.max_referrer
        or len(title) > limits.max_title
        or len(user_id) > limits.max_user_id
        or len(session_id) > limits.max_session_id
        or len(event_id) > limits.max_event_id
        or (event_id and not _EVENT_ID.fullmatch(event_id))
        or (event_type == _CUSTOM and not name.strip())
    ):
        return None
    texts = f"{site_id}{name}{url}{path}{referrer}{title}{user_id}{session_id}{event_id}"
    if not texts.isprintable() and _CONTROL.search(texts):  # every control is unprintable
        return None
    located = locate(url, path, event_type if event_type in _LOCATED else "")
    if isinstance(located, Problem):
        return None
    problems: list[Problem] = []
    props = props_value(item.props, limits, problems) if item.props else {}
    if problems:
        return None
    raw_timestamp = item.timestamp
    if raw_timestamp is None:
        timestamp = now_ms
    else:
        parsed = parse_timestamp(raw_timestamp)
        if (
            parsed is None
            or parsed < now_ms - limits.max_past_ms
            or parsed > now_ms + limits.max_future_ms
        ):
            return None
        timestamp = parsed
    engaged, depth = item.engaged_ms, item.scroll_depth
    if event_type == _ENGAGEMENT:
        if engaged is None or (depth is not None and item.name == FOLLOW_UP):
            return None
    elif engaged is not None or depth is not None:
        return None
    duration, load_time, screen = item.duration_ms, item.load_time_ms, item.screen_width
    # each number as ``validation._int`` takes it, written out (a call per field was a tenth
    # of this function): absent, or within 0..upper (NaN compares False; no bool from msgspec)
    if not (
        (duration is None or 0 <= duration <= limits.max_duration_ms)
        and (load_time is None or 0 <= load_time <= limits.max_load_time_ms)
        and (screen is None or 0 <= screen <= limits.max_screen_width)
        and (engaged is None or 0 <= engaged <= limits.max_engaged_ms)
        and (depth is None or 0 <= depth <= limits.max_scroll_depth)
    ):
        return None
    url, hostname, route, query = located
    return Event(  # by position, in C
        event_id,
        site_id,
        event_type,
        timestamp,
        now_ms,
        "",
        "",
        name,
        url,
        hostname,
        route,
        query,
        referrer,
        title,
        user_id,
        session_id,
        props,
        None if duration is None else int(duration),
        None if load_time is None else int(load_time),
        None if screen is None else int(screen),
        None if engaged is None else int(engaged),
        None if depth is None else int(depth),
    )
