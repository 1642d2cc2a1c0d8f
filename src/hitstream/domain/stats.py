"""Stats queries as values: periods, intervals, metrics, properties and filters, checked.

The web layer hands over raw query parameters; ``build_query`` turns them into a ``StatsQuery``
or raises ``QueryError`` naming the parameter and the reason. Stores answer a ``StatsQuery``
(``hitstream.domain.measures`` says how, and what they check of it); nothing here knows SQL.

Metric definitions (every store must give the same numbers; the contract suite checks it):

- ``visitors``: distinct visitor ids among matching events.
- ``visits``: distinct sessions among matching events.
- ``pageviews``: matching events of type pageview.  ``events``: all matching events.
- ``bounce_rate``: percent of those sessions that are bounces (at most one event in the visit).
- ``visit_duration``: mean duration of those sessions, in seconds.
- ``views_per_visit``: pageviews / visits.
- ``load_time_p50`` / ``load_time_p95``: continuous percentiles (linear interpolation between
  the two nearest sorted values, as SQL ``percentile_cont``) of ``load_time_ms`` over matching
  pageviews that carry one.
- ``time_on_page``: mean engaged seconds per pageview, over matching ``engagement`` events
  (each reports one pageview: visible time on the page until it was left or hidden).
- ``scroll_depth``: mean deepest scroll (percent) over matching engagement events carrying one.
- ``avg_duration``: mean ``duration_ms`` in seconds over matching events carrying one (the
  seeds' "average time per action"; engagement events excluded).

Engagement events are measurements, not activity: they count in no metric but
``time_on_page`` and ``scroll_depth``, and a query that asks neither ignores them entirely
(no breakdown row, no visitor, no event comes from them). Decision 0018.

A metric with nothing to measure (no visits, no load times) is 0.

Goals (``hitstream.domain.goals``): ``conversions`` counts the distinct visitors of matching
events that complete a goal (the goals of the query's ``goal==`` clauses, else any goal of the
site), ``conversion_rate`` is ``100 * conversions`` / the visitors of the same events without
the goal clauses; under a ``goal`` filter ``events`` counts goal completions. The stats service
composes these from the stores' plain answers (``hitstream.services.conversions``).
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from hitstream.domain.errors import QueryError
from hitstream.domain.goals import GOAL_METRICS, GOAL_OPS, GOAL_PROPERTY, Goal
from hitstream.domain.patterns import compile_pattern

METRICS: Final = (
    "visitors",
    "visits",
    "pageviews",
    "events",
    "bounce_rate",
    "visit_duration",
    "views_per_visit",
    "load_time_p50",
    "load_time_p95",
    "time_on_page",
    "scroll_depth",
    "avg_duration",
)
"""What every store answers; with ``GOAL_METRICS``, what a query may ask (``QUERY_METRICS``)."""
ENGAGEMENT_METRICS: Final = frozenset({"time_on_page", "scroll_depth"})
"""The metrics that read engagement events (every other one ignores them)."""
DEFAULT_METRICS: Final = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")

QUERY_METRICS: Final = (*METRICS, *GOAL_METRICS)

# Properties of an event row, by API name -> column in the processed event.
EVENT_PROPERTIES: Final = {
    "page": "path",
    "hostname": "hostname",
    "source": "source",
    "channel": "channel",
    "referrer": "referrer_domain",
    "utm_source": "utm_source",
    "utm_medium": "utm_medium",
    "utm_campaign": "utm_campaign",
    "utm_term": "utm_term",
    "utm_content": "utm_content",
    "browser": "browser",
    "os": "os",
    "device": "device",
    "country": "country",
    "event_type": "type",
    "event_name": "name",
    "user_id": "user_id",
}
# Properties of a visit (the sessions rollup), by API name -> session column.
SESSION_PROPERTIES: Final = {"entry_page": "entry_page", "exit_page": "exit_page"}
PROP_PREFIX: Final = "prop:"
PERIODS: Final = ("realtime", "day", "7d", "30d", "month", "custom")
INTERVALS: Final = ("minute", "hour", "day")
REALTIME_WINDOW_MS: Final = 5 * 60 * 1000
MAX_BREAKDOWN_LIMIT: Final = 1000
MAX_BUCKETS: Final = 5000


OPS: Final = ("==", "!=", "~", "!~", "=~", "!=~")
"""``==`` is one of, ``!=`` is none of, ``~`` contains one of, ``!~`` contains none of,
``=~`` matches the pattern, ``!=~`` does not match it (``hitstream.domain.patterns``)."""
PATTERN_OPS: Final = ("=~", "!=~")
OP_ALIASES: Final = {
    " is not ": "!=",
    " is ": "==",
    " does not contain ": "!~",
    " contains ": "~",
    " does not match ": "!=~",
    " matches ": "=~",
}
"""Readable spellings of the operators (spaces around them), for people writing URLs."""


@dataclass(frozen=True, slots=True)
class Filter:
    """``property op values``: op is ``==`` (any of values), ``!=`` (none of), ``~`` (contains
    one of), ``!~`` (contains none of), ``=~`` / ``!=~`` (matches / does not match the one
    pattern in values)."""

    property: str
    op: str
    values: tuple[str, ...]

    def matches(self, value: str | None) -> bool:
        """Whether a property value passes (``hitstream.domain.measures`` says which value an
        event has); ``None``, no value at all (the entry page of a visit without a row), never
        does. ``~`` compares after ``str.lower`` on both sides."""
        if value is None:
            return False
        if self.op == "==":
            return value in self.values
        if self.op == "!=":
            return value not in self.values
        if self.op in PATTERN_OPS:
            found = compile_pattern(self.values[0]).search(value)
            return found if self.op == "=~" else not found
        lowered = value.lower()
        contains = any(needle.lower() in lowered for needle in self.values)
        return contains if self.op == "~" else not contains


@dataclass(frozen=True, slots=True)
class Range:
    """Half-open [start, end) in epoch ms."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class StatsQuery:
    site_id: str
    range: Range
    metrics: tuple[str, ...] = DEFAULT_METRICS
    filters: tuple[Filter, ...] = ()
    interval: str = "day"
    property: str = ""
    limit: int = 100
    tz: str = "UTC"
    compare: Range | None = None
    extra: dict[str, str] = field(default_factory=dict)
    goals: tuple[Goal, ...] = ()
    """The definitions of the site's goals the query names (resolved by the stats service)."""

    def for_range(self, new_range: Range) -> StatsQuery:
        return StatsQuery(
            site_id=self.site_id,
            range=new_range,
            metrics=self.metrics,
            filters=self.filters,
            interval=self.interval,
            property=self.property,
            limit=self.limit,
            tz=self.tz,
            goals=self.goals,
        )


def is_property(name: str) -> bool:
    if name.startswith(PROP_PREFIX):
        return 0 < len(name) - len(PROP_PREFIX) <= 64
    return name in EVENT_PROPERTIES or name in SESSION_PROPERTIES or name == GOAL_PROPERTY


def parse_metrics(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return DEFAULT_METRICS
    parts = [part.strip() for part in raw.split(",")]
    if "" in parts and any(parts):
        raise QueryError("metrics", f"has an empty name between commas: {raw!r}")
    names = tuple(dict.fromkeys(part for part in parts if part))
    for name in names:
        if name not in QUERY_METRICS:
            raise QueryError("metrics", f"unknown metric {name!r}; use {', '.join(QUERY_METRICS)}")
    if not names:
        raise QueryError("metrics", "names no metric")
    return names


def _operator(clause: str) -> tuple[str, str, str] | None:
    """Split a clause at its operator: the earliest one, the longest there (so ``!=~`` is
    not ``!=`` followed by ``~``); readable aliases (`` matches ``) count as operators."""
    best: tuple[int, int, str, str] | None = None  # (position, -length, spelling, op)
    for spelling, op in [*((o, o) for o in OPS), *OP_ALIASES.items()]:
        at = clause.find(spelling)
        if at > 0 and (best is None or (at, -len(spelling)) < best[:2]):
            best = (at, -len(spelling), spelling, op)
    if best is None:
        return None
    at, _, spelling, op = best
    return clause[:at], op, clause[at + len(spelling) :]


def parse_filters(raw: str | None) -> tuple[Filter, ...]:
    """``page==/a|/b;country!=DE;page~blog;page=~^/docs/``: clauses joined by ';', values by
    '|' (a pattern of ``=~``/``!=~`` is one value: its '|' is alternation)."""
    if not raw:
        return ()
    if "\x00" in raw:  # no store can compare it (PostgreSQL refuses the text)
        raise QueryError("filters", "must not contain a NUL character")
    filters: list[Filter] = []
    for clause in raw.split(";"):
        clause = clause.strip()
        if not clause:
            continue
        split = _operator(clause)
        if split is None:
            raise QueryError(
                "filters", f"{clause!r} has no operator ({', '.join(OPS)} or a word alias)"
            )
        prop, op, value = split
        prop = prop.strip()
        if not is_property(prop):
            raise QueryError("filters", f"unknown property {prop!r}")
        if prop == GOAL_PROPERTY and op not in ("==", "!="):
            raise QueryError("filters", GOAL_OPS)
        if op in PATTERN_OPS:
            compile_pattern(value)  # raises QueryError("filters", ...) naming the problem
            filters.append(Filter(prop, op, (value,)))
            continue
        values = tuple(value.split("|"))
        if op in ("~", "!~") and any(not v for v in values):
            raise QueryError("filters", f"{op!r} needs a non-empty value in {clause!r}")
        filters.append(Filter(prop, op, values))
    return tuple(filters)


NOT_ZONES: Final = frozenset({"localtime", "posixrules", "Factory"})
"""Names the time zone database answers that are no place's zone: the server's own setting
(``localtime``: the same query would answer differently on another server), a rule template,
a placeholder."""


@cache
def _places() -> frozenset[str]:
    return frozenset(available_timezones()) - NOT_ZONES


def check_zone(tz: str, field_name: str = "tz") -> str:
    """``tz`` if it is the IANA name of a place's zone (``posix/...``, ``right/...`` and
    ``NOT_ZONES`` load too, but name none); ``QueryError`` naming ``field_name`` otherwise.
    What a client or an admin gives; a site's stored zone is read as it is (``_zone``)."""
    if tz not in _places():
        raise QueryError(field_name, f"unknown time zone {tz!r}")
    return tz


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise QueryError("tz", f"unknown time zone {tz!r}") from exc


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


FIRST_DAY: Final = date(1970, 1, 1)
LAST_DAY: Final = date(9998, 12, 31)
"""The days a range may name: events are timed in ms since 1970, and a year before and a day
after every day in between are dates too (``year_before``, the end of a range; 9999-12-31
had no day after it: an error at the top of the calendar was a 500)."""


_DAY: Final = re.compile(r"\d{4}-\d{2}-\d{2}")


def _parse_day(raw: str | None, field_name: str) -> date:
    if not raw:
        raise QueryError(field_name, "is required when period=custom")
    return parse_day(raw, field_name)


def parse_day(raw: str, field_name: str) -> date:
    """A ``YYYY-MM-DD`` day from ``FIRST_DAY`` to ``LAST_DAY``; ``QueryError`` naming
    ``field_name`` otherwise (Python's ISO reader also takes ``20260301`` and week dates
    like ``2026-W10-1``: not the documented form, so refused)."""
    if not _DAY.fullmatch(raw):
        raise QueryError(field_name, "must be a date like 2026-01-31")
    try:
        day = date.fromisoformat(raw)
    except ValueError as exc:
        raise QueryError(field_name, "must be a date like 2026-01-31") from exc
    if not FIRST_DAY <= day <= LAST_DAY:
        raise QueryError(field_name, f"must be between {FIRST_DAY} and {LAST_DAY}")
    return day


PERIOD_GRAIN_MS: Final = 1_800_000
"""Named periods that end "so far" end at the next multiple of this (UTC): the rollups' half
hour (``hitstream.domain.rollups.SLOT``, which imports this module)."""


def resolve_period(
    period: str,
    now_ms: int,
    tz: str = "UTC",
    date_from: str | None = None,
    date_to: str | None = None,
) -> Range:
    """The [start, end) a named period covers at ``now_ms`` in time zone ``tz``.

    ``day`` is today so far; ``7d``/``30d`` start at local midnight 6/29 days ago; ``month`` is
    this calendar month so far; ``custom`` covers whole days from..to inclusive. "So far" ends
    at the end of the current half hour (``PERIOD_GRAIN_MS``), not at ``now_ms``: the same
    events (none lie after now but those a client dated ahead of the server's clock, at most
    ``max_future_skew_s``), and a range of whole half hours, which the rollups answer even
    while events arrive (a range ending at ``now_ms`` scanned raw events whenever one stored
    after ``now_ms`` shared its last half hour). ``realtime`` is the last five minutes.
    """
    zone = _zone(tz)
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(zone)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "realtime":
        return Range(now_ms - REALTIME_WINDOW_MS, now_ms + 1)
    end = (now_ms // PERIOD_GRAIN_MS + 1) * PERIOD_GRAIN_MS
    if period == "day":
        return Range(_ms(midnight), end)
    if period == "7d":
        return Range(_ms(midnight - timedelta(days=6)), end)
    if period == "30d":
        return Range(_ms(midnight - timedelta(days=29)), end)
    if period == "month":
        return Range(_ms(midnight.replace(day=1)), end)
    if period == "custom":
        first = _parse_day(date_from, "from")
        last = _parse_day(date_to, "to")
        if last < first:
            raise QueryError("to", "must not be before from")
        if (last - first).days > 3660:
            raise QueryError("to", "a custom period may span at most 10 years")
        start = datetime(first.year, first.month, first.day, tzinfo=zone)
        stop = datetime(last.year, last.month, last.day, tzinfo=zone) + timedelta(days=1)
        return Range(_ms(start), _ms(stop))
    raise QueryError("period", f"must be one of {', '.join(PERIODS)}")


def previous_period(current: Range, period: str | None = None, tz: str = "UTC") -> Range:
    """The range to compare ``current`` with. A period "so far" (``day``, ``7d``, ``30d``,
    ``month``: ``resolve_period``) compares with the same part of the period before, in
    ``tz``'s wall clock: today until 14:30 with yesterday until 14:30, this month until the
    7th with last month until the 7th (its last day when shorter). As long and just before
    ("today so far" was compared with the end of yesterday) only for other ranges: ``custom``
    with as many whole days just before, in ``tz`` (a fixed length in milliseconds started an
    hour off when the days before held a DST change); ``realtime`` or a range given directly
    with as long just before."""
    if period == "custom":
        zone = _zone(tz)
        first = datetime.fromtimestamp(current.start / 1000, tz=UTC).astimezone(zone).date()
        after = datetime.fromtimestamp(current.end / 1000, tz=UTC).astimezone(zone).date()
        earlier = first - timedelta(days=max((after - first).days, 1))
        start = _ms(datetime(earlier.year, earlier.month, earlier.day, tzinfo=zone))
        return Range(start, current.start)
    back = _ROLLING_DAYS.get(period or "")
    if back is not None or period == "month":
        zone = _zone(tz)

        def shifted(ms: int) -> int:
            moment = datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone).replace(tzinfo=None)
            if back is not None:
                earlier = moment - timedelta(days=back)
            else:  # a month earlier, on its last day when it has no such day
                months = moment.year * 12 + moment.month - 2  # the month before, from year 0
                year, month = months // 12, months % 12 + 1
                earlier = moment.replace(
                    year=year, month=month, day=min(moment.day, monthrange(year, month)[1])
                )
            return _ms(earlier.replace(tzinfo=zone))

        start = shifted(current.start)
        return Range(start, max(start, min(shifted(current.end), current.start)))
    length = current.end - current.start
    return Range(current.start - length, current.start)


_ROLLING_DAYS: Final = {"day": 1, "7d": 7, "30d": 30}
"""How many days back the period before a rolling period starts."""


COMPARISONS: Final = ("previous_period", "year_over_year", "custom")


def year_before(current: Range, tz: str = "UTC") -> Range:
    """The same wall-clock range one year earlier in ``tz`` (29 February becomes the 28th).
    An end at midnight is the end of its range's last day: that day a year earlier ends it
    (28 February 2024 ended on the 28th a year before, an empty range; 28 February 2025
    took in the 29th of 2024)."""
    zone = _zone(tz)

    def back(moment: datetime) -> datetime:
        day = min(moment.day, 28) if moment.month == 2 else moment.day
        return moment.replace(year=moment.year - 1, day=day)

    def local(ms: int) -> datetime:
        return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(zone).replace(tzinfo=None)

    start, end = local(current.start), local(current.end)
    day_start = _ms(datetime(end.year, end.month, end.day, tzinfo=zone))  # 01:00 after a gap
    if day_start == current.end and current.end > current.start:
        last = back(end - timedelta(days=1))
        stop = datetime(last.year, last.month, last.day) + timedelta(days=1)
    else:
        stop = back(end)
    return Range(_ms(back(start).replace(tzinfo=zone)), _ms(stop.replace(tzinfo=zone)))


def comparison(
    compare: str | None,
    current: Range,
    tz: str = "UTC",
    compare_from: str | None = None,
    compare_to: str | None = None,
    period: str | None = None,
) -> Range | None:
    """The range to compare ``current`` (of ``period``) with: ``previous_period`` (the same
    part of the period before, or as long, just before: ``previous_period``),
    ``year_over_year`` (the same dates a year earlier), ``custom`` (whole days
    ``compare_from``..``compare_to`` inclusive, in ``tz``), or None."""
    if compare in (None, ""):
        if compare_from or compare_to:
            raise QueryError("compare", "must be custom when compare_from/compare_to are given")
        return None
    if compare == "previous_period":
        return previous_period(current, period, tz)
    if compare == "year_over_year":
        return year_before(current, tz)
    if compare == "custom":
        try:
            return resolve_period("custom", current.end, tz, compare_from, compare_to)
        except QueryError as exc:
            name = {"from": "compare_from", "to": "compare_to"}.get(exc.field, exc.field)
            raise QueryError(name, exc.reason.replace("period=custom", "compare=custom")) from None
    raise QueryError("compare", f"must be one of {', '.join(COMPARISONS)}")


def bucket_starts(query: StatsQuery) -> list[int]:
    """Every bucket start (epoch ms) of a timeseries, aligned to the interval in ``query.tz``."""
    zone = _zone(query.tz)
    start = datetime.fromtimestamp(query.range.start / 1000, tz=UTC).astimezone(zone)
    if query.interval == "minute":
        cursor = start.replace(second=0, microsecond=0)
        step = timedelta(minutes=1)
    elif query.interval == "hour":
        cursor = start.replace(minute=0, second=0, microsecond=0)
        step = timedelta(hours=1)
    else:
        cursor = start.replace(hour=0, minute=0, second=0, microsecond=0)
        step = timedelta(days=1)
    if _ms(cursor) > query.range.start:  # the aligned start is a wall time a DST gap skipped
        cursor = start
    starts: list[int] = []
    while _ms(cursor) < query.range.end:
        starts.append(_ms(cursor))
        if len(starts) > MAX_BUCKETS:
            raise QueryError("interval", f"gives more than {MAX_BUCKETS} buckets; use a wider one")
        # step in wall-clock terms for days (DST-safe), by local hours for hours, in
        # absolute terms for minutes
        if query.interval == "day":
            nxt = (cursor + step).replace(hour=0)
            cursor = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
        elif query.interval == "hour":
            cursor = _next_hour(cursor, zone)
        else:
            cursor = (cursor.astimezone(UTC) + step).astimezone(zone)
    return starts


def _next_hour(cursor: datetime, zone: ZoneInfo) -> datetime:
    """The start of the hour bucket after ``cursor``'s: the next whole hour of the local
    clock, or the moment the UTC offset changes when that comes first (found to the second).
    Stepping whole hours of absolute time lost the local hour after a 30- or 45-minute DST
    change (Lord Howe, Chatham: every later bucket started at :30 local); a change of offset
    starts a bucket of its own (the repeated hour of a fall back is shown twice, as it
    happened), and the hours after it follow the new offset's clock."""
    here = cursor.astimezone(UTC)
    offset = here.astimezone(zone).utcoffset()  # the instant's (a wall time may not exist)
    assert offset is not None
    wall = (here + offset).replace(tzinfo=None)
    boundary = wall.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    candidate = (boundary - offset).replace(tzinfo=UTC)
    if candidate.astimezone(zone).utcoffset() == offset:
        return candidate.astimezone(zone)
    low, high = here, candidate  # the offset changes in (low, high]: find the second
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return high.replace(microsecond=0).astimezone(zone)


def bucket_of(starts: list[int], ts: int) -> int | None:
    """The start of the bucket that holds ``ts`` (binary search), or None outside them."""
    lo, hi = 0, len(starts) - 1
    if not starts or ts < starts[0]:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if starts[mid] <= ts:
            lo = mid
        else:
            hi = mid - 1
    return starts[lo]


def default_interval(period: str, span_ms: int) -> str:
    if period == "realtime":
        return "minute"
    if period == "day" or span_ms <= 2 * 86_400_000:
        return "hour"
    return "day"


def build_query(
    *,
    site_id: str | None,
    now_ms: int,
    period: str | None = None,
    date_from: str | None = None,
    date_to: str | None = None,
    metrics: str | None = None,
    filters: str | None = None,
    interval: str | None = None,
    property: str | None = None,
    limit: int | None = None,
    tz: str | None = None,
    compare: str | None = None,
    compare_from: str | None = None,
    compare_to: str | None = None,
) -> StatsQuery:
    """Turn raw API parameters into a checked ``StatsQuery``; raise ``QueryError`` if not."""
    if not site_id:
        raise QueryError("site_id", "is required")
    period = period or "30d"
    if period != "custom" and (date_from or date_to):  # they would be ignored
        raise QueryError("period", "must be custom when from/to are given")
    tz = tz or "UTC"
    current = resolve_period(period, now_ms, tz, date_from, date_to)
    chosen_interval = interval or default_interval(period, current.end - current.start)
    if chosen_interval not in INTERVALS:
        raise QueryError("interval", f"must be one of {', '.join(INTERVALS)}")
    if property is not None and property != "" and not is_property(property):
        raise QueryError("property", f"unknown property {property!r}")
    if limit is not None and not 1 <= limit <= MAX_BREAKDOWN_LIMIT:
        raise QueryError("limit", f"must be between 1 and {MAX_BREAKDOWN_LIMIT}")
    compared = comparison(compare, current, tz, compare_from, compare_to, period)
    return StatsQuery(
        site_id=site_id,
        range=current,
        metrics=parse_metrics(metrics),
        filters=parse_filters(filters),
        interval=chosen_interval,
        property=property or "",
        limit=limit or 100,
        tz=tz,
        compare=compared,
    )


@dataclass(slots=True)
class Aggregate:
    """Metric name -> value for the range (and for the comparison range, when asked)."""

    results: dict[str, float]
    previous: dict[str, float] | None = None


@dataclass(slots=True)
class TimeseriesPoint:
    bucket: int
    results: dict[str, float]


@dataclass(slots=True)
class BreakdownRow:
    value: str
    results: dict[str, float]


def breakdown_order(
    metrics: Sequence[str], results: Mapping[str, float], value: str
) -> tuple[float, float, str]:
    """The sort key of a breakdown row: by the first metric descending, among ties by the
    second descending (pages with one visitor each: the most viewed first), then by value.
    Every store orders (and cuts at ``limit``) by it."""
    first = -results[metrics[0]]
    then = -results[metrics[1]] if len(metrics) > 1 else 0.0
    return first, then, value
