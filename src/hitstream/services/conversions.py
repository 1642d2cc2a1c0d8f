"""Goal metrics and goal breakdowns, composed from the store's plain answers.

Stores translate ``goal`` filter clauses (the goal definitions travel in the query); what is
left is arithmetic over their answers, the same for every store (``hitstream.domain.stats``
defines the metrics):

- ``conversions``: the ``visitors`` of the query with its ``goal==`` clauses (or, without
  one, a clause naming every goal of the site: no goals, no conversions);
- ``conversion_rate``: ``100 * conversions`` / the ``visitors`` of the query without any goal
  clause (the period's visitors of the same bucket or value);
- a breakdown by another property: rows and order come from the store's breakdown by the
  first metric; when that metric is a goal metric, from the converting values (for
  ``conversion_rate`` the best ``MAX_BREAKDOWN_LIMIT`` values by conversions are ranked);
  the other columns are then asked for exactly those values (a ``property==values`` clause);
- ``property=goal``: one row per goal with at least one completion, each the aggregate of
  the query with ``goal==<that goal>`` added to its filters (its own ``goal`` clauses stay:
  they restrict the events, as in every breakdown), in ``breakdown_order``.

A query that names no goal metric and does not break down by goal goes to the store as is.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from hitstream.domain.goals import GOAL_METRICS, GOAL_PROPERTY
from hitstream.domain.stats import (
    MAX_BREAKDOWN_LIMIT,
    BreakdownRow,
    Filter,
    StatsQuery,
    TimeseriesPoint,
    breakdown_order,
)

_VISITORS = ("visitors",)


class Answers(Protocol):
    """The store's plain stats answers, all this module asks (``Store`` is one)."""

    async def aggregate(self, query: StatsQuery) -> dict[str, float]: ...
    async def timeseries(self, query: StatsQuery) -> list[TimeseriesPoint]: ...
    async def breakdown(self, query: StatsQuery) -> list[BreakdownRow]: ...


def involved(query: StatsQuery) -> bool:
    """Whether the query names goals at all (so their definitions must be resolved)."""
    return (
        query.property == GOAL_PROPERTY
        or any(m in GOAL_METRICS for m in query.metrics)
        or any(f.property == GOAL_PROPERTY for f in query.filters)
    )


def _composed(query: StatsQuery) -> bool:
    return query.property == GOAL_PROPERTY or any(m in GOAL_METRICS for m in query.metrics)


def _plain(query: StatsQuery) -> tuple[str, ...]:
    return tuple(m for m in query.metrics if m not in GOAL_METRICS)


def _without_goals(query: StatsQuery) -> StatsQuery:
    kept = tuple(f for f in query.filters if f.property != GOAL_PROPERTY)
    return replace(query, filters=kept, metrics=_VISITORS)


def _converting(query: StatsQuery) -> StatsQuery | None:
    """The query whose visitors are the conversions; None when nothing can convert."""
    if any(f.property == GOAL_PROPERTY and f.op == "==" for f in query.filters):
        return replace(query, metrics=_VISITORS)
    if not query.goals:
        return None
    every = Filter(GOAL_PROPERTY, "==", tuple(g.name for g in query.goals))
    return replace(query, filters=(*query.filters, every), metrics=_VISITORS)


def _rate(conversions: float, visitors: float) -> float:
    return 100 * conversions / visitors if visitors else 0.0


def _ordered(query: StatsQuery, found: dict[str, float]) -> dict[str, float]:
    return {m: found.get(m, 0.0) for m in query.metrics}


async def aggregate(store: Answers, query: StatsQuery) -> dict[str, float]:
    if not _composed(query):
        return await store.aggregate(query)
    found: dict[str, float] = {}
    if _plain(query):
        found.update(await store.aggregate(replace(query, metrics=_plain(query))))
    converting = _converting(query)
    conversions = (await store.aggregate(converting))["visitors"] if converting else 0.0
    found["conversions"] = conversions
    if "conversion_rate" in query.metrics:
        visitors = (await store.aggregate(_without_goals(query)))["visitors"]
        found["conversion_rate"] = _rate(conversions, visitors)
    return _ordered(query, found)


async def timeseries(store: Answers, query: StatsQuery) -> list[TimeseriesPoint]:
    if not _composed(query):
        return await store.timeseries(query)
    plain = _plain(query)
    points = await store.timeseries(replace(query, metrics=plain or _VISITORS))
    converting = _converting(query)
    conversions = (
        [p.results["visitors"] for p in await store.timeseries(converting)]
        if converting
        else [0.0] * len(points)
    )
    visitors = (
        [p.results["visitors"] for p in await store.timeseries(_without_goals(query))]
        if "conversion_rate" in query.metrics
        else [0.0] * len(points)
    )
    out = []
    for point, conv, total in zip(points, conversions, visitors, strict=True):
        found = dict(point.results) if plain else {}
        found["conversions"] = conv
        found["conversion_rate"] = _rate(conv, total)
        out.append(TimeseriesPoint(point.bucket, _ordered(query, found)))
    return out


async def breakdown(store: Answers, query: StatsQuery) -> list[BreakdownRow]:
    if query.property == GOAL_PROPERTY:
        return await _by_goal(store, query)
    if not _composed(query):
        return await store.breakdown(query)
    first, plain, converting = query.metrics[0], _plain(query), _converting(query)
    if first in plain:
        rows = await store.breakdown(replace(query, metrics=plain))
        values = [row.value for row in rows]
        found = {row.value: dict(row.results) for row in rows}
    else:
        if converting is None:
            return []
        wide = query.limit if first == "conversions" else MAX_BREAKDOWN_LIMIT
        rows = await store.breakdown(replace(converting, limit=wide))
        values = [row.value for row in rows]
        found = {row.value: {} for row in rows}
        if plain and values:
            for row in await store.breakdown(_only(query, values, plain)):
                found[row.value].update(row.results)
    if not values:
        return []
    conversions = {v: 0.0 for v in values}
    if converting is not None:
        for row in await store.breakdown(_only(converting, values, _VISITORS)):
            conversions[row.value] = row.results["visitors"]
    totals = {v: 0.0 for v in values}
    if "conversion_rate" in query.metrics:
        for row in await store.breakdown(_only(_without_goals(query), values, _VISITORS)):
            totals[row.value] = row.results["visitors"]
    out = []
    for value in values:
        merged = found[value]
        merged["conversions"] = conversions[value]
        merged["conversion_rate"] = _rate(conversions[value], totals[value])
        out.append(BreakdownRow(value, _ordered(query, merged)))
    out.sort(key=lambda row: breakdown_order(query.metrics, row.results, row.value))
    return out[: query.limit]


def _only(query: StatsQuery, values: list[str], metrics: tuple[str, ...]) -> StatsQuery:
    """The query restricted to these values of its property, every one of them a row."""
    clause = Filter(query.property, "==", tuple(values))
    return replace(query, filters=(*query.filters, clause), metrics=metrics, limit=len(values))


async def _by_goal(store: Answers, query: StatsQuery) -> list[BreakdownRow]:
    """A row per goal completed by the query's events: its filters, ``goal`` clauses
    included, restrict the events as in any breakdown (under ``goal==Signup`` a goal that the
    same events complete has its row too, one they never complete has none)."""
    asked = tuple(dict.fromkeys((*_plain(query), "visitors", "events")))
    total = 0.0
    if "conversion_rate" in query.metrics:
        total = (await store.aggregate(_without_goals(replace(query, property=""))))["visitors"]
    rows = []
    for goal in query.goals:
        clause = Filter(GOAL_PROPERTY, "==", (goal.name,))
        one = replace(query, filters=(*query.filters, clause), metrics=asked, property="")
        found = await store.aggregate(one)
        if not found["events"]:
            continue
        found["conversions"] = found["visitors"]
        found["conversion_rate"] = _rate(found["visitors"], total)
        rows.append(BreakdownRow(goal.name, _ordered(query, found)))
    rows.sort(key=lambda row: breakdown_order(query.metrics, row.results, row.value))
    return rows[: query.limit]
