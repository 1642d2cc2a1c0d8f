"""The canonical event, as accepted by the collector and as enriched by the processor.

Two shapes on purpose: an ``AcceptedEvent`` is what the collector stamps and appends to the
event log (it still carries the User-Agent, never the IP); a ``ProcessedEvent`` is what the
processor's pipeline makes of it and the store keeps. Times are integer epoch milliseconds (UTC)
everywhere in the domain, so nothing here needs a clock or a timezone library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

PropValue = str | int | float | bool
Props = dict[str, PropValue]


class EventType(StrEnum):
    PAGEVIEW = "pageview"
    CLICK = "click"
    SESSION = "session"
    CUSTOM = "custom"
    ENGAGEMENT = "engagement"
    """Time on page and scroll depth of a pageview, sent when the page is first hidden or
    left (and, named ``FOLLOW_UP``, for the time it was visible again after that). A
    measurement, not an interaction: it counts in no metric but ``time_on_page`` and
    ``scroll_depth``, and never starts or changes a visit (decisions 0018, 0063)."""


EVENT_TYPES: Final = frozenset(t.value for t in EventType)

FOLLOW_UP: Final = "follow_up"
"""The name of an engagement event that reports more visible time of a pageview whose first
report was sent (the page was hidden, then shown again): its ``engaged_ms`` adds to the
time on page, but it is no other report, so ``time_on_page`` stays a mean per reported
pageview, and it carries no ``scroll_depth`` (decision 0063)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the collector enforces; one object so the API docs can print them."""

    max_body_bytes: int = 64 * 1024
    max_batch_body_bytes: int = 1024 * 1024
    max_batch_events: int = 500
    max_site_id: int = 100
    max_name: int = 120
    max_url: int = 2048
    max_referrer: int = 2048
    max_title: int = 512
    max_user_id: int = 256
    max_session_id: int = 256
    max_event_id: int = 64
    max_props: int = 30
    max_prop_key: int = 64
    max_prop_value: int = 512
    max_duration_ms: int = 24 * 3600 * 1000
    max_load_time_ms: int = 10 * 60 * 1000
    max_engaged_ms: int = 6 * 3600 * 1000
    max_scroll_depth: int = 100
    max_screen_width: int = 20_000
    max_user_agent: int = 1024
    max_past_ms: int = 24 * 3600 * 1000
    max_future_ms: int = 5 * 60 * 1000


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one field of one event was refused; ``index`` is the event's place in a batch."""

    field: str
    reason: str
    index: int | None = None


@dataclass(slots=True)
class AcceptedEvent:
    """An event that passed validation, stamped by the collector; the unit of the event log."""

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
    props: Props = field(default_factory=dict)
    duration_ms: int | None = None
    load_time_ms: int | None = None
    screen_width: int | None = None
    engaged_ms: int | None = None
    scroll_depth: int | None = None
    user_agent: str = ""
    country: str = ""


@dataclass(slots=True)
class ProcessedEvent:
    """An accepted event after the pipeline: what the store keeps, one row per event.

    What the pipeline fills in (the visit, acquisition, device) defaults to empty, so code
    that builds one only names what it knows."""

    event_id: str
    site_id: str
    type: str
    name: str
    timestamp: int
    received_at: int
    visitor_id: str
    session_id: str = ""
    user_id: str = ""
    hostname: str = ""
    path: str = "/"
    url: str = ""
    title: str = ""
    referrer: str = ""
    referrer_domain: str = ""
    source: str = ""
    channel: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    browser: str = ""
    browser_version: str = ""
    os: str = ""
    os_version: str = ""
    device: str = ""
    country: str = ""
    screen_width: int | None = None
    duration_ms: int | None = None
    load_time_ms: int | None = None
    engaged_ms: int | None = None
    scroll_depth: int | None = None
    props: Props = field(default_factory=dict)


@dataclass(slots=True)
class Session:
    """A visit: events of one visitor with no gap longer than the session timeout.

    Kept by the processor and written in the same store transaction as its events, so the
    processor's session state after a restart is exactly what the stored offsets imply.
    """

    session_id: str
    site_id: str
    visitor_id: str
    started_at: int
    last_seen: int
    entry_page: str
    exit_page: str
    pageviews: int
    events: int
    source: str = ""
    channel: str = ""
    referrer_domain: str = ""
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""
    browser: str = ""
    os: str = ""
    device: str = ""
    country: str = ""

    @property
    def duration_ms(self) -> int:
        return self.last_seen - self.started_at

    @property
    def is_bounce(self) -> bool:
        return is_bounce(self.pageviews, self.events)


def is_engagement(event_type: str) -> bool:
    """Whether events of this type are engagement measurements, which count as no activity:
    not in visitors, visits, pageviews, events, bounces or durations (decision 0018)."""
    return event_type == EventType.ENGAGEMENT


def is_bounce(pageviews: int, events: int) -> bool:
    """A visit with at most one pageview and no other interaction (click, custom event) is a
    bounce; ``session`` duration pings do not count as interactions."""
    return pageviews <= 1 and events <= 1
