"""``Store.stats_batch``: every adapter answers a batch exactly as its single methods answer
each query, errors included, with the site's data version (over the control socket too)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from hitstream.domain.stats import METRICS, Filter, Range, StatsQuery
from hitstream.errors import HitstreamError, QueryError
from hitstream.stores.base import Store, WriteBatch
from hitstream.stores.batch import StatsAnswer, StatsCall
from tests.contract.test_store_contract import DAY, EVENTS, HOUR, MINUTE, SITE, R, T, q, shop

__all__ = ["shop"]  # the fixture, used by name


def calls() -> list[StatsCall]:
    """What a live update asks (rollup shapes, a compared range, raw-only shapes), and
    queries that fail."""
    out = [
        StatsCall("aggregate", q(METRICS)),
        StatsCall("aggregate", q(METRICS, rng=Range(R.start - 2 * DAY, R.start))),
        StatsCall("timeseries", q(("visitors", "pageviews"), interval="hour")),
        StatsCall("timeseries", q(("visitors", "pageviews"), interval="day", tz="Europe/Berlin")),
        # a range that ends inside a half hour holding events: not covered by rollups
        StatsCall("aggregate", q(("visitors", "events"), rng=Range(T - 5 * MINUTE, T + 10))),
        StatsCall("breakdown", q(("visitors", "events"), prop="prop:plan", limit=10)),
        StatsCall("breakdown", q(filters=(Filter("country", "==", ("DE",)),), prop="page")),
        # fails: unknown property, no property, unknown metric
        StatsCall("breakdown", q(("events",), prop="nope")),
        StatsCall("breakdown", q(("visitors",))),
        StatsCall("aggregate", q(("nope",))),
    ]
    for prop, metrics in {
        "page": ("visitors", "pageviews", "time_on_page", "scroll_depth"),
        "entry_page": ("visitors", "visits"),
        "source": ("visitors", "visits"),
        "country": ("visitors", "visits"),
        "event_name": ("visitors", "events", "avg_duration"),
    }.items():
        out.append(StatsCall("breakdown", q(metrics, prop=prop, limit=3)))
    return out


async def single(store: Store, call: StatsCall) -> StatsAnswer:
    """The answer of the store's single method, shaped as a batch answer."""
    try:
        if call.kind == "aggregate":
            return StatsAnswer(values=await store.aggregate(call.query))
        if call.kind == "timeseries":
            return StatsAnswer(points=await store.timeseries(call.query))
        return StatsAnswer(rows=await store.breakdown(call.query))
    except HitstreamError as exc:
        return StatsAnswer.failed(exc)


async def test_a_batch_answers_what_each_single_call_answers(shop: Store) -> None:
    asked = calls()
    batch = await shop.stats_batch(SITE, asked)
    assert batch.data_version == await shop.data_version(SITE)
    assert batch.answers == [await single(shop, call) for call in asked]
    failed = [a for a in batch.answers if a.error]
    assert [(a.error, a.field) for a in failed] == [
        ("QueryError", "property"),
        ("QueryError", "property"),
        ("QueryError", "metrics"),
    ]
    assert batch.answers[0].values is not None and batch.answers[0].values["pageviews"] > 0
    with pytest.raises(QueryError) as caught:
        failed[0].raise_error()
    assert caught.value.field == "property"


async def test_a_batch_follows_writes_and_an_empty_batch_is_the_version(shop: Store) -> None:
    asked = calls()[:3]
    before = await shop.stats_batch(SITE, asked)
    late = [replace(e, event_id=f"late-{e.event_id}", timestamp=e.timestamp + HOUR) for e in EVENTS]
    await shop.write(WriteBatch("events", {0: 2 * len(EVENTS)}, late, []))
    after = await shop.stats_batch(SITE, asked)
    assert after.data_version > before.data_version
    assert after.answers == [await single(shop, call) for call in asked]
    assert after.answers != before.answers
    empty = await shop.stats_batch(SITE, [])
    assert (empty.data_version, empty.answers) == (after.data_version, [])
    nobody = await shop.stats_batch("nobody.example", [])
    assert nobody.data_version == await shop.data_version("nobody.example")


async def test_a_batch_of_another_sites_query_is_refused(shop: Store) -> None:
    other = StatsCall("aggregate", StatsQuery("other", R, ("visitors",)))
    with pytest.raises(QueryError) as caught:
        await shop.stats_batch(SITE, [calls()[0], other])
    assert caught.value.field == "site_id"
