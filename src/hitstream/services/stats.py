"""The stats service: answers stats queries as JSON-ready dicts, cache-aside.

Cache keys hold the site's data version, which every store write that touches the site bumps,
so a cached answer is never stale: a new event changes the version and so the key. Realtime
answers depend on the clock too; their range is part of the key. The cache (in-process or
Redis) is best effort: when it is down every lookup misses and the store answers.

``answer_all`` answers several queries of one site (a live dashboard's) with ONE store call
(``Store.stats_batch``: one control-socket round trip, one DuckDB job) and the data version
read with it; each body is then made by the very code the single methods run, from the
batch's answers, so it is byte for byte what they give.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, Literal, Protocol

import msgspec

from hitstream.cache.base import Cache
from hitstream.domain import funnels
from hitstream.domain.goals import GOAL_PROPERTY, named
from hitstream.domain.stats import (
    REALTIME_WINDOW_MS,
    BreakdownRow,
    Filter,
    StatsQuery,
    TimeseriesPoint,
    resolve_period,
)
from hitstream.metrics import Metrics
from hitstream.services import conversions
from hitstream.stores.base import Store
from hitstream.stores.batch import StatsAnswer, StatsBatch, StatsCall

JSON = dict[str, Any]
CACHE_TTL_S = 24 * 3600
REALTIME_TTL_S = 10
OPEN_RANGE_MARGIN_S = 60
"""An answer whose range ends after now is kept until that end and this margin, no longer:
the next request past the end asks a later range (a new key), so keeping it a day only
filled the cache (Redis's too) with answers no one could ask for again (decision 0041)."""
Ask = tuple[Literal["aggregate", "timeseries", "breakdown", "realtime"], StatsQuery]
"""One query of ``answer_all``: the method that answers it and its query (for ``realtime``,
``realtime_query``'s)."""


class Reads(conversions.Answers, Protocol):
    """What the methods read from the store (``Store`` is one; so is a ``_Batched``)."""

    async def data_version(self, site_id: str) -> int: ...


class _Batched:
    """The store, with a batch's answers in hand: the version of the batch's site and the
    queries of the batch are answered from it (errors raised again), anything else by the
    store itself."""

    def __init__(
        self,
        store: Store,
        site_id: str,
        calls: Sequence[StatsCall],
        got: StatsBatch,
        began: float,
    ) -> None:
        self.store = store
        self.began = began
        """When the batch was sent: each query's latency counts from then."""
        self.site_id = site_id
        self.version = got.data_version
        self.answers: dict[tuple[str, str], StatsAnswer] = {
            (call.kind, repr(call.query)): answer
            for call, answer in zip(calls, got.answers, strict=True)
        }

    def _answer(self, kind: str, query: StatsQuery) -> StatsAnswer | None:
        found = self.answers.get((kind, repr(query)))
        if found is not None:
            found.raise_error()
        return found

    async def data_version(self, site_id: str) -> int:
        if site_id == self.site_id:
            return self.version
        return await self.store.data_version(site_id)

    async def aggregate(self, query: StatsQuery) -> dict[str, float]:
        found = self._answer("aggregate", query)
        if found is None or found.values is None:
            return await self.store.aggregate(query)
        return found.values

    async def timeseries(self, query: StatsQuery) -> list[TimeseriesPoint]:
        found = self._answer("timeseries", query)
        if found is None or found.points is None:
            return await self.store.timeseries(query)
        return found.points

    async def breakdown(self, query: StatsQuery) -> list[BreakdownRow]:
        found = self._answer("breakdown", query)
        if found is None or found.rows is None:
            return await self.store.breakdown(query)
        return found.rows


def _change(value: float, previous: float) -> float | None:
    if previous == 0:
        return None
    return round((value - previous) / previous * 100, 1)


def _round(value: float) -> float | int:
    as_int = int(value)
    return as_int if as_int == value else round(value, 2)


class StatsService:
    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        *,
        cache: Cache,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.cache = cache
        self._clock = clock or (lambda: int(time.time() * 1000))

    def now_ms(self, period: str | None = None) -> int:
        """The "now" that ends a query's range, rounded UP: to the next second for realtime,
        to the next minute otherwise. Rounding up never drops an event already received, and
        a whole minute of requests then shares one range, so an unchanged site (same data
        version) answers from the cache instead of rescanning."""
        step = 1000 if period == "realtime" else 60_000
        now = self._clock()
        return now - now % step + step

    def _ttl_s(self, kind: str, query: StatsQuery) -> int:
        """How long an answer can be asked for again: a closed range's for a day (only a
        late event changes it, and that is a new data version); one reaching past now's
        until its end (``OPEN_RANGE_MARGIN_S``)."""
        if kind == "realtime":
            return REALTIME_TTL_S
        left_ms = query.range.end - self._clock()
        if left_ms <= 0:
            return CACHE_TTL_S
        return min(CACHE_TTL_S, -(-left_ms // 1000) + OPEN_RANGE_MARGIN_S)

    async def _cached(
        self,
        kind: str,
        query: StatsQuery,
        compute: Callable[[], Awaitable[JSON]],
        reads: Reads | None = None,
    ) -> JSON:
        began = reads.began if isinstance(reads, _Batched) else time.perf_counter()
        version = await (reads or self.store).data_version(query.site_id)
        digest = hashlib.blake2b(repr(query).encode(), digest_size=12).hexdigest()
        key = f"{kind}:{query.site_id}:{version}:{digest}"
        hit = await self.cache.get(key)
        if hit is not None:
            self.metrics.query_seconds.labels(kind, "hit").observe(time.perf_counter() - began)
            cached: JSON = msgspec.json.decode(hit)
            return cached
        result = await compute()
        await self.cache.set(key, msgspec.json.encode(result), self._ttl_s(kind, query))
        self.metrics.query_seconds.labels(kind, "miss").observe(time.perf_counter() - began)
        return result

    async def with_goals(
        self, query: StatsQuery, steps: tuple[Filter, ...] = (), field: str = "filters"
    ) -> StatsQuery:
        """The query with the definitions of the site's goals, when it (or a funnel step)
        names goals; ``QueryError`` naming ``filters`` (or ``field`` for a step) for an
        unknown goal name."""
        stepped = any(s.property == GOAL_PROPERTY for s in steps)
        if not conversions.involved(query) and not stepped:
            return query
        goals = await self.store.goals(query.site_id)
        for flt in query.filters:
            if flt.property == GOAL_PROPERTY:
                named(goals, flt.values, "filters")
        for step in steps:
            if step.property == GOAL_PROPERTY:
                named(goals, step.values, field)
        return replace(query, goals=tuple(goals))

    def _frame(self, query: StatsQuery) -> JSON:
        return {"site_id": query.site_id, "from": query.range.start, "to": query.range.end}

    async def aggregate(self, query: StatsQuery) -> JSON:
        return await self._aggregate(self.store, query)

    async def _aggregate(self, reads: Reads, query: StatsQuery) -> JSON:
        query = await self.with_goals(query)

        async def compute() -> JSON:
            current = await conversions.aggregate(reads, query)
            previous = None
            if query.compare is not None:
                previous = await conversions.aggregate(reads, query.for_range(query.compare))
            results: JSON = {}
            for metric in query.metrics:
                entry: JSON = {"value": _round(current.get(metric, 0.0))}
                if previous is not None:
                    before = previous.get(metric, 0.0)
                    entry["previous"] = _round(before)
                    entry["change"] = _change(current.get(metric, 0.0), before)
                results[metric] = entry
            body = self._frame(query)
            if query.compare is not None:
                body["compare"] = {"from": query.compare.start, "to": query.compare.end}
            body["results"] = results
            return body

        return await self._cached("aggregate", query, compute, reads)

    async def timeseries(self, query: StatsQuery) -> JSON:
        return await self._timeseries(self.store, query)

    async def _timeseries(self, reads: Reads, query: StatsQuery) -> JSON:
        query = await self.with_goals(query)

        async def compute() -> JSON:
            points = await conversions.timeseries(reads, query)
            body = self._frame(query)
            body["interval"] = query.interval
            body["results"] = [
                {"bucket": p.bucket, **{m: _round(p.results.get(m, 0.0)) for m in query.metrics}}
                for p in points
            ]
            return body

        return await self._cached("timeseries", query, compute, reads)

    async def breakdown(self, query: StatsQuery) -> JSON:
        return await self._breakdown(self.store, query)

    async def _breakdown(self, reads: Reads, query: StatsQuery) -> JSON:
        query = await self.with_goals(query)

        async def compute() -> JSON:
            rows = await conversions.breakdown(reads, query)
            body = self._frame(query)
            body["property"] = query.property
            body["results"] = [
                {"value": r.value, **{m: _round(r.results.get(m, 0.0)) for m in query.metrics}}
                for r in rows
            ]
            return body

        return await self._cached("breakdown", query, compute, reads)

    async def funnel(
        self,
        query: StatsQuery,
        steps: tuple[Filter, ...],
        window: int | None,
        field: str = "step",
    ) -> JSON:
        """Visitors, conversion and drop-off per step (``hitstream.domain.funnels``)."""
        query = await self.with_goals(query, steps, field)
        window_ms = None if window is None else window * 60_000
        keyed = replace(query, extra={"steps": repr(steps), "window": repr(window_ms)})

        async def compute() -> JSON:
            visitors = await self.store.funnel(query, steps, window_ms)
            body = self._frame(query)
            body["window"] = window
            body["steps"] = funnels.steps_answer([funnels.label(s) for s in steps], visitors)
            return body

        return await self._cached("funnel", keyed, compute)

    def realtime_query(self, site_id: str, filters: tuple[Filter, ...] = ()) -> StatsQuery:
        """The query ``realtime`` answers now (of the events that pass ``filters``)."""
        now = self.now_ms("realtime")
        return StatsQuery(
            site_id=site_id,
            range=resolve_period("realtime", now),
            metrics=("visitors", "events"),
            filters=filters,
        )

    async def realtime(self, site_id: str, filters: tuple[Filter, ...] = ()) -> JSON:
        return await self._realtime_of(self.store, self.realtime_query(site_id, filters))

    async def _realtime_of(self, reads: Reads, query: StatsQuery) -> JSON:
        query = await self.with_goals(query)
        return await self._cached("realtime", query, lambda: self._realtime(reads, query), reads)

    async def _realtime(self, reads: Reads, query: StatsQuery) -> JSON:
        """Now: the last ``REALTIME_WINDOW_MS`` (5 minutes). ``active_users`` is the seeds' name
        for the visitors active in it (an identified user is one visitor of its own);
        ``events_per_minute`` the window's events (engagement measurements excluded, as in
        the ``events`` metric) per minute."""
        values = await reads.aggregate(query)
        visitors = int(values.get("visitors", 0))
        per_minute = values.get("events", 0.0) * 60_000 / REALTIME_WINDOW_MS
        return {
            "site_id": query.site_id,
            "visitors": visitors,
            "active_users": visitors,
            "events_per_minute": _round(per_minute),
        }

    async def sites(self) -> list[str]:
        return await self.store.sites()

    async def answer_all(self, site_id: str, asks: Sequence[Ask]) -> tuple[int, list[JSON]]:
        """The data version and the body of each ask, as the single methods answer them
        (the first error any of them raises is raised), with one ``Store.stats_batch`` call
        for the store queries they make. A query naming goals is not in the batch: the goal
        definitions are read first, and its store queries go one by one. Each query's
        latency (``hitstream_query_seconds``) counts from when the batch was sent."""
        calls = [call for kind, query in asks for call in _store_calls(kind, query)]
        began = time.perf_counter()
        got = await self.store.stats_batch(site_id, calls)
        reads = _Batched(self.store, site_id, calls, got, began)
        single = {
            "aggregate": self._aggregate,
            "timeseries": self._timeseries,
            "breakdown": self._breakdown,
            "realtime": self._realtime_of,
        }
        bodies = await asyncio.gather(*(single[kind](reads, query) for kind, query in asks))
        return got.data_version, list(bodies)


def _store_calls(kind: str, query: StatsQuery) -> list[StatsCall]:
    """The store queries the single method of ``kind`` makes for ``query`` (none for one
    naming goals: see ``answer_all``)."""
    if conversions.involved(query):
        return []
    if kind in ("aggregate", "realtime"):
        compared = [] if query.compare is None else [query.for_range(query.compare)]
        return [StatsCall("aggregate", q) for q in (query, *compared)]
    if kind == "timeseries":
        return [StatsCall("timeseries", query)]
    return [StatsCall("breakdown", query)]
