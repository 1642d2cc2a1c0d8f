"""The Stats API: aggregate, timeseries, breakdown, realtime, sites and data quality."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from hitstream.domain.stats import METRICS, PERIODS, StatsQuery, build_query
from hitstream.services.stats import StatsService
from hitstream.web.deps import QualityDep, StatsDep

router = APIRouter(prefix="/api/v1", tags=["stats"])

SiteId = Annotated[str, Query(min_length=1, max_length=100, description="The site to query")]
Period = Annotated[str, Query(description=f"One of {', '.join(PERIODS)}")]
From = Annotated[str | None, Query(alias="from", description="First day (custom), YYYY-MM-DD")]
To = Annotated[str | None, Query(description="Last day (custom, inclusive), YYYY-MM-DD")]
Metrics = Annotated[str | None, Query(description=f"Comma list of {', '.join(METRICS)}")]
Filters = Annotated[
    str | None,
    Query(description="Clauses joined by ';': property==a|b, property!=a, property~text"),
]
Tz = Annotated[str, Query(description="IANA time zone for days and buckets")]
Compare = Annotated[str | None, Query(description="previous_period to compare")]


def _query(stats: StatsService, **params: Any) -> StatsQuery:
    return build_query(now_ms=stats.now_ms(params.get("period")), **params)


@router.get("/stats/aggregate", summary="Totals of metrics over a period")
async def aggregate(
    stats: StatsDep,
    site_id: SiteId,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    metrics: Metrics = None,
    filters: Filters = None,
    tz: Tz = "UTC",
    compare: Compare = None,
) -> dict[str, Any]:
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


@router.get("/stats/timeseries", summary="Metrics per minute, hour or day")
async def timeseries(
    stats: StatsDep,
    site_id: SiteId,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    metrics: Metrics = None,
    filters: Filters = None,
    interval: Annotated[str | None, Query(description="minute, hour or day")] = None,
    tz: Tz = "UTC",
) -> dict[str, Any]:
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


@router.get("/stats/breakdown", summary="Metrics by the values of one property")
async def breakdown(
    stats: StatsDep,
    site_id: SiteId,
    property: Annotated[str, Query(description="page, source, country, prop:<key> ...")],
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    metrics: Metrics = None,
    filters: Filters = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    tz: Tz = "UTC",
) -> dict[str, Any]:
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


@router.get("/stats/realtime", summary="Current visitors: distinct visitors in the last 5 minutes")
async def realtime(stats: StatsDep, site_id: SiteId) -> dict[str, Any]:
    return await stats.realtime(site_id)


@router.get("/sites", summary="Sites that have sent events")
async def sites(stats: StatsDep) -> dict[str, Any]:
    return {"sites": await stats.sites()}


@router.get("/quality", summary="Events refused by the collector and dropped by the processor")
async def quality(quality: QualityDep, site_id: str | None = None) -> dict[str, Any]:
    return await quality(site_id)
