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

from typing import Final

import msgspec

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
