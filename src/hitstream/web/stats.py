"""The Stats API: aggregate, timeseries, breakdown, realtime, sites and data quality."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from hitstream.domain.access import Action
from hitstream.domain.goals import GOAL_PROPERTY
from hitstream.domain.stats import (
    EVENT_PROPERTIES,
    INTERVALS,
    PERIODS,
    PROP_PREFIX,
    QUERY_METRICS,
    SESSION_PROPERTIES,
    StatsQuery,
    build_query,
)
from hitstream.services.access import Caller, Gatekeeper
from hitstream.services.stats import StatsService
from hitstream.web.auth import SITE_RESPONSES, CallerDep, GateDep
from hitstream.web.deps import QualityDep, StatsDep

router = APIRouter(prefix="/api/v1", tags=["stats"])

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
    Query(max_length=200, description=f"Comma list of {', '.join(QUERY_METRICS)}"),
]
Filters = Annotated[
    str | None,
    Query(
        max_length=MAX_FILTERS_LENGTH,
        description="Clauses joined by ';': property==a|b, property!=a, property~text; "
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
        description="previous_period to compare",
        json_schema_extra={"enum": ["previous_period"]},
    ),
]
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
    return tz or (site.timezone if site is not None else "UTC")


def _query(stats: StatsService, **params: Any) -> StatsQuery:
    return build_query(now_ms=stats.now_ms(params.get("period")), **params)


@router.get("/stats/aggregate", summary="Totals of metrics over a period", responses=SITE_RESPONSES)
async def aggregate(
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
) -> dict[str, Any]:
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
    )
    return await stats.aggregate(query)


@router.get(
    "/stats/timeseries", summary="Metrics per minute, hour or day", responses=SITE_RESPONSES
)
async def timeseries(
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
) -> dict[str, Any]:
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
    return await stats.timeseries(query)


@router.get(
    "/stats/breakdown", summary="Metrics by the values of one property", responses=SITE_RESPONSES
)
async def breakdown(
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
) -> dict[str, Any]:
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
    return await stats.breakdown(query)


@router.get(
    "/stats/realtime",
    summary="Current visitors: distinct visitors in the last 5 minutes",
    responses=SITE_RESPONSES,
)
async def realtime(
    stats: StatsDep, caller: CallerDep, gate: GateDep, site_id: SiteId
) -> dict[str, Any]:
    await gate.check(caller.principal, Action.READ_STATS, site_id)
    return await stats.realtime(site_id)


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
