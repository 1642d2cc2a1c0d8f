"""What a live dashboard looks at (a view) and the one query run that fills it.

Equal views share one ``View`` object; ``query_view`` runs every query a dashboard needs once
through the stats service, so the numbers are exactly the stats API's: all in one store call
when the service answers batches (``StatsService.answer_all``: one control-socket round trip
and one DuckDB job per update, instead of one per query), else concurrently one by one.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from hitstream.domain.events import ProcessedEvent
from hitstream.domain.goals import GOAL_METRICS, GOAL_PROPERTY, Goal
from hitstream.domain.stats import (
    METRICS,
    Filter,
    Range,
    StatsQuery,
    build_query,
    parse_filters,
    resolve_period,
)
from hitstream.errors import QueryError
from hitstream.services.live_client import LiveClient

SERIES_METRICS: Final = "visitors,pageviews"
BREAKDOWNS: Final = {
    "page": "visitors,pageviews,time_on_page,scroll_depth",
    "entry_page": "visitors,visits",
    "exit_page": "visitors,visits",
    "source": "visitors,visits",
    "channel": "visitors,visits",
    "referrer": "visitors,visits",
    "utm_campaign": "visitors,visits",
    "browser": "visitors,visits",
    "os": "visitors,visits",
    "device": "visitors,visits",
    "country": "visitors,visits",
    "event_type": "visitors,events",
    "event_name": "visitors,events,avg_duration",
}
PROP_METRICS: Final = "visitors,events"


class LiveStats(Protocol):
    """The stats service: the exact JSON bodies of the stats API."""

    async def aggregate(self, query: StatsQuery) -> dict[str, Any]: ...
    async def timeseries(self, query: StatsQuery) -> dict[str, Any]: ...
    async def breakdown(self, query: StatsQuery) -> dict[str, Any]: ...
    async def realtime(self, site_id: str, filters: tuple[Filter, ...] = ()) -> dict[str, Any]: ...


Ask = tuple[Literal["aggregate", "timeseries", "breakdown", "realtime"], StatsQuery]


@runtime_checkable
class BatchStats(LiveStats, Protocol):
    """A stats service that answers a whole view with one store call (``StatsService``)."""

    def realtime_query(self, site_id: str, filters: tuple[Filter, ...] = ()) -> StatsQuery: ...
    async def answer_all(
        self, site_id: str, asks: Sequence[Ask]
    ) -> tuple[int, list[dict[str, Any]]]: ...


class VersionSource(Protocol):
    """What the hub needs from the store itself (the ``Store`` port fits)."""

    async def data_version(self, site_id: str) -> int: ...
    async def latest_events(
        self, site_id: str, start_ms: int, end_ms: int, limit: int
    ) -> list[ProcessedEvent]: ...
    async def prop_keys(self, site_id: str) -> list[str]: ...
    async def goals(self, site_id: str) -> list[Goal]: ...


LIVE_FIELDS: Final = (
    "event_id",
    "type",
    "name",
    "path",
    "title",
    "source",
    "channel",
    "referrer_domain",
    "country",
    "browser",
    "os",
    "device",
    "props",
    "timestamp",
    "received_at",
)
"""What the live feed tells of an event (no visitor or visit id)."""


def live_event(event: ProcessedEvent) -> dict[str, Any]:
    """An event as the processor publishes it and the live feed keeps it."""
    return {name: getattr(event, name) for name in LIVE_FIELDS}


QualitySource = Callable[[str], Coroutine[Any, Any, dict[str, Any]]]
"""site_id -> ``{"rejected": {...}, "dropped": {...}}``, the body of ``/api/v1/quality``
(``hitstream.services.quality.Quality``)."""


@dataclass(frozen=True, slots=True)
class ViewKey:
    """What a dashboard looks at; equal keys share one ``View``."""

    site_id: str
    period: str = "day"
    date_from: str = ""
    date_to: str = ""
    filters: str = ""
    tz: str = "UTC"
    compare: str = "previous_period"
    compare_from: str = ""
    compare_to: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "site_id": self.site_id,
            "period": self.period,
            "from": self.date_from,
            "to": self.date_to,
            "filters": self.filters,
            "tz": self.tz,
            "compare": self.compare,
            "compare_from": self.compare_from,
            "compare_to": self.compare_to,
        }

    def compared(self, now_ms: int, **extra: Any) -> StatsQuery:
        """The view's query with its comparison (the cards' change)."""
        return self.query(
            now_ms,
            compare=self.compare,
            compare_from=self.compare_from or None,
            compare_to=self.compare_to or None,
            **extra,
        )

    def query(self, now_ms: int, **extra: Any) -> StatsQuery:
        return build_query(
            site_id=self.site_id,
            now_ms=now_ms,
            period=self.period,
            date_from=self.date_from or None,
            date_to=self.date_to or None,
            filters=self.filters or None,
            tz=self.tz,
            **extra,
        )


def parse_view(params: Mapping[str, object], now_ms: int) -> ViewKey:
    """A checked, canonical ``ViewKey`` from query parameters or a ``set`` message."""
    raw: dict[str, str] = {}
    for name in (
        "site_id",
        "period",
        "from",
        "to",
        "filters",
        "tz",
        "compare",
        "compare_from",
        "compare_to",
    ):
        value = params.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 1024:
            raise QueryError(name, "must be a string of at most 1024 characters")
        raw[name] = value.strip()
    period = raw.get("period") or "day"
    custom = period == "custom"
    filters = ";".join(
        sorted(f"{f.property}{f.op}{'|'.join(f.values)}" for f in parse_filters(raw.get("filters")))
    )
    key = ViewKey(
        site_id=raw.get("site_id", ""),
        period=period,
        date_from=raw.get("from", "") if custom else "",
        date_to=raw.get("to", "") if custom else "",
        filters=filters,
        tz=raw.get("tz") or "UTC",
        compare=raw.get("compare") or "previous_period",
        compare_from=raw.get("compare_from", "") if raw.get("compare") == "custom" else "",
        compare_to=raw.get("compare_to", "") if raw.get("compare") == "custom" else "",
    )
    key.compared(now_ms)  # raises QueryError naming the bad parameter
    return key


@dataclass(eq=False, slots=True)
class View:
    key: ViewKey
    filters: tuple[Filter, ...]
    clients: set[LiveClient] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    state: dict[str, Any] | None = None
    state_at: float = float("-inf")
    state_version: int = -1
    last_update: float = float("-inf")
    cost_s: float = 0.0
    """How long the view's last computation took (its queries, as the hub waited)."""
    updates: int = 0
    task: asyncio.Task[None] | None = None
    goals: tuple[Goal, ...] = ()
    """The site's goals when a filter names some (the live list checks them), as of the
    view's last computation."""

    @property
    def names_goals(self) -> bool:
        return any(f.property == GOAL_PROPERTY for f in self.filters)

    def contains(self, timestamp: int, now_ms: int) -> bool:
        """Whether an event time is inside the view's period (rolling periods: not before)."""
        try:
            span: Range = resolve_period(
                self.key.period, now_ms, self.key.tz, self.key.date_from, self.key.date_to
            )
        except QueryError:
            return False
        if timestamp < span.start:
            return False
        return self.key.period != "custom" or timestamp < span.end


@dataclass(eq=False, slots=True)
class SiteFeed:
    """Everything the hub keeps per site: its views, recent events and alerts, readers."""

    site_id: str
    recent: deque[dict[str, Any]]
    alerts: deque[dict[str, Any]]
    views: dict[ViewKey, View] = field(default_factory=dict)
    prop_keys: Counter[str] = field(default_factory=Counter)
    version: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    expiry: asyncio.TimerHandle | None = None
    """Set while nobody watches: the feed lingers so a reload still shows recent events."""
    filled: asyncio.Task[None] | None = None
    """Loads the site's newest stored events into ``recent`` when the feed starts: every
    snapshot waits for it, so a dashboard opened on a quiet site still lists what came."""


async def query_view(
    stats: LiveStats,
    key: ViewKey,
    *,
    now_ms: int,
    quality: QualitySource,
    prop_keys: list[str],
    limit: int,
) -> tuple[int | None, dict[str, Any]]:
    """Aggregate (with the previous period), series, breakdowns, realtime and quality; with
    the data version they were computed at when the stats service answered them as one
    batch (None when it did not: the caller reads the version itself)."""
    properties = dict(BREAKDOWNS)
    for prop in prop_keys:
        properties[f"prop:{prop}"] = PROP_METRICS
    filtered = key.query(now_ms).filters
    # under a goal filter the cards show its conversions too (the visitors are the converted)
    goal_filter = any(f.property == GOAL_PROPERTY for f in filtered)
    cards = (*METRICS, *GOAL_METRICS) if goal_filter else METRICS
    asks: list[Ask] = [
        ("aggregate", key.compared(now_ms, metrics=",".join(cards))),
        ("timeseries", key.query(now_ms, metrics=SERIES_METRICS)),
        # the service's own query (below), of the view's filters
        ("realtime", StatsQuery(key.site_id, Range(0, 0), filters=filtered)),
        *(
            ("breakdown", key.query(now_ms, property=prop, metrics=metrics, limit=limit))
            for prop, metrics in properties.items()
        ),
    ]
    try:
        async with asyncio.TaskGroup() as group:
            checked = group.create_task(quality(key.site_id))
            answered = group.create_task(_answers(stats, key.site_id, asks))
    except ExceptionGroup as group_error:  # the first failure speaks for the run
        raise group_error.exceptions[0] from None
    version, (aggregate, series, realtime, *rows) = answered.result()
    return version, {
        "interval": asks[1][1].interval,
        "aggregate": aggregate,
        "timeseries": series,
        "realtime": realtime,
        "quality": checked.result(),
        "breakdowns": {
            p: body.get("results", []) for p, body in zip(properties, rows, strict=True)
        },
    }


async def _answers(
    stats: LiveStats, site_id: str, asks: list[Ask]
) -> tuple[int | None, list[dict[str, Any]]]:
    """The body of each ask: in one batch when the service answers batches, else
    concurrently one by one (the first failure raised either way)."""
    if isinstance(stats, BatchStats):
        asks = [
            (k, stats.realtime_query(site_id, q.filters) if k == "realtime" else q) for k, q in asks
        ]
        return await stats.answer_all(site_id, asks)

    async def realtime(query: StatsQuery) -> dict[str, Any]:
        return await stats.realtime(site_id, query.filters)

    single = {
        "aggregate": stats.aggregate,
        "timeseries": stats.timeseries,
        "breakdown": stats.breakdown,
        "realtime": realtime,
    }
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(single[kind](query)) for kind, query in asks]
    except ExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return None, [task.result() for task in tasks]
