"""A live update over the control socket (what ``serve``'s web process does): one store call
for all of a view's stats queries, and the very bodies the single stats calls give."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec
import pytest

from hitstream.cache.memory import MemoryCache
from hitstream.domain.stats import Filter, StatsQuery
from hitstream.errors import QueryError
from hitstream.metrics import Metrics
from hitstream.services.live_views import parse_view, query_view
from hitstream.services.quality import Quality, Rejections
from hitstream.services.stats import StatsService
from hitstream.stores.base import WriteBatch
from hitstream.tally.memory import MemoryTally
from tests.contract.conftest import ServedDuckDB
from tests.contract.test_store_contract import EVENTS, SESSIONS, SITE

pytestmark = pytest.mark.integration
VIEW = {"site_id": SITE, "period": "custom", "from": "2026-03-09", "to": "2026-03-12"}


class Counted(ServedDuckDB):
    """The socket store, counting the operations it sends."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.sent: Counter[str] = Counter()

    async def _call(self, op: str, *args: object, timeout: float | None = None) -> Any:
        self.sent[op] += 1
        return await super()._call(op, *args, timeout=timeout)


class OneByOne:
    """The stats service seen through the single methods only (no ``answer_all``)."""

    def __init__(self, stats: StatsService) -> None:
        self.stats = stats

    async def aggregate(self, query: StatsQuery) -> dict[str, Any]:
        return await self.stats.aggregate(query)

    async def timeseries(self, query: StatsQuery) -> dict[str, Any]:
        return await self.stats.timeseries(query)

    async def breakdown(self, query: StatsQuery) -> dict[str, Any]:
        return await self.stats.breakdown(query)

    async def realtime(self, site_id: str, filters: tuple[Filter, ...] = ()) -> dict[str, Any]:
        return await self.stats.realtime(site_id, filters)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Counted]:
    served = Counted(tmp_path)
    await served.start()
    await served.write(WriteBatch("events", {0: len(EVENTS)}, list(EVENTS), list(SESSIONS)))
    yield served
    await served.close()


def service(store: Counted) -> StatsService:
    # each its own cache: neither path answers from what the other computed
    return StatsService(store, Metrics(), cache=MemoryCache(), clock=lambda: 1_800_000_000_000)


async def update(stats: Any, store: Counted, props: list[str]) -> tuple[int | None, Any]:
    quality = Quality(Rejections(MemoryTally()), store)
    key = parse_view(VIEW, int(time.time() * 1000))
    now = 1_800_000_000_000
    return await query_view(stats, key, now_ms=now, quality=quality, prop_keys=props, limit=10)


async def test_an_update_is_one_stats_call_with_the_single_calls_bodies(store: Counted) -> None:
    store.sent.clear()
    stats = service(store)
    version, batched = await update(stats, store, ["plan"])
    assert store.sent == {"stats_batch": 1, "drop_counts": 1}
    assert version == await store.data_version(SITE)
    observed = stats.metrics.registry.get_sample_value(
        "hitstream_query_seconds_count", {"kind": "breakdown", "cache": "miss"}
    )
    assert observed == len(batched["breakdowns"])  # each query's latency, as one by one

    store.sent.clear()
    none, single = await update(OneByOne(service(store)), store, ["plan"])
    assert none is None
    assert store.sent["stats_batch"] == 0 and store.sent["aggregate"] == 3  # with previous
    assert msgspec.json.encode(batched) == msgspec.json.encode(single)  # byte for byte
    assert batched["aggregate"]["results"]["pageviews"]["value"] > 0
    assert {row["value"] for row in batched["breakdowns"]["prop:plan"]} >= {"free"}


async def test_a_write_between_updates_shows_in_the_next_batch(store: Counted) -> None:
    stats = service(store)
    before, first = await update(stats, store, [])
    late = [replace(e, event_id=f"late-{e.event_id}") for e in EVENTS if e.site_id == SITE]
    await store.write(WriteBatch("events", {0: 2 * len(EVENTS)}, late, []))
    after, second = await update(stats, store, [])
    assert before is not None and after is not None and after > before
    pageviews = first["aggregate"]["results"]["pageviews"]["value"]
    assert second["aggregate"]["results"]["pageviews"]["value"] == 2 * pageviews
    _, single = await update(OneByOne(service(store)), store, [])
    assert msgspec.json.encode(second) == msgspec.json.encode(single)


async def test_a_query_the_store_refuses_fails_the_update_as_the_single_calls_do(
    store: Counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error travels back inside the batch's answer and is raised as the single call
    over the socket raises it; the other answers of the batch do not fail with it."""
    from hitstream.stores.sql.duckdb import stats as duck_stats

    real = duck_stats.stats_sql

    def refusing(query: StatsQuery, **kwargs: Any) -> Any:
        if query.property == "prop:plan":
            raise QueryError("property", "refused by this test")
        return real(query, **kwargs)

    monkeypatch.setattr(duck_stats, "stats_sql", refusing)
    with pytest.raises(QueryError) as batched:
        await update(service(store), store, ["plan"])
    with pytest.raises(QueryError) as single:
        await update(OneByOne(service(store)), store, ["plan"])
    assert (batched.value.field, batched.value.reason) == ("property", "refused by this test")
    assert (single.value.field, single.value.reason) == ("property", "refused by this test")
    _, fine = await update(service(store), store, [])
    assert fine["aggregate"]["results"]["pageviews"]["value"] > 0
