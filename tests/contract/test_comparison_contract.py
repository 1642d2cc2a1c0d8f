"""compare=year_over_year and compare=custom on every store: the comparison range's numbers
are the events of those dates, counted here."""

from __future__ import annotations

import random

import pytest

from hitstream.domain.stats import build_query
from hitstream.stores.base import Store, WriteBatch
from tests.contract.test_store_contract import DAY, event, utc

NOW = utc(2026, 6, 1)


@pytest.mark.parametrize(
    ("compare", "first", "last", "lo", "hi"),
    [
        ("year_over_year", None, None, utc(2025, 3, 1), utc(2025, 3, 11)),
        ("custom", "2025-12-30", "2026-01-02", utc(2025, 12, 30), utc(2026, 1, 3)),
        ("previous_period", None, None, utc(2026, 2, 19), utc(2026, 3, 1)),
    ],
)
async def test_comparison_ranges_count_their_own_events(
    store: Store, compare: str, first: str | None, last: str | None, lo: int, hi: int
) -> None:
    rng = random.Random(3)
    events = [
        event(f"c{n}", start + rng.randrange(12 * DAY), f"v{rng.randrange(9)}", f"s{n}")
        for n, start in enumerate(
            [utc(2025, 2, 25)] * 40 + [utc(2025, 12, 25)] * 40 + [utc(2026, 2, 18)] * 60
        )
    ]
    await store.write(WriteBatch("events", {0: 1}, events))
    query = build_query(
        site_id="shop", now_ms=NOW, period="custom", date_from="2026-03-01",
        date_to="2026-03-10", metrics="visitors,pageviews", compare=compare,
        compare_from=first, compare_to=last,
    )  # fmt: skip
    assert query.compare is not None
    assert (query.compare.start, query.compare.end) == (lo, hi)
    inside = [e for e in events if lo <= e.timestamp < hi]
    assert inside  # the data reach the range
    got = await store.aggregate(query.for_range(query.compare))
    assert got == {
        "visitors": float(len({e.visitor_id for e in inside})),
        "pageviews": float(len(inside)),
    }
    now = [e for e in events if query.range.start <= e.timestamp < query.range.end]
    assert await store.aggregate(query) == {
        "visitors": float(len({e.visitor_id for e in now})),
        "pageviews": float(len(now)),
    }
