"""Stats answers of a store, flat, for comparing two stores (rollups against raw scans)."""

from __future__ import annotations

from typing import Any

from hitstream.domain.events import ProcessedEvent
from hitstream.domain.stats import METRICS, Filter, Range, StatsQuery
from hitstream.stores.base import Store

Answer = tuple[int, object, str, Any]
"""(query number, bucket or value or "", metric, number)."""


async def flat_answers(store: Store, asked: list[tuple[str, StatsQuery]]) -> list[Answer]:
    """Every answer to ``asked`` (``(kind, query)``, kind a Store method), flat."""
    flat: list[Answer] = []
    for number, (kind, query) in enumerate(asked):
        found = await getattr(store, kind)(query)
        rows = (
            [("", found)]
            if kind == "aggregate"
            else [(getattr(r, "bucket", None) or r.value, r.results) for r in found]
        )
        flat += [(number, key, m, v) for key, results in rows for m, v in results.items()]
    return flat


def filtered_queries(
    events: list[ProcessedEvent], site: str, start: int
) -> tuple[list[Any], list[Any]]:
    """Queries with one ``property == value`` filter (answered from rollups) and with other
    filters (scanned), over values the traffic has."""
    ours = [e for e in events if e.site_id == site]

    def common(attribute: str) -> str:
        counts: dict[str, int] = {}
        for e in ours:
            counts[getattr(e, attribute)] = counts.get(getattr(e, attribute), 0) + 1
        return max(counts, key=lambda v: (counts[v], v))

    whole = Range(start, start + 3 * 86_400_000)
    country, source, path = common("country"), common("source"), common("path")
    one = {
        "country": Filter("country", "==", (country,)),
        "source": Filter("source", "==", (source,)),
        "page": Filter("page", "==", (path,)),
        "plan": Filter("prop:plan", "==", ("pro",)),
        "none": Filter("prop:plan", "==", ("",)),
        "entry": Filter("entry_page", "==", (path,)),
        "missing": Filter("country", "==", ("XX",)),
    }
    rolled: list[Any] = []
    for name, flt in one.items():
        # load-time percentiles under a filter: counts from rollups, percentiles scanned
        metrics = METRICS if name != "entry" else ("visitors", "visits", "load_time_p95")
        rolled += [
            ("aggregate", StatsQuery(site, whole, metrics, filters=(flt,))),
            ("timeseries", StatsQuery(site, whole, metrics, filters=(flt,), interval="hour")),
            (
                "breakdown",
                StatsQuery(site, whole, ("visitors", "visits"), (flt,), property=flt.property),
            ),
        ]
    scanned = [
        (
            "aggregate",
            StatsQuery(site, whole, ("visitors",), (Filter("country", "==", (country, "DE")),)),
        ),
        (
            "aggregate",
            StatsQuery(site, whole, ("visitors",), (Filter("country", "!=", (country,)),)),
        ),
        ("aggregate", StatsQuery(site, whole, ("visitors",), (one["country"], one["source"]))),
        ("breakdown", StatsQuery(site, whole, ("visitors",), (one["country"],), property="page")),
    ]
    return rolled, scanned
