"""The Stats API: aggregate, timeseries, breakdown, realtime, sites and data quality."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from hitstream.domain.access import Action
from hitstream.domain.errors import QueryError
from hitstream.domain.exports import stats_table, to_csv
from hitstream.domain.goals import GOAL_PROPERTY
from hitstream.domain.stats import (
    COMPARISONS,
    EVENT_PROPERTIES,
    INTERVALS,
    PERIODS,
    PROP_PREFIX,
    QUERY_METRICS,
    SESSION_PROPERTIES,
    StatsQuery,
    build_query,
    check_zone,
)
from hitstream.services.access import Caller, Gatekeeper
from hitstream.services.exports import dashboard_csvs, zip_name, zipped
from hitstream.services.stats import StatsService
from hitstream.web.auth import SITE_RESPONSES, CallerDep, GateDep
from hitstream.web.deps import QualityDep, StatsDep
from hitstream.web.params import known_parameters

router = APIRouter(prefix="/api/v1", tags=["stats"], dependencies=[Depends(known_parameters)])

MAX_FILTERS_LENGTH = 2000
"""Filters are the one free-text parameter: bounded so that a query stays cheap to plan."""


SiteId = Annotated[
    str,
    Query(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]*$",
        description="The site to query",
    ),
]
Period = Annotated[
    str,
    Query(
        max_length=16,
        description=f"One of {', '.join(PERIODS)}",
        json_schema_extra={"enum": list(PERIODS)},
    ),
]
From = Annotated[
    str | None,
    Query(alias="from", max_length=10, description="First day (custom), YYYY-MM-DD"),
]
To = Annotated[
    str | None, Query(max_length=10, description="Last day (custom, inclusive), YYYY-MM-DD")
]
Metrics = Annotated[
    str | None,
    Query(
        max_length=200,
        description=f"Comma list of {', '.join(QUERY_METRICS)}. time_on_page: mean engaged "
        "seconds per pageview (engagement events); scroll_depth: mean deepest scroll, %; "
        "avg_duration: mean duration_ms of the matching events that carry one, in seconds",
    ),
]
Filters = Annotated[
    str | None,
    Query(
        max_length=MAX_FILTERS_LENGTH,
        description="Clauses joined by ';': property==a|b (is), != (is not), ~ (contains), "
        "!~ (does not contain), =~ (matches a pattern), !=~ (does not match); "
        "goal==Signup|Pricing keeps the events that complete those goals",
    ),
]
Tz = Annotated[
    str | None,
    Query(min_length=1, max_length=64, description="IANA time zone (default: the site's)"),
]
Compare = Annotated[
    str | None,
    Query(
        max_length=32,
        description="Compare with previous_period, year_over_year or a custom range "
        "(compare_from, compare_to)",
        json_schema_extra={"enum": list(COMPARISONS)},
    ),
]
CompareFrom = Annotated[
    str | None,
    Query(max_length=10, description="First day of the compare=custom range, YYYY-MM-DD"),
]
CompareTo = Annotated[
    str | None,
    Query(max_length=10, description="Last day (inclusive) of the compare=custom range"),
]
Format = Annotated[
    str | None,
    Query(
        max_length=8,
        description="json (default) or csv; Accept: text/csv asks for CSV too",
        json_schema_extra={"enum": ["json", "csv"]},
    ),
]
CSV_RESPONSES: dict[int | str, dict[str, Any]] = {
    **SITE_RESPONSES,
    200: {
        "description": "The answer as JSON, or as CSV with format=csv or Accept: text/csv "
        "(a header row, one row per bucket or value; text cells starting with = + - @ get "
        "a leading ')",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    },
}
Interval = Annotated[
    str | None,
    Query(
        max_length=16,
        description=f"One of {', '.join(INTERVALS)}",
        json_schema_extra={"enum": list(INTERVALS)},
    ),
]
Property = Annotated[
    str,
    Query(
        min_length=1,
        max_length=70,
        description="page, source, country, prop:<key> ..., goal (a row per goal)",
        json_schema_extra={
            "anyOf": [
                {"enum": sorted({*EVENT_PROPERTIES, *SESSION_PROPERTIES, GOAL_PROPERTY})},
                {"pattern": f"^{PROP_PREFIX}[\\s\\S]{{1,64}}$"},
            ]
        },
    ),
]


async def _readable(caller: Caller, gate: Gatekeeper, site_id: str, tz: str | None) -> str:
    """Check that the caller may read the site; the time zone to use (the site's default)."""
    site = await gate.check(caller.principal, Action.READ_STATS, site_id)
    if tz:  # one given must name a place (a site's stored zone is read as it is)
        return check_zone(tz)
    return site.timezone if site is not None else "UTC"


def _query(stats: StatsService, **params: Any) -> StatsQuery:
    if params.get("period") == "":  # absent is the default; empty is a mistake
        raise QueryError("period", f"must be one of {', '.join(PERIODS)}")
    if params.get("metrics") == "":
        raise QueryError("metrics", "names no metric (leave it out for the default ones)")
    return build_query(now_ms=stats.now_ms(params.get("period")), **params)


def _wants_csv(request: Request, format: str | None) -> bool:
    if format not in (None, "", "json", "csv"):
        raise QueryError("format", "must be json or csv")
    if format:
        return format == "csv"
    return "text/csv" in request.headers.get("accept", "").lower()


def _csv_file(site_id: str, name: str, text: str) -> Response:
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{site_id}-{name}.csv"'},
    )


def _answer(
    request: Request, format: str | None, kind: str, query: StatsQuery, body: dict[str, Any]
) -> Any:
    """The JSON answer, or its CSV (``domain.exports``) when asked for."""
    if not _wants_csv(request, format):
        return body
    text = to_csv(*stats_table(kind, body, query.metrics, query.tz))
    return _csv_file(query.site_id, kind, text)


@router.get(
    "/stats/aggregate",
    summary="Totals of metrics over a period",
    responses=CSV_RESPONSES,
    response_model=dict[str, Any],
)
async def aggregate(
    request: Request,
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    site_id: SiteId,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    metrics: Metrics = None,
    filters: Filters = None,
    tz: Tz = None,
    compare: Compare = None,
    compare_from: CompareFrom = None,
    compare_to: CompareTo = None,
    format: Format = None,
) -> Any:
    tz = await _readable(caller, gate, site_id, tz)
    query = _query(
        stats,
        site_id=site_id,
        period=period,
        date_from=date_from,
        date_to=to,
        metrics=metrics,
        filters=filters,
        tz=tz,
        compare=compare,
        compare_from=compare_from,
        compare_to=compare_to,
    )
    _wants_csv(request, format)
    return _answer(request, format, "aggregate", query, await stats.aggregate(query))


@router.get("/stats/timeseries", summary="Metrics per minute, hour or day", responses=CSV_RESPONSES)
async def timeseries(
    request: Request,
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    site_id: SiteId,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    metrics: Metrics = None,
    filters: Filters = None,
    interval: Interval = None,
    tz: Tz = None,
    format: Format = None,
) -> Any:
    tz = await _readable(caller, gate, site_id, tz)
    query = _query(
        stats,
        site_id=site_id,
        period=period,
        date_from=date_from,
        date_to=to,
        metrics=metrics,
        filters=filters,
        interval=interval,
        tz=tz,
    )
    _wants_csv(request, format)
    return _answer(request, format, "timeseries", query, await stats.timeseries(query))


@router.get(
    "/stats/breakdown",
    summary="Metrics by the values of one property",
    responses=CSV_RESPONSES,
    response_model=dict[str, Any],
)
async def breakdown(
    request: Request,
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    site_id: SiteId,
    property: Property,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    metrics: Metrics = None,
    filters: Filters = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tz: Tz = None,
    format: Format = None,
) -> Any:
    tz = await _readable(caller, gate, site_id, tz)
    query = _query(
        stats,
        site_id=site_id,
        period=period,
        date_from=date_from,
        date_to=to,
        metrics=metrics,
        filters=filters,
        property=property,
        limit=limit,
        tz=tz,
    )
    _wants_csv(request, format)
    return _answer(request, format, "breakdown", query, await stats.breakdown(query))


@router.get(
    "/stats/export",
    summary="The dashboard's tables for a period as CSV files in one ZIP",
    response_class=Response,
    responses={
        **SITE_RESPONSES,
        200: {
            "description": "A ZIP of visitors.csv (timeseries), pages.csv, entry_pages.csv, "
            "exit_pages.csv, sources.csv, channels.csv, referrers.csv, utm_*.csv, "
            "countries.csv, browsers.csv, operating_systems.csv, devices.csv, "
            "hostnames.csv, custom_events.csv and goals.csv; named "
            "<site>-<first day>_<last day>.zip",
            "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}},
        },
    },
)
async def export(
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    site_id: SiteId,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    filters: Filters = None,
    interval: Interval = None,
    tz: Tz = None,
) -> Response:
    tz = await _readable(caller, gate, site_id, tz)
    query = _query(
        stats,
        site_id=site_id,
        period=period,
        date_from=date_from,
        date_to=to,
        filters=filters,
        interval=interval,
        tz=tz,
    )
    body = zipped(await dashboard_csvs(stats, query))
    name = zip_name(site_id, query)
    return Response(
        body,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


REALTIME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["site_id", "visitors", "active_users", "events_per_minute"],
    "properties": {
        "site_id": {"type": "string"},
        "visitors": {"type": "integer", "minimum": 0, "description": "current visitors"},
        "active_users": {
            "type": "integer",
            "minimum": 0,
            "description": "visitors active in the last 5 minutes (an identified user is one)",
        },
        "events_per_minute": {
            "type": "number",
            "minimum": 0,
            "description": "events of the last 5 minutes per minute (engagement excluded)",
        },
    },
}


@router.get(
    "/stats/realtime",
    summary="Now: current visitors, active users and events per minute (last 5 minutes)",
    description="The live figures of the last 5 minutes, also pushed in every live frame "
    "(`realtime`): `visitors` and `active_users` (the seeds' name for the same count: "
    "distinct visitors with an event), and `events_per_minute` (events, engagement "
    "measurements excluded, divided by 5); of the events that pass `filters`, as everywhere.",
    responses={
        **SITE_RESPONSES,
        200: {
            "description": "The figures",
            "content": {"application/json": {"schema": REALTIME_SCHEMA}},
        },
    },
)
async def realtime(
    stats: StatsDep, caller: CallerDep, gate: GateDep, site_id: SiteId, filters: Filters = None
) -> dict[str, Any]:
    await gate.check(caller.principal, Action.READ_STATS, site_id)
    query = _query(stats, site_id=site_id, period="realtime", filters=filters)
    return await stats.realtime(site_id, query.filters)


@router.get(
    "/quality",
    summary="Events refused by the collector and dropped by the processor",
    responses=SITE_RESPONSES,
)
async def quality(
    quality: QualityDep,
    caller: CallerDep,
    gate: GateDep,
    site_id: Annotated[
        str | None,
        Query(min_length=1, max_length=100, description="One site (all if absent: admins)"),
    ] = None,
) -> dict[str, Any]:
    if site_id is None:
        gate.require(caller.principal, Action.READ_ALL)
    else:
        await gate.check(caller.principal, Action.READ_STATS, site_id)
    return await quality(site_id)
