"""The seeds' read endpoints, each answered from Stats API queries (the same service, cache
and store): ``GET /analytics``, ``/stats``, ``/analytics/events``, ``/api/stats`` and the
JSON ``/metrics`` (``metrics_json``, which ``web.ops`` calls when a client asks for JSON).

Every read asks the gatekeeper first, as the Stats API does: a key, the dashboard's login,
a shared link's ``auth``, or nothing for a public site.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request

from hitstream.domain.access import Action
from hitstream.domain.errors import QueryError
from hitstream.domain.stats import PERIODS, REALTIME_WINDOW_MS, build_query, parse_day
from hitstream.services.access import Caller, Gatekeeper
from hitstream.services.json_body import BodyProblem
from hitstream.services.json_body import decode as decode_json
from hitstream.services.stats import StatsService
from hitstream.web.auth import SITE_RESPONSES, CallerDep, GateDep, resolve
from hitstream.web.collect import read_capped_body
from hitstream.web.compat.seed_sites import configured_site
from hitstream.web.deps import StatsDep, services_of
from hitstream.web.encoding import EncodingProblem

router = APIRouter(tags=["compat"])

JSON = dict[str, Any]
SEED_NAMES: Final = {"pageview": "page_view"}
"""Canonical event types the seeds name otherwise."""
TOP: Final = 10
MAX_BODY: Final = 4096

Period = Annotated[
    str,
    Query(max_length=16, description=f"One of {', '.join(PERIODS)}"),
]
From = Annotated[str | None, Query(alias="from", max_length=10, description="custom: first day")]
SiteParam = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=100,
        description="The site to read (default: the one configured for this endpoint)",
    ),
]
To = Annotated[str | None, Query(max_length=10, description="custom: last day (inclusive)")]


class Reader:
    """Stats queries for one site, in its time zone, over one period."""

    def __init__(
        self,
        stats: StatsService,
        site_id: str,
        tz: str,
        period: str,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> None:
        self.stats, self.site_id, self.tz = stats, site_id, tz
        self.period, self.date_from, self.date_to = period, date_from, date_to

    def _query(self, period: str | None = None, **params: Any) -> Any:
        period = period or self.period
        custom = period == "custom"  # a section of its own period (realtime) takes no dates
        return build_query(
            site_id=self.site_id,
            now_ms=self.stats.now_ms(period),
            period=period,
            date_from=self.date_from if custom else None,
            date_to=self.date_to if custom else None,
            tz=self.tz,
            **params,
        )

    async def batch(self, *asks: tuple[str, JSON]) -> list[JSON]:
        """The answers of ``asks`` (``aggregate``, ``breakdown`` or ``timeseries`` with their
        query parameters), all at one data version of the site (one ``answer_all``): the
        parts of one answer agree (a total and the rows it sums were read apart before, and
        an event stored between them made them differ)."""
        built = [(kind, self._query(**params)) for kind, params in asks]
        _, bodies = await self.stats.answer_all(self.site_id, built)  # type: ignore[arg-type]
        return bodies

    async def totals(self, metrics: str, filters: str | None = None, **kw: Any) -> JSON:
        answer = await self.stats.aggregate(self._query(metrics=metrics, filters=filters, **kw))
        return {name: entry["value"] for name, entry in answer["results"].items()}

    async def rows(
        self, prop: str, metrics: str, filters: str | None = None, limit: int = TOP
    ) -> list[JSON]:
        query = self._query(property=prop, metrics=metrics, filters=filters, limit=limit)
        results: list[JSON] = (await self.stats.breakdown(query))["results"]
        return results

    async def series(self, metrics: str, interval: str) -> list[JSON]:
        query = self._query(metrics=metrics, interval=interval)
        points: list[JSON] = (await self.stats.timeseries(query))["results"]
        return points


def _values(body: JSON) -> JSON:
    """An aggregate answer's metric -> value."""
    return {name: entry["value"] for name, entry in body["results"].items()}


def _rows(body: JSON) -> list[JSON]:
    rows: list[JSON] = body["results"]
    return rows


TYPE_ASKS: Final = (
    ("breakdown", {"property": "event_type", "metrics": "events", "limit": 10}),
    (
        "breakdown",
        {
            "property": "event_name",
            "metrics": "events",
            "filters": "event_type==custom",
            "limit": 1000,
        },
    ),
)
"""The reads of ``events_by_type``: events by type, and custom events by name."""


def events_by_type(types: JSON, names: JSON) -> dict[str, int]:
    """Events per seed type name (page_view, click, session, and custom events by name), of
    the answers to ``TYPE_ASKS``."""
    counts: dict[str, int] = {}
    for row in _rows(types):
        kind = str(row["value"])
        if kind != "custom" and row["events"]:
            counts[SEED_NAMES.get(kind, kind)] = int(row["events"])
    for row in _rows(names):
        if row["events"]:
            counts[row["value"]] = counts.get(row["value"], 0) + int(row["events"])
    return counts


async def _site(
    conn: Request, caller: Caller, gate: Gatekeeper, family: str, given: str | None = None
) -> tuple[str, str]:
    """The site (given or configured) if the caller may read it, and its time zone."""
    site_id = given or configured_site(conn, family)
    site = await gate.check(caller.principal, Action.READ_STATS, site_id)
    return site_id, site.timezone if site is not None else "UTC"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat().replace("+00:00", "Z")


def _now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def analytics_body(reader: Reader) -> JSON:
    """Seed 000's analytics snapshot (``GET /analytics`` and the ``/ws`` frames)."""
    totals, active, pages, sources, devices, browsers, hours, types, names = await reader.batch(
        ("aggregate", {"metrics": "events,visitors,load_time_p50,load_time_p95,pageviews"}),
        ("aggregate", {"metrics": "visits", "period": "realtime"}),
        (
            "breakdown",
            {
                "property": "page",
                "metrics": "pageviews,visitors",
                "filters": "event_type==pageview",
                "limit": TOP,
            },
        ),
        ("breakdown", {"property": "source", "metrics": "visitors,visits", "limit": TOP}),
        ("breakdown", {"property": "device", "metrics": "visitors", "limit": TOP}),
        ("breakdown", {"property": "browser", "metrics": "visitors", "limit": TOP}),
        ("timeseries", {"metrics": "pageviews", "interval": "hour"}),
        *TYPE_ASKS,
    )
    totals, active = _values(totals), _values(active)
    return {
        "timestamp": _now_iso(),
        "total_events": int(totals["events"]),
        "unique_users": int(totals["visitors"]),
        "active_sessions": int(active["visits"]),
        "events_by_type": events_by_type(types, names),
        "top_pages": [
            {"path": r["value"], "views": int(r["pageviews"]), "unique_users": int(r["visitors"])}
            for r in _rows(pages)
        ],
        "traffic_sources": [
            {"source": r["value"] or "Direct", "users": int(r["visitors"]), "visits": r["visits"]}
            for r in _rows(sources)
        ],
        "device_stats": {r["value"] or "unknown": int(r["visitors"]) for r in _rows(devices)},
        "browser_stats": {r["value"] or "unknown": int(r["visitors"]) for r in _rows(browsers)},
        "hourly_page_views": [
            {"hour": _iso(p["bucket"]), "views": int(p["pageviews"])} for p in _rows(hours)
        ],
        "performance_metrics": {
            "page_views": int(totals["pageviews"]),  # all of them; the times are of those
            # that carried one (was "page_views_measured": every pageview, not the measured)
            "load_time_p50_ms": totals["load_time_p50"],
            "load_time_p95_ms": totals["load_time_p95"],
        },
    }


@router.get(
    "/analytics",
    summary="Seed 000's analytics snapshot: totals, types, pages, sources, devices, browsers, "
    "page views per hour, load times (default period: today)",
    responses=SITE_RESPONSES,
)
async def analytics(
    request: Request,
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    period: Period = "day",
    date_from: From = None,
    to: To = None,
    site_id: SiteParam = None,
) -> JSON:
    site_id, tz = await _site(request, caller, gate, "event", site_id)
    return await analytics_body(Reader(stats, site_id, tz, period, date_from, to))


@router.get(
    "/stats",
    summary="Seed 001's daily stats of a site: total_views, unique_users, top_paths",
    responses=SITE_RESPONSES,
)
async def site_stats(
    request: Request,
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    day: Annotated[str, Query(alias="date", max_length=10, description="YYYY-MM-DD")],
    site_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=100,
            description="default: HITSTREAM_COMPAT_SITE_EVENTS or HITSTREAM_COMPAT_SITE",
        ),
    ] = None,
) -> JSON:
    parse_day(day, "date")  # named as the seed names it (the custom range would say "from")
    site_id, tz = await _site(request, caller, gate, "events", site_id)
    reader = Reader(stats, site_id, tz, "custom", day, day)
    totals = await reader.totals("pageviews,visitors")
    paths = await reader.rows("page", "pageviews", "event_type==pageview")
    return {
        "site_id": site_id,
        "date": day,
        "total_views": int(totals["pageviews"]),
        "unique_users": int(totals["visitors"]),
        "top_paths": [{"path": r["value"], "views": int(r["pageviews"])} for r in paths],
    }


async def _json_params(request: Request) -> dict[str, Any]:
    """``user_id``/``page_url`` from a JSON body (seed 002 sends one with GET) or the query."""
    try:  # read no further than the limit: a GET body is no reason to hold megabytes
        raw = await read_capped_body(request, MAX_BODY)
    except EncodingProblem as exc:
        raise QueryError(exc.field, exc.reason, exc.status) from None
    if raw is None:
        raise QueryError("body", f"is larger than {MAX_BODY} bytes", 413)
    params: dict[str, Any] = {}
    if raw.strip():
        try:
            decoded = decode_json(raw)
        except BodyProblem as exc:
            raise QueryError("body", exc.reason) from None
        if not isinstance(decoded, dict):
            raise QueryError("body", "must be a JSON object")
        params.update(decoded)
    for name in ("user_id", "page_url"):
        if name in request.query_params:
            params[name] = request.query_params[name]
    for name in ("user_id", "page_url"):
        value = params.get(name)
        if value is not None and (not isinstance(value, str) or len(value) > 2048):
            raise QueryError(name, "must be a string of at most 2048 characters")
        if value is not None and ("|" in value or ";" in value):
            raise QueryError(name, "may not hold '|' or ';'")
        if value is not None and "\x00" in value:  # it was refused naming "filters"
            raise QueryError(name, "may not hold a NUL character")
    return params


def _page_filters(page_url: str) -> list[str]:
    """Filters for a seed's page: a path, or an absolute URL (its host and path)."""
    if page_url.startswith("/"):
        return [f"page=={urlsplit(page_url).path or '/'}"]
    try:
        parts = urlsplit(page_url)
    except ValueError:
        raise QueryError("page_url", "is not a URL or a path") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueryError("page_url", "must be an absolute http(s) URL or a path")
    return [f"hostname=={parts.hostname.lower()}", f"page=={parts.path or '/'}"]


@router.get(
    "/analytics/events",
    summary="Seed 002's event counts of a user on a page (user_id, page_url from a JSON body "
    "or the query; default period: 30d)",
    responses=SITE_RESPONSES,
)
async def user_page_events(
    request: Request,
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    site_id: SiteParam = None,
) -> JSON:
    params = await _json_params(request)
    user_id, page_url = params.get("user_id"), params.get("page_url")
    if not user_id and not page_url:
        raise QueryError("user_id", "user_id or page_url is required")
    site_id, tz = await _site(request, caller, gate, "ingest", site_id)
    filters = [f"user_id=={user_id}"] if user_id else []
    if page_url:
        filters += _page_filters(page_url)
    reader = Reader(stats, site_id, tz, period, date_from, to)
    counts = {
        r["value"]: int(r["events"])
        for r in await reader.rows("event_type", "events", ";".join(filters))
    }
    return {
        "user_id": user_id or "",
        "page_url": page_url or "",
        "event_count": sum(counts.values()),
        "click_count": counts.get("click", 0),
    }


@router.get(
    "/api/stats",
    summary="Seed 003's totals: total_events and events_by_type (default period: 30d)",
    responses=SITE_RESPONSES,
)
async def api_stats(
    request: Request,
    stats: StatsDep,
    caller: CallerDep,
    gate: GateDep,
    period: Period = "30d",
    date_from: From = None,
    to: To = None,
    site_id: SiteParam = None,
) -> JSON:
    site_id, tz = await _site(request, caller, gate, "api_analytics", site_id)
    reader = Reader(stats, site_id, tz, period, date_from, to)
    totals, types, names = await reader.batch(("aggregate", {"metrics": "events"}), *TYPE_ASKS)
    return {
        "total_events": int(_values(totals)["events"]),
        "events_by_type": events_by_type(types, names),
    }


def wants_json(request: Request) -> bool:
    """Whether ``GET /metrics`` is asked for seed 004's JSON (``?format=json`` or an Accept
    that names JSON and not Prometheus' text): scrapers keep the exposition format."""
    if request.query_params.get("format", "").lower() == "json":
        return True
    accept = request.headers.get("accept", "").lower()
    return "application/json" in accept and "text/plain" not in accept


async def metrics_json(request: Request) -> JSON:
    """Seed 004's real-time metrics: active users and events per minute over the last five
    minutes; mean duration (seconds) and top elements over ``period`` (default today)."""
    services = services_of(request)
    gate, stats = services.gate, services.stats
    if gate is None or stats is None:
        raise QueryError("format", "JSON metrics are served by a process with the web role")
    caller = await resolve(request)
    given = request.query_params.get("site_id") or None
    site_id, tz = await _site(request, caller, gate, "action", given)
    query = request.query_params
    period = query.get("period", "day")
    now = Reader(stats, site_id, tz, "realtime")
    recent = await now.totals("visitors,events")
    # a custom period's days, as every read takes them (they were not read: "from is required")
    reader = Reader(stats, site_id, tz, period, query.get("from"), query.get("to"))
    durations = await reader.rows("prop:duration", "events", limit=1000)
    measured = [(float(r["value"]), int(r["events"])) for r in durations if _number(r["value"])]
    count = sum(n for _, n in measured)
    mean_ms = sum(value * n for value, n in measured) / count if count else 0.0
    elements = await reader.rows("prop:element_name", "events", limit=TOP + 1)
    return {
        "active_users": int(recent["visitors"]),
        "events_per_min": round(recent["events"] / (REALTIME_WINDOW_MS / 60_000), 2),
        "avg_duration": round(mean_ms / 1000, 3),
        "top_elements": [
            {"element": r["value"], "count": int(r["events"])} for r in elements if r["value"]
        ][:TOP],
    }


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return bool(text)
