"""What the SQL stores share: the shape of a stats row and how its columns become metrics.

Every dialect's ``stats_sql`` returns rows of ``COLUMNS``; ``results`` turns one row into the
asked metrics by the domain's rules (``hitstream.domain.measures``), so both dialects compute
the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence, Set
from typing import Any, Final

from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.measures import check_property, metric_values
from hitstream.domain.stats import EVENT_PROPERTIES, PROP_PREFIX, SESSION_PROPERTIES, StatsQuery
from hitstream.errors import QueryError

Row = tuple[Any, ...]
EVENT_TEXT: Final = (
    "event_id", "site_id", "type", "name", "visitor_id", "session_id", "user_id", "hostname",
    "path", "url", "title", "referrer", "referrer_domain", "source", "channel", "utm_source",
    "utm_medium", "utm_campaign", "utm_term", "utm_content", "browser", "browser_version", "os",
    "os_version", "device", "country",
)  # fmt: skip
"""Text columns of ``events`` in both dialects, named as the ProcessedEvent attributes."""
SESSION_TEXT: Final = (
    "session_id", "site_id", "visitor_id", "entry_page", "exit_page", "source", "channel",
    "referrer_domain", "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content",
    "browser", "os", "device", "country",
)  # fmt: skip
SESSION_INTS: Final = ("started_at", "last_seen", "pageviews", "events")
SESSION_COLUMNS: Final = SESSION_TEXT + SESSION_INTS
"""Columns of ``sessions`` in both dialects, named as the Session attributes."""
SELECT_SESSIONS: Final = f"SELECT {', '.join(SESSION_COLUMNS)} FROM sessions"


def sessions_of(rows: Sequence[Sequence[Any]]) -> list[Session]:
    """Visits from rows of ``SELECT_SESSIONS``."""
    return [Session(**dict(zip(SESSION_COLUMNS, row, strict=True))) for row in rows]


EXPORT_INTS: Final = (
    ("ts", "timestamp"),
    ("received_at", "received_at"),
    ("screen_width", "screen_width"),
    ("duration_ms", "duration_ms"),
    ("load_time_ms", "load_time_ms"),
    ("engaged_ms", "engaged_ms"),
    ("scroll_depth", "scroll_depth"),
)
"""Integer columns of ``events`` in both dialects -> ProcessedEvent attribute."""
EXPORT_COLUMNS: Final = (*EVENT_TEXT, *(column for column, _ in EXPORT_INTS), "props")
"""Every stored column of ``events``, in the order ``exported_event`` reads them."""


def exported_event(row: Row) -> ProcessedEvent:
    """A ProcessedEvent from a row of ``EXPORT_COLUMNS`` (props as a mapping of text)."""
    names = (*EVENT_TEXT, *(attr for _, attr in EXPORT_INTS))
    fields: dict[str, Any] = dict(zip(names, row[:-1], strict=True))
    props = row[-1]
    fields["props"] = {str(k): str(v) for k, v in dict(props or {}).items()}
    return ProcessedEvent(**fields)


COLUMNS: Final = (
    "g, visitors, visits, pageviews, events, measured, bounces, duration, p50, p95, "
    "engaged, engaged_n, scroll, scroll_n, timed, timed_n"
)
ENGAGEMENT_COLUMNS: Final = (
    "engaged, engaged_n, scroll, scroll_n, timed, timed_n",
    "0 AS engaged, 0 AS engaged_n, 0 AS scroll, 0 AS scroll_n, 0 AS timed, 0 AS timed_n",
)
"""The sums behind time_on_page, scroll_depth and avg_duration (``measures``): their names,
and the zeros of a dialect query that computes none of them."""
ORDER_KEYS: Final = {
    "visitors": "visitors",
    "visits": "visits",
    "pageviews": "pageviews",
    "events": "events",
    "bounce_rate": "CASE WHEN measured = 0 THEN 0::float8 "
    "ELSE (100 * bounces)::float8 / measured END",
    "visit_duration": "CASE WHEN measured = 0 THEN 0::float8 "
    "ELSE duration::float8 / (1000 * measured) END",
    "views_per_visit": "CASE WHEN visits = 0 THEN 0::float8 ELSE pageviews::float8 / visits END",
    "load_time_p50": "coalesce(p50, 0::float8)",
    "load_time_p95": "coalesce(p95, 0::float8)",
    "time_on_page": "CASE WHEN engaged_n = 0 THEN 0::float8 "
    "ELSE engaged::float8 / (1000 * engaged_n) END",
    "scroll_depth": "CASE WHEN scroll_n = 0 THEN 0::float8 ELSE scroll::float8 / scroll_n END",
    "avg_duration": "CASE WHEN timed_n = 0 THEN 0::float8 "
    "ELSE timed::float8 / (1000 * timed_n) END",
}
"""The SQL that sorts breakdown rows by each metric (float8 is DOUBLE in DuckDB)."""


def order_by(metrics: Sequence[str]) -> str:
    """The ORDER BY terms of a breakdown before the value's: the first metric descending,
    then the second (``domain.stats.breakdown_order``)."""
    return ", ".join(f"{ORDER_KEYS[metric]} DESC" for metric in metrics[:2])


class Params:
    """Named query parameters: ``add`` stores a value and returns its placeholder, written
    as the dialect spells it (``$name`` for DuckDB, ``%(name)s`` for psycopg)."""

    def __init__(self, placeholder: str, **fixed: object) -> None:
        self.placeholder = placeholder
        self.values: dict[str, object] = dict(fixed)

    def add(self, value: object) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return self.placeholder.format(name)


def property_sql(
    prop: str,
    params: Params,
    field: str,
    *,
    props_value: Callable[[str], str],
    event_columns: Set[str],
    session_columns: Set[str],
) -> tuple[str, bool]:
    """The SQL value of a property (whitelisted), and whether it needs the visit row ``s``.

    ``props_value`` spells, in the dialect, the text of the props key behind a placeholder."""
    check_property(prop, field)
    if prop.startswith(PROP_PREFIX):
        return props_value(params.add(prop[len(PROP_PREFIX) :])), False
    if prop in SESSION_PROPERTIES:
        column = SESSION_PROPERTIES[prop]
        if column not in session_columns:
            raise QueryError(field, f"unknown property {prop!r}")
        return f"s.{column}", True
    column = EVENT_PROPERTIES[prop]
    if column not in event_columns:
        raise QueryError(field, f"unknown property {prop!r}")
    return f"e.{column}", False


def results(query: StatsQuery, row: Row | None) -> dict[str, float]:
    """The asked metrics from one row of ``stats_sql`` (None: a group with no events)."""
    if row is None:
        row = (None, 0, 0, 0, 0, 0, 0, 0, None, None, 0, 0, 0, 0, 0, 0)
    _, visitors, visits, pageviews, events, measured, bounces, duration, p50, p95 = row[:10]
    engaged, engaged_n, scroll, scroll_n, timed, timed_n = (int(v or 0) for v in row[10:16])
    return metric_values(
        query.metrics,
        visitors=int(visitors),
        visits=int(visits),
        pageviews=int(pageviews),
        events=int(events),
        measured=int(measured),
        bounces=int(bounces),
        duration_ms=int(duration),
        p50=0.0 if p50 is None else float(p50),
        p95=0.0 if p95 is None else float(p95),
        engaged_ms=engaged,
        engaged_n=engaged_n,
        scroll_sum=scroll,
        scroll_n=scroll_n,
        duration_sum=timed,
        duration_n=timed_n,
    )
