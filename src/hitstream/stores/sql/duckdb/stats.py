"""Stats queries in DuckDB SQL, following the definitions in ``hitstream.domain.measures``.

One query per call. It returns, per group (the constant 0, a bucket start or a property value),
the integer parts that ``metric_values`` turns into metrics, so both stores do the very same
float arithmetic; only percentiles come out of SQL (``quantile_cont``). Only the parts the asked
metrics need are computed: distinct counts over ~1M strings are what a query costs.

Bucketing follows ``bucket_starts`` (time-zone aware) without sorting the events: a bucket index
is guessed as ``(ts - first) // step`` and corrected by one against the exact list of starts.
That is exact whenever every start lies within half a step of ``first + i * step``, which holds
for every real zone (DST moves a day by an hour); otherwise an ASOF join does it.
"""

from __future__ import annotations

from typing import Final

from hitstream.domain.events import FOLLOW_UP, EventType
from hitstream.domain.goals import GOAL_PROPERTY
from hitstream.domain.measures import check_filters, check_metrics, reads_engagement
from hitstream.domain.patterns import compile_pattern, to_re2
from hitstream.domain.stats import Filter
from hitstream.domain.stats import StatsQuery as Query
from hitstream.errors import QueryError
from hitstream.stores.sql import goals
from hitstream.stores.sql.common import (
    COLUMNS,
    ENGAGEMENT_COLUMNS,
    EVENT_TEXT,
    Params,
    order_by,
    property_sql,
)

_PAGEVIEW: Final = f"'{EventType.PAGEVIEW.value}'"
_ENGAGEMENT: Final = f"'{EventType.ENGAGEMENT.value}'"
_FOLLOW_UP: Final = f"'{FOLLOW_UP}'"  # no first report: not in engaged_n (decision 0063)
_FILTERABLE: Final = frozenset(EVENT_TEXT) - {"event_id", "site_id"}
_SESSION_COLUMNS: Final = frozenset({"entry_page", "exit_page"})
_STEPS: Final = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}


def _property(prop: str, params: Params, field: str) -> tuple[str, bool]:
    return property_sql(
        prop,
        params,
        field,
        props_value=lambda key: f"coalesce(e.props[{key}], '')",
        event_columns=_FILTERABLE,
        session_columns=_SESSION_COLUMNS,
    )


def _filter(flt: Filter, expr: str, params: Params) -> str:
    if flt.op in ("=~", "!=~"):
        pattern = params.add(to_re2(compile_pattern(flt.values[0])))
        return f"{'' if flt.op == '=~' else 'NOT '}regexp_matches({expr}, {pattern})"
    if flt.op in ("~", "!~"):
        tests = [f"contains(lower({expr}), lower({params.add(v)}))" for v in flt.values]
        found = "(" + " OR ".join(tests) + ")" if tests else "FALSE"
        return found if flt.op == "~" else f"NOT {found}"
    if not flt.values:
        return "FALSE" if flt.op == "==" else "TRUE"
    listed = ", ".join(params.add(v) for v in flt.values)
    return f"{expr} {'IN' if flt.op == '==' else 'NOT IN'} ({listed})"


def _goal(flt: Filter, query: Query, params: Params) -> str:
    return goals.goal_sql(
        flt,
        query.goals,
        params,
        prop=lambda name: _property(name, params, "filters")[0],
        text=lambda placeholder: placeholder,
        regex=lambda value, pattern: f"regexp_full_match({value}, {pattern})",
    )


def _condition(flt: Filter, query: Query, params: Params) -> tuple[str, bool]:
    """A filter clause's SQL, and whether it needs the visit row ``s``."""
    if flt.property == GOAL_PROPERTY:
        return _goal(flt, query, params), False
    expr, joined = _property(flt.property, params, "filters")
    return _filter(flt, expr, params), joined


def funnel_sql(
    query: Query, steps: tuple[Filter, ...], window_ms: int | None
) -> tuple[str, dict[str, object]]:
    """Visitors per funnel step (``hitstream.stores.sql.goals.funnel_sql``)."""
    check_filters(query.filters)
    check_filters(steps)
    params = Params("${}", site=query.site_id, start=query.range.start, end=query.range.end)
    where = ["e.site_id = $site", "e.ts >= $start", "e.ts < $end"]
    if not reads_engagement(query.metrics):  # measurements, not steps (decision 0018)
        where.append(f"e.type <> {_ENGAGEMENT}")
    needs_visit_row = False
    for flt in query.filters:
        sql, joined = _condition(flt, query, params)
        needs_visit_row |= joined
        where.append(sql)
    flags = []
    for step in steps:
        sql, joined = _condition(step, query, params)
        needs_visit_row |= joined
        flags.append(sql)
    # LEFT: a step on the visit row fails without one (NULL), the other steps still count
    join = (
        "LEFT JOIN sessions s ON s.site_id = e.site_id AND s.session_id = e.session_id"
        if needs_visit_row
        else ""
    )
    source = f"FROM events e {join} WHERE {' AND '.join(where)}"
    return goals.funnel_sql(source, flags, window_ms, "e.ts, e.event_id"), params.values


def _bucket(starts: list[int], interval: str, params: Params, joins: list[str]) -> str:
    """The SQL bucket start of ``e.ts``; see the module docstring."""
    step = _STEPS.get(interval, _STEPS["day"])
    first = starts[0]
    if all(2 * abs(s - first - i * step) < step for i, s in enumerate(starts)):
        s = params.add(starts)
        k = f"least(len({s}), greatest(1, (e.ts - {params.add(first)}) // {params.add(step)} + 1))"
        return (
            f"CASE WHEN e.ts < {s}[{k}] THEN {s}[{k} - 1] "
            f"WHEN {k} < len({s}) AND e.ts >= {s}[{k} + 1] THEN {s}[{k} + 1] ELSE {s}[{k}] END"
        )
    joins.append(
        f"ASOF JOIN (SELECT unnest({params.add(starts)}::BIGINT[]) AS b) bk ON e.ts >= bk.b"
    )
    return "bk.b"


def _event_parts(
    wanted: set[str], visitor: str, pageview: str, load_time: str, counted: str = ""
) -> str:
    """visitors, pageviews, events, p50, p95 over the events of a group; ``counted``: the
    condition that leaves engagement events out (empty: the set holds none)."""
    only = f" FILTER (WHERE {counted})" if counted else ""
    parts = {
        "visitors": f"count(DISTINCT {visitor}){only}" if "visitors" in wanted else "0",
        "pageviews": f"count(*) FILTER (WHERE {pageview})",
        "events": f"count(*){only}",
    }
    for name, fraction in (("p50", 0.5), ("p95", 0.95)):
        parts[name] = (
            f"quantile_cont({load_time}, {fraction}) FILTER (WHERE {pageview})"
            if f"load_time_{name}" in wanted
            else "NULL::DOUBLE"
        )
    return ", ".join(f"{expr} AS {name}" for name, expr in parts.items())


def _engagement_parts(wanted: set[str], p: str, counted: str) -> str:
    """The sums and counts behind time_on_page, scroll_depth and avg_duration (columns of
    ``p``, the events' alias or ""), zeros for those not asked."""
    engagement = f"{p}type = {_ENGAGEMENT}"
    only = f" FILTER (WHERE {counted})" if counted else ""
    parts = {
        "engaged": f"sum({p}engaged_ms) FILTER (WHERE {engagement})",
        "engaged_n": f"count({p}engaged_ms) "
        f"FILTER (WHERE {engagement} AND {p}name <> {_FOLLOW_UP})",
    }
    if "time_on_page" not in wanted:
        parts = {name: "0" for name in parts}
    parts["scroll"] = f"sum({p}scroll_depth) FILTER (WHERE {engagement})"
    parts["scroll_n"] = f"count({p}scroll_depth) FILTER (WHERE {engagement})"
    if "scroll_depth" not in wanted:
        parts["scroll"] = parts["scroll_n"] = "0"
    parts["timed"] = f"sum({p}duration_ms){only}" if "avg_duration" in wanted else "0"
    parts["timed_n"] = f"count({p}duration_ms){only}" if "avg_duration" in wanted else "0"
    return ", ".join(f"{expr} AS {name}" for name, expr in parts.items())


def stats_sql(
    query: Query, *, group: str | None = None, buckets: list[int] | None = None
) -> tuple[str, dict[str, object]]:
    """The query answering ``query`` per group, with the columns of ``COLUMNS``.

    ``group``: a property to break down by (rows ordered by the first metric, then value,
    ``limit`` of them); ``buckets``: bucket starts of a timeseries; neither: one aggregate row.
    """
    check_metrics(query.metrics)
    check_filters(query.filters)
    params = Params("${}", site=query.site_id, start=query.range.start, end=query.range.end)
    wanted = set(query.metrics)
    joins: list[str] = []
    where = ["e.site_id = $site", "e.ts >= $start", "e.ts < $end"]
    needs_visit_row = False
    g = "0"
    if group is not None:
        g, needs_visit_row = _property(group, params, "property")
    if buckets:
        g = _bucket(buckets, query.interval, params, joins)
    for flt in query.filters:
        if flt.property == GOAL_PROPERTY:
            where.append(_goal(flt, query, params))
            continue
        expr, joined = _property(flt.property, params, "filters")
        needs_visit_row |= joined
        where.append(_filter(flt, expr, params))
    if needs_visit_row:
        joins.insert(0, "JOIN sessions s ON s.site_id = e.site_id AND s.session_id = e.session_id")

    counted = ""
    if reads_engagement(wanted):
        counted = f"e.type <> {_ENGAGEMENT}"
    else:  # engagement events are not in the set at all
        where.append(f"e.type <> {_ENGAGEMENT}")
    from_events = f"FROM events e {' '.join(joins)} WHERE {' AND '.join(where)}"
    names = ENGAGEMENT_COLUMNS[0]
    measured = bool(wanted & {"bounce_rate", "visit_duration"})
    if not measured and not wanted & {"visits", "views_per_visit"}:
        parts = _event_parts(
            wanted, "e.visitor_id", f"e.type = {_PAGEVIEW}", "e.load_time_ms", counted
        )
        sql = (
            "SELECT g, visitors, 0 AS visits, pageviews, events, 0 AS measured, 0 AS bounces, "
            f"0 AS duration, p50, p95, {names} FROM (SELECT {g} AS g, {parts}, "
            f"{_engagement_parts(wanted, 'e.', counted)} {from_events} GROUP BY 1)"
        )
    else:
        # one pass over the events; the distinct (group, visit) pairs give the visits and,
        # joined to the visit rows, the bounces and durations
        measures = (
            "count(x.session_id) AS measured, "
            "count(*) FILTER (WHERE x.pageviews <= 1 AND x.events <= 1) AS bounces, "
            "coalesce(sum(x.last_seen - x.started_at), 0) AS duration"
            if measured
            else "0 AS measured, 0 AS bounces, 0 AS duration"
        )
        visit_rows = (
            "LEFT JOIN sessions x ON x.site_id = $site AND x.session_id = d.session_id"
            if measured
            else ""
        )
        # with engagement events in the set, ``e_counted`` marks the others
        flag = "e_counted" if counted else ""
        kept = " AND e_counted" if counted else ""
        m_counted = f", {counted} AS e_counted" if counted else ""
        ev_parts = _event_parts(wanted, "visitor_id", "pageview", "load_time_ms", flag)
        more = (
            ", e.type, e.name, e.engaged_ms, e.scroll_depth, e.duration_ms"
            if wanted & {"time_on_page", "scroll_depth", "avg_duration"}
            else ""
        )
        sql = (
            f"WITH m AS MATERIALIZED (SELECT {g} AS g, e.visitor_id, e.session_id, "
            f"e.type = {_PAGEVIEW} AS pageview, e.load_time_ms{more}{m_counted} "
            f"{from_events}), "
            f"ev AS (SELECT g, {ev_parts}, {_engagement_parts(wanted, '', flag)} "
            "FROM m GROUP BY g), "
            f"vs AS (SELECT d.g, count(*) AS visits, {measures} "
            f"FROM (SELECT DISTINCT g, session_id FROM m WHERE session_id <> ''{kept}) d "
            f"{visit_rows} GROUP BY d.g) "
            "SELECT ev.g, visitors, coalesce(visits, 0) AS visits, pageviews, events, "
            "coalesce(measured, 0) AS measured, coalesce(bounces, 0) AS bounces, "
            f"coalesce(duration, 0) AS duration, p50, p95, {names} "
            "FROM ev LEFT JOIN vs ON vs.g = ev.g"
        )
    if group is not None:
        if not query.metrics:
            raise QueryError("metrics", "a breakdown needs at least one metric")
        order = order_by(query.metrics)
        limit = params.add(query.limit)
        sql = f"SELECT {COLUMNS} FROM ({sql}) ORDER BY {order}, g ASC LIMIT {limit}"
    return sql, params.values
