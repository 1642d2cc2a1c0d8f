"""How an accepted event travels in the event log: the value of one log message.

Two formats, told apart by their first byte, both read by ``decode`` (decision 0049):

- **an array** (written since decision 0049): ``AcceptedEvent``'s fields by position, in the
  order the dataclass declares them, e.g. ``["0192...","a.io","pageview",1796...,...]``.
  Without the field names a message is about 45 % smaller (~350 bytes instead of ~620 for a
  browser's pageview), which is what the log's commit writes and the processor decodes.
  Fields added later go at the end with a default, so an older array still reads; a format
  that changes the order must start with a number (the first field here is a text).
- **an object** (every message before it, and a tool that writes JSON by name): the fields by
  name, any order, missing ones at their defaults.

Nothing else about the event changes: the same JSON types, the same values.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter
from typing import Final

import msgspec

from hitstream.domain.events import AcceptedEvent, PropValue

_FIELDS: Final = tuple(f.name for f in fields(AcceptedEvent))
_values = attrgetter(*_FIELDS)
_ENCODER: Final = msgspec.json.Encoder()


class Event(msgspec.Struct, array_like=True, gc=False):
    """An accepted event as the collector builds, stamps and writes it: ``AcceptedEvent``'s
    fields in its order, with its defaults (a test holds the two to the same names, types
    and defaults), so that building one and encoding it (the array format) run in C. Not
    tracked by the cycle collector: it holds texts, numbers and a dict of scalars."""

    event_id: str
    site_id: str
    type: str
    timestamp: int
    received_at: int
    visitor_id: str
    visitor_id_prev: str
    name: str = ""
    url: str = ""
    hostname: str = ""
    path: str = "/"
    query: str = ""
    referrer: str = ""
    title: str = ""
    user_id: str = ""
    session_id: str = ""
    props: dict[str, PropValue] = {}
    duration_ms: int | None = None
    load_time_ms: int | None = None
    screen_width: int | None = None
    engaged_ms: int | None = None
    scroll_depth: int | None = None
    user_agent: str = ""
    country: str = ""


_BY_POSITION: Final = msgspec.json.Decoder(Event)
_BY_NAME: Final = msgspec.json.Decoder(AcceptedEvent)
_astuple = msgspec.structs.astuple


def encode(event: Event | AcceptedEvent) -> bytes:
    """The log message's value for ``event`` (the array format)."""
    if type(event) is Event:
        return _ENCODER.encode(event)
    return _ENCODER.encode(_values(event))


def from_accepted(event: AcceptedEvent) -> Event:
    """The ``Event`` of the domain's ``AcceptedEvent`` (what the generic validation gives)."""
    return Event(*_values(event))


def decode(value: bytes) -> AcceptedEvent:
    """The event of a log message's value, in either format. Raises ``msgspec.DecodeError``
    or ``msgspec.ValidationError`` for anything else."""
    if value[:1] == b"[":
        return AcceptedEvent(*_astuple(_BY_POSITION.decode(value)))
    return _BY_NAME.decode(value)


DecodeErrors: Final = (msgspec.DecodeError, msgspec.ValidationError)
