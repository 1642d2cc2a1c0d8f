"""The processing pipeline's vocabulary: a working event, named steps, and drops.

A step is a small function that enriches (``put_*``) or filters (``drop_*``) one event in place
and returns ``None`` to go on or a ``Drop`` naming why the event stops here. The runner in
``hitstream.services.pipeline`` owns ordering, timing and drop counting; steps own nothing.
Steps that need a parser from outside the standard library get it through a Protocol here,
so the domain stays pure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from hitstream.domain.events import AcceptedEvent, ProcessedEvent


@dataclass(frozen=True, slots=True)
class Drop:
    """The event goes no further; ``reason`` is counted (``bot``, ``duplicate`` ...)."""

    reason: str


@dataclass(slots=True)
class Working:
    """The accepted event as it came from the log, and the processed row being filled."""

    accepted: AcceptedEvent
    out: ProcessedEvent


Step = Callable[[Working], Drop | None]


class UserAgentInfo(NamedTuple):
    browser: str
    browser_version: str
    os: str
    os_version: str
    device: str
    """``desktop``, ``mobile``, ``tablet``, ``bot`` or ``other``."""


class UserAgentParser(Protocol):
    def parse(self, user_agent: str) -> UserAgentInfo: ...


class BotDetector(Protocol):
    def bot_reason(self, user_agent: str) -> str | None:
        """A short reason (``ua_pattern``, ``empty_ua`` ...) when the UA is a bot, else None."""
        ...


def start(accepted: AcceptedEvent) -> Working:
    """A working event whose processed row copies what the collector already knew."""
    out = ProcessedEvent(
        event_id=accepted.event_id,
        site_id=accepted.site_id,
        type=accepted.type,
        name=accepted.name,
        timestamp=accepted.timestamp,
        received_at=accepted.received_at,
        visitor_id=accepted.visitor_id,
        user_id=accepted.user_id,
        hostname=accepted.hostname,
        path=accepted.path,
        url=accepted.url,
        title=accepted.title,
        referrer=accepted.referrer,
        country=accepted.country,
        screen_width=accepted.screen_width,
        duration_ms=accepted.duration_ms,
        load_time_ms=accepted.load_time_ms,
        engaged_ms=accepted.engaged_ms,
        scroll_depth=accepted.scroll_depth,
        props=dict(accepted.props),
    )
    return Working(accepted=accepted, out=out)
