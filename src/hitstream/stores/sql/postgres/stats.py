"""Stats queries in PostgreSQL SQL, following the definitions in ``hitstream.domain.measures``.

One query per call. It returns, per group (the constant 0, a bucket start or a property value),
the integer parts that ``metric_values`` turns into metrics, so every store does the very same
float arithmetic; only percentiles come out of SQL (``percentile_cont``). Only the parts the
asked metrics need are computed.

- One scan of ``events`` (by the ``(site_id, ts)`` index or a partition seq scan) counts
  pageviews and events per (group, visitor, visit); distinct visitors and visits are then
  counted exactly over those far fewer rows with ``SELECT DISTINCT``, which PostgreSQL hashes.
  Measured at 900k events: hashing ~0.6 s, ``count(DISTINCT ...)`` (a sort per group) ~3.6 s.
  Without visits asked, the pass is keyed by (group, visitor) alone and its rows are counted
  as the visitors directly (20-25 % less time at 3 M events, ``benchmarks/RESULTS.md``).
  Percentiles take a second scan, and only when asked.
- Buckets: ``width_bucket(ts, starts)`` finds, by binary search over the exact bucket starts of
  ``bucket_starts`` (time-zone aware, DST-safe), the index of the last start at or before ts.
- Text semantics: values compare byte for byte (``=``, ``<> ALL``); ``~`` lowers the column
  with an ICU collation (full Unicode case mapping, as Python's ``str.lower``) and the needle
  in Python (``!~`` negates it); ``=~`` / ``!=~`` run PostgreSQL's own ``~`` / ``!~`` on the
  pattern as ``domain.patterns.to_postgres`` writes it (no capture, no back reference: the
  engine's DFA alone, linear in the value); breakdown rows sort ties by value under
  ``COLLATE "C"``: code point order.
- Every value travels as a parameter; column names come from whitelists only.
"""

from __future__ import annotations

from typing import Final

from hitstream.domain.events import FOLLOW_UP, EventType
from hitstream.domain.goals import GOAL_PROPERTY
from hitstream.domain.measures import check_filters, check_metrics, reads_engagement
from hitstream.domain.patterns import compile_pattern, to_postgres
from hitstream.domain.stats import Filter
from hitstream.domain.stats import StatsQuery as Query
from hitstream.errors import QueryError
from hitstream.stores.sql import goals
from hitstream.stores.sql.common import (
    COLUMNS,
    ENGAGEMENT_COLUMNS,
    EVENT_TEXT,
    SESSION_COLUMNS,
    Params,
    order_by,
    property_sql,
)

_PAGEVIEW: Final = f"'{EventType.PAGEVIEW.value}'"
_ENGAGEMENT: Final = f"'{EventType.ENGAGEMENT.value}'"
_EVENT_COLUMNS: Final = frozenset(EVENT_TEXT) - {"event_id", "site_id"}
_SESSION_COLUMNS: Final = frozenset(SESSION_COLUMNS) & {"entry_page", "exit_page"}


def _property(prop: str, params: Params, field: str) -> tuple[str, bool]:
    return property_sql(
        prop,
        params,
        field,
        props_value=lambda key: f"coalesce(e.props ->> {key}::text, '')",
        event_columns=_EVENT_COLUMNS,
        session_columns=_SESSION_COLUMNS,
    )


def _filter(flt: Filter, expr: str, params: Params, collation: str | None) -> str:
    if flt.op in ("=~", "!=~"):
        pattern = params.add(to_postgres(compile_pattern(flt.values[0])))
        return f"{expr} {'~' if flt.op == '=~' else '!~'} {pattern}::text"
    if flt.op in ("~", "!~"):
        collate = f' COLLATE "{collation}"' if collation else ""
        tests = [
            f"strpos(lower({expr}{collate}), {params.add(v.lower())}::text) > 0" for v in flt.values
        ]
        found = "(" + " OR ".join(tests) + ")" if tests else "FALSE"
        return found if flt.op == "~" else f"NOT {found}"
    if not flt.values:
        return "FALSE" if flt.op == "==" else "TRUE"
    values = params.add(list(flt.values))
    return (
        f"{expr} = ANY({values}::text[])" if flt.op == "==" else f"{expr} <> ALL({values}::text[])"
    )


def _goal(flt: Filter, query: Query, params: Params) -> str:
    return goals.goal_sql(
        flt,
        query.goals,
        params,
        prop=lambda name: _property(name, params, "filters")[0],
        text=lambda placeholder: f"{placeholder}::text",
        regex=lambda value, pattern: f"{value} ~ ('^(?:' || {pattern}::text || ')$')",
    )


def _condition(
    flt: Filter, query: Query, params: Params, collation: str | None
) -> tuple[str, bool]:
    """A filter clause's SQL, and whether it needs the visit row ``s``."""
    if flt.property == GOAL_PROPERTY:
        return _goal(flt, query, params), False
    expr, joined = _property(flt.property, params, "filters")
    return _filter(flt, expr, params, collation), joined


def funnel_sql(
    query: Query,
    steps: tuple[Filter, ...],
    window_ms: int | None,
    collation: str | None = None,
) -> tuple[str, dict[str, object]]:
    """Visitors per funnel step (``hitstream.stores.sql.goals.funnel_sql``)."""
    check_filters(query.filters)
    check_filters(steps)
    params = Params("%({})s", site=query.site_id, start=query.range.start, end=query.range.end)
    where = ["e.site_id = %(site)s::text", "e.ts >= %(start)s::bigint", "e.ts < %(end)s::bigint"]
    if not reads_engagement(query.metrics):  # measurements, not steps (decision 0018)
        where.append(f"e.type <> {_ENGAGEMENT}")
    needs_visit_row = False
    for flt in query.filters:
        sql, joined = _condition(flt, query, params, collation)
        needs_visit_row |= joined
        where.append(sql)
    flags = []
    for step in steps:
        sql, joined = _condition(step, query, params, collation)
        needs_visit_row |= joined
        flags.append(sql)
    # LEFT: a step on the visit row fails without one (NULL), the other steps still count
    join = (
        "LEFT JOIN sessions s ON s.site_id = e.site_id AND s.session_id = e.session_id"
        if needs_visit_row
        else ""
    )
    source = f"FROM events e {join} WHERE {' AND '.join(where)}"
    order = 'e.ts, e.event_id COLLATE "C"'
    return goals.funnel_sql(source, flags, window_ms, order), params.values


def _percentiles(wanted: set[str], g: str, source: str) -> str | None:
    """A CTE ``pc`` with the load-time percentiles per group, or None if none is asked."""
    parts = [
        f"percentile_cont({fraction}) WITHIN GROUP (ORDER BY e.load_time_ms::float8) AS {name}"
        for name, fraction in (("p50", 0.5), ("p95", 0.95))
        if f"load_time_{name}" in wanted
    ]
    if not parts:
        return None
    where = f"e.type = {_PAGEVIEW} AND e.load_time_ms IS NOT NULL"
    return f"pc AS (SELECT {g} AS g, {', '.join(parts)} {source} AND {where} GROUP BY 1)"


def _engagement_sums(wanted: set[str], counted: str) -> tuple[str, str]:
    """The sums behind time_on_page, scroll_depth and avg_duration: their parts per base row
    and their totals per group (both "" when none is asked)."""
    if not wanted & {"time_on_page", "scroll_depth", "avg_duration"}:
        return "", ""
    engagement = f" FILTER (WHERE e.type = {_ENGAGEMENT})"
    parts = {
        "engaged": f"sum(e.engaged_ms){engagement}",
        "engaged_n": f"count(e.engaged_ms) FILTER (WHERE e.type = {_ENGAGEMENT} "
        f"AND e.name <> '{FOLLOW_UP}')",
        "scroll": f"sum(e.scroll_depth){engagement}",
        "scroll_n": f"count(e.scroll_depth){engagement}",
        "timed": f"sum(e.duration_ms){counted}",
        "timed_n": f"count(e.duration_ms){counted}",
    }
    sums = "".join(f", {expr} AS {name}" for name, expr in parts.items())
    totals = "".join(f", coalesce(sum({name}), 0)::bigint AS {name}" for name in parts)
    return sums, totals


def stats_sql(
    query: Query,
    *,
    group: str | None = None,
    buckets: list[int] | None = None,
    collation: str | None = None,
) -> tuple[str, dict[str, object]]:
    """The query answering ``query`` per group, with the columns of ``COLUMNS``.

    ``group``: a property to break down by (rows ordered by the first metric, then value,
    ``limit`` of them); ``buckets``: bucket starts of a timeseries; neither: one aggregate row.
    ``collation``: the one ``~`` filters lower with (None: the database default).
    """
    check_metrics(query.metrics)
    check_filters(query.filters)
    params = Params("%({})s", site=query.site_id, start=query.range.start, end=query.range.end)
    wanted = set(query.metrics)
    where = ["e.site_id = %(site)s::text", "e.ts >= %(start)s::bigint", "e.ts < %(end)s::bigint"]
    needs_visit_row = False
    g = "0"
    if group is not None:
        g, needs_visit_row = _property(group, params, "property")
    if buckets:
        starts = params.add(buckets)
        g = f"({starts}::bigint[])[width_bucket(e.ts, {starts}::bigint[])]"
    for flt in query.filters:
        if flt.property == GOAL_PROPERTY:
            where.append(_goal(flt, query, params))
            continue
        expr, joined = _property(flt.property, params, "filters")
        needs_visit_row |= joined
        where.append(_filter(flt, expr, params, collation))
    join = (
        "JOIN sessions s ON s.site_id = e.site_id AND s.session_id = e.session_id"
        if needs_visit_row
        else ""
    )
    engagement = reads_engagement(wanted)
    if not engagement:  # engagement events are not in the set at all
        where.append(f"e.type <> {_ENGAGEMENT}")
    source = f"FROM events e {join} WHERE {' AND '.join(where)}"
    measured = bool(wanted & {"bounce_rate", "visit_duration"})
    by_visit = measured or bool(wanted & {"visits", "views_per_visit"})
    # one pass over the events: counts per (group, visitor, visit); the distinct visitors
    # and visits of a group are then counted over these far fewer rows (with engagement
    # events in the set, only over the rows with another event: n > 0)
    keys = ["g", *(["visitor_id"] if "visitors" in wanted else [])]
    keys += ["session_id"] if by_visit else []
    columns = ", ".join([f"{g} AS g"] + [f"e.{key}" for key in keys[1:]])
    counted = f" FILTER (WHERE e.type <> {_ENGAGEMENT})" if engagement else ""
    active = " WHERE n > 0" if engagement else ""
    sums, totals = _engagement_sums(wanted, counted)
    # keyed by (g, visitor_id) alone, base has one row per distinct visitor of a group: ev
    # counts them in its own pass (no second hash of every (group, visitor) pair)
    counted_visitors = ""
    if "visitors" in wanted and not by_visit:
        counted_visitors = f", count(*){' FILTER (WHERE n > 0)' if engagement else ''} AS visitors"
    ctes = [
        f"base AS (SELECT {columns}, count(*) FILTER (WHERE e.type = {_PAGEVIEW}) AS pv, "
        f"count(*){counted} AS n{sums} {source} "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))})",
        "ev AS (SELECT g, sum(pv)::bigint AS pageviews, sum(n)::bigint AS events"
        f"{totals}{counted_visitors} FROM base GROUP BY g)",
    ]
    visitors, joins = "0::bigint", []
    if counted_visitors:
        visitors = "ev.visitors"
    elif "visitors" in wanted:
        ctes.append(
            "vi AS (SELECT g, count(*) AS visitors "
            f"FROM (SELECT DISTINCT g, visitor_id FROM base{active}) d GROUP BY g)"
        )
        visitors, joins = "coalesce(vi.visitors, 0)", ["LEFT JOIN vi ON vi.g = ev.g"]
    visit_parts = (
        "0::bigint AS visits, 0::bigint AS measured, 0::bigint AS bounces, 0::bigint AS duration"
    )
    if by_visit:
        # the distinct (group, visit) pairs give the visits and, joined to the visit rows,
        # the bounces and durations (a visit without a row counts but is not measured)
        measures = (
            "count(x.session_id) AS measured, "
            "count(*) FILTER (WHERE x.pageviews <= 1 AND x.events <= 1) AS bounces, "
            "coalesce(sum(x.last_seen - x.started_at), 0) AS duration"
            if measured
            else "0::bigint AS measured, 0::bigint AS bounces, 0::numeric AS duration"
        )
        rows = (
            "LEFT JOIN sessions x ON x.site_id = %(site)s::text AND x.session_id = d.session_id"
            if measured
            else ""
        )
        also = " AND n > 0" if engagement else ""
        ctes.append(
            f"vs AS (SELECT d.g, count(*) AS visits, {measures} "
            f"FROM (SELECT DISTINCT g, session_id FROM base WHERE session_id <> ''{also}) d "
            f"{rows} GROUP BY d.g)"
        )
        visit_parts = (
            "coalesce(vs.visits, 0) AS visits, coalesce(vs.measured, 0) AS measured, "
            "coalesce(vs.bounces, 0) AS bounces, coalesce(vs.duration, 0) AS duration"
        )
        joins.append("LEFT JOIN vs ON vs.g = ev.g")
    percentiles = _percentiles(wanted, g, source)
    p50 = p95 = "NULL::float8"
    if percentiles is not None:
        ctes.append(percentiles)
        joins.append("LEFT JOIN pc ON pc.g = ev.g")
        p50 = "pc.p50" if "load_time_p50" in wanted else p50
        p95 = "pc.p95" if "load_time_p95" in wanted else p95
    engaged = ENGAGEMENT_COLUMNS[0] if totals else ENGAGEMENT_COLUMNS[1]
    sql = (
        f"WITH {', '.join(ctes)} SELECT ev.g AS g, {visitors} AS visitors, {visit_parts}, "
        f"ev.pageviews, ev.events, {p50} AS p50, {p95} AS p95, {engaged} "
        f"FROM ev {' '.join(joins)}"
    )
    if group is not None:
        if not query.metrics:
            raise QueryError("metrics", "a breakdown needs at least one metric")
        order = order_by(query.metrics)
        limit = params.add(query.limit)
        sql = f'SELECT {COLUMNS} FROM ({sql}) r ORDER BY {order}, g COLLATE "C" ASC LIMIT {limit}'
    else:
        sql = f"SELECT {COLUMNS} FROM ({sql}) r"
    return sql, params.values
