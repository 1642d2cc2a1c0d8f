"""The dashboard's CSVs for a period, as one ZIP: what Plausible's CSV export gives.

Each file is a Stats API answer (through ``StatsService``: cached, the same numbers as the
dashboard) written as CSV by ``domain.exports``: the visitors timeseries, then one breakdown
per dashboard table (``EXPORT_FILES``), up to ``MAX_BREAKDOWN_LIMIT`` rows each.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from hitstream.domain.exports import stats_table, to_csv
from hitstream.domain.stats import MAX_BREAKDOWN_LIMIT, Filter, StatsQuery
from hitstream.services.stats import StatsService

VISITORS_METRICS: Final = (
    "visitors",
    "visits",
    "pageviews",
    "views_per_visit",
    "bounce_rate",
    "visit_duration",
)
_PAGE: Final = (
    "visitors",
    "pageviews",
    "bounce_rate",
    "visit_duration",
    "time_on_page",
    "scroll_depth",
)
"""The dashboard's pages table has time on page: so has the file (it had not)."""
_VISIT: Final = ("visitors", "visits", "bounce_rate", "visit_duration")
_PLAIN: Final = ("visitors", "visits", "pageviews", "bounce_rate", "visit_duration")
EXPORT_FILES: Final = (
    ("pages.csv", "page", _PAGE),
    ("entry_pages.csv", "entry_page", _VISIT),
    ("exit_pages.csv", "exit_page", _VISIT),
    ("sources.csv", "source", _PLAIN),
    ("channels.csv", "channel", _PLAIN),
    ("referrers.csv", "referrer", _PLAIN),
    ("utm_sources.csv", "utm_source", _PLAIN),
    ("utm_mediums.csv", "utm_medium", _PLAIN),
    ("utm_campaigns.csv", "utm_campaign", _PLAIN),
    ("utm_contents.csv", "utm_content", _PLAIN),
    ("utm_terms.csv", "utm_term", _PLAIN),
    ("countries.csv", "country", _PLAIN),
    ("browsers.csv", "browser", _PLAIN),
    ("operating_systems.csv", "os", _PLAIN),
    ("devices.csv", "device", _PLAIN),
    ("hostnames.csv", "hostname", _PLAIN),
)
"""(file, breakdown property, metrics) of every table of the ZIP besides ``visitors.csv``,
``custom_events.csv`` (``event_name`` over custom events: visitors and events) and
``goals.csv`` (``GOAL_METRICS``: the goals panel)."""
GOAL_COLUMNS: Final = ("conversions", "events", "conversion_rate")


def _shown(prop: str, body: dict[str, Any]) -> dict[str, Any]:
    """The answer with its ``""`` row named as the dashboard names it (``Direct / none`` for
    sources and referrers, ``(none)`` else): a blank first cell reads as a broken row."""
    label = "Direct / none" if prop in ("source", "referrer") else "(none)"
    rows = [{**row, "value": row["value"] or label} for row in body["results"]]
    return {**body, "results": rows}


async def dashboard_csvs(stats: StatsService, query: StatsQuery) -> dict[str, str]:
    """File name -> CSV text, for the period, filters and time zone of ``query``."""
    files: dict[str, str] = {}
    series = replace(query, metrics=VISITORS_METRICS, property="", compare=None)
    body = await stats.timeseries(series)
    files["visitors.csv"] = to_csv(*stats_table("timeseries", body, VISITORS_METRICS, query.tz))
    for name, prop, metrics in EXPORT_FILES:
        asked = replace(
            query, metrics=metrics, property=prop, limit=MAX_BREAKDOWN_LIMIT, compare=None
        )
        body = _shown(prop, await stats.breakdown(asked))
        files[name] = to_csv(*stats_table("breakdown", body, metrics))
    custom = replace(
        query,
        metrics=("visitors", "events"),
        property="event_name",
        limit=MAX_BREAKDOWN_LIMIT,
        filters=(*query.filters, Filter("event_type", "==", ("custom",))),
        compare=None,
    )
    body = await stats.breakdown(custom)
    files["custom_events.csv"] = to_csv(*stats_table("breakdown", body, custom.metrics))
    goals = replace(
        query, metrics=GOAL_COLUMNS, property="goal", limit=MAX_BREAKDOWN_LIMIT, compare=None
    )
    body = await stats.breakdown(goals)
    files["goals.csv"] = to_csv(*stats_table("breakdown", body, GOAL_COLUMNS))
    return files


def zip_name(site_id: str, query: StatsQuery) -> str:
    """``<site>-<first day>[_<last day>].zip``, days in the query's time zone: a download
    says what it holds (``example.com-30d.zip`` did not say when)."""
    zone = ZoneInfo(query.tz)
    first = datetime.fromtimestamp(query.range.start / 1000, zone).date()
    last = datetime.fromtimestamp((max(query.range.end, query.range.start + 1) - 1) / 1000, zone)
    days = first.isoformat() if first == last.date() else f"{first}_{last.date()}"
    return f"{site_id}-{days}.zip"


def zipped(files: dict[str, str]) -> bytes:
    """A ZIP (deflated) of the files, in the order given."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, text.encode("utf-8"))
    return buffer.getvalue()
