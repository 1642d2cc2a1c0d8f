"""One live dashboard connection: a bounded outgoing queue, an event rate limit, latency.

Guarantees: ``LiveClient.push`` never waits, so whoever feeds clients (the fan-out reader,
shared view updates) is never slowed by a slow socket; a full queue drops its OLDEST frame
and counts it; a queued ``update`` frame is replaced by a newer one (it is a whole state, so
the old one is worthless). The latency from an event's ``received_at`` to the moment the
frame holding it was handed to the socket is observed after each send.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from hitstream.domain.goals import GOAL_PROPERTY, Goal, completes_fields
from hitstream.domain.measures import prop_text
from hitstream.domain.stats import EVENT_PROPERTIES, PROP_PREFIX, Filter

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class Frame:
    """One text frame to send; ``view`` ties view-specific frames to the view they were for."""

    kind: str
    text: str
    view: object | None = None
    received_at: tuple[int, ...] = ()


class LiveMetrics:
    """Prometheus series of the live channel plus a window of recent latencies for p50/p99."""

    def __init__(self, registry: CollectorRegistry | None, window: int = 2048) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.latency = Histogram(
            "hitstream_live_latency_seconds",
            "From collector receipt of an event to its live frame being sent",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.frames_dropped = Counter(
            "hitstream_live_frames_dropped_total",
            "Live frames dropped oldest-first because a client's queue was full",
            registry=r,
        )
        self.events_skipped = Counter(
            "hitstream_live_events_skipped_total",
            "Live events not sent to a client because of its rate limit",
            registry=r,
        )
        self.clients = Gauge("hitstream_live_clients", "Open live connections", registry=r)
        self.recent: deque[float] = deque(maxlen=window)

    def observe(self, seconds: float) -> None:
        self.latency.observe(seconds)
        self.recent.append(seconds)

    def percentiles(self) -> dict[str, float | int | None]:
        """p50/p99 (seconds) over the last ``window`` observations; None before the first."""
        values = sorted(self.recent)
        if not values:
            return {"count": 0, "p50": None, "p99": None}

        def pick(q: float) -> float:
            return round(values[min(len(values) - 1, math.ceil(q * len(values)) - 1)], 4)

        return {"count": len(values), "p50": pick(0.50), "p99": pick(0.99)}


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``rate`` saved up (a one-second burst)."""

    rate: float
    tokens: float
    stamp: float

    def take(self, wanted: int, now: float) -> int:
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        granted = min(wanted, int(self.tokens))
        self.tokens -= granted
        return granted


def sample(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` items spread evenly over ``items`` (keeping order), always the newest one."""
    if count >= len(items):
        return list(items)
    if count <= 0:
        return []
    step = len(items) / count
    return [items[len(items) - 1 - int(i * step)] for i in range(count)][::-1]


def event_matches(
    event: dict[str, Any], filters: Sequence[Filter], goals: Sequence[Goal] = ()
) -> bool:
    """Whether a live event passes the view's filters, by the stores' rules (property text
    and ``Filter.matches`` from the domain; a ``goal`` clause by the site's ``goals``).

    A filter on a property the live message does not carry (hostname, utm_*, entry/exit page)
    cannot be checked here and lets the event through; the numbers in updates stay exact.
    So does a goal clause naming a goal not in ``goals`` (not loaded yet).
    """
    for flt in filters:
        if flt.property == GOAL_PROPERTY:
            chosen = [g for g in goals if g.name in flt.values]
            if len(chosen) < len(set(flt.values)):
                continue
            hit = any(
                completes_fields(
                    g, event.get("type"), event.get("name"), event.get("path"), event.get("props")
                )
                for g in chosen
            )
            if hit != (flt.op == "=="):
                return False
            continue
        if flt.property.startswith(PROP_PREFIX):
            props = event.get("props")
            key = flt.property[len(PROP_PREFIX) :]
            value = prop_text(props.get(key)) if isinstance(props, dict) else ""
        else:
            column = EVENT_PROPERTIES.get(flt.property)
            if column is None or column not in event:
                continue
            value = prop_text(event[column])
        if not flt.matches(value):
            return False
    return True


@dataclass(eq=False, slots=True)
class LiveClient:
    """A dashboard's connection as the hub sees it; the web layer drives ``run_sender``."""

    view: object
    bucket: TokenBucket
    metrics: LiveMetrics
    wall_ms: Callable[[], int]
    maxsize: int = 64
    ready: bool = False
    """False until this view's snapshot is queued: earlier view frames would be out of order."""
    dropped: int = 0
    skipped: int = 0
    pending_skipped: int = 0
    sent: int = 0
    _queue: deque[Frame] = field(default_factory=deque)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _closed: bool = False

    def push(self, frame: Frame) -> None:
        """Queue a frame without waiting; stale-view frames are ignored, updates coalesce."""
        if self._closed or (frame.view is not None and frame.view != self.view):
            return
        if frame.view is not None and frame.kind != "snapshot" and not self.ready:
            return
        if frame.kind == "update":
            kept = [f for f in self._queue if f.kind != "update"]
            if len(kept) != len(self._queue):
                self._queue = deque(kept)
        while len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.dropped += 1
            self.metrics.frames_dropped.inc()
        self._queue.append(frame)
        self._wake.set()

    def reset(self, view: object) -> None:
        """Switch to another view: everything queued for the old one is stale."""
        self.view = view
        self.ready = False
        self._queue.clear()

    def queued(self) -> list[Frame]:
        return list(self._queue)

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def next_frame(self) -> Frame | None:
        """The oldest queued frame, waiting for one; None once closed."""
        while not self._queue:
            if self._closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._queue.popleft()

    async def run_sender(self, send: Callable[[str], Awaitable[None]]) -> None:
        """Send frames until closed; a slow ``send`` only ever delays this one client."""
        while (frame := await self.next_frame()) is not None:
            await send(frame.text)
            self.sent += 1
            if frame.received_at:
                now = self.wall_ms()
                for received in frame.received_at:
                    self.metrics.observe(max(0, now - received) / 1000)
