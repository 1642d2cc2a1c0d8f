"""The in-memory rollup views: what is kept, what goes, how rows are shaped and moved."""

from __future__ import annotations

import tracemalloc
from array import array

import pytest

from hitstream.domain import rollups
from hitstream.domain.stats import Range, StatsQuery
from hitstream.stores import rollup_views
from hitstream.stores.rollup_views import Deltas, View, Views, numbers

HOUR = 3_600_000


def view(site: str = "s", dim: str = "page", groups: int = 1) -> View:
    counts: dict[rollup_views.Group, array[int]] = {
        f"/p{i}": numbers([1, 1, 0, 0, 0, 1, 1]) for i in range(groups)
    }
    return View(site, dim, 0, 4 * HOUR, None, counts)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_view_too_big_alone_is_not_kept() -> None:
    views = Views(Clock())
    big = view(groups=rollup_views.MAX_GROUPS // 4 + 1)
    views.put(big)
    assert views.get(big.key) is None
    small = view(dim="source")
    views.put(small)
    assert views.get(small.key) is small


def four_views(clock: Clock, groups: int) -> tuple[Views, list[View]]:
    """Views of sites s0-s3 of ``groups`` groups each, put at times 0-3."""
    views = Views(clock)
    kept = []
    for n in range(4):
        clock.now = n
        kept.append(view(site=f"s{n}", groups=groups))
        views.put(kept[-1])
    return views, kept


def test_the_least_recently_used_views_go_past_the_group_bound() -> None:
    clock = Clock()
    views, kept = four_views(clock, rollup_views.MAX_GROUPS // 4)
    clock.now = 10
    assert views.get(kept[0].key) is kept[0]  # used again: now the most recent
    clock.now = 11
    views.put(view(site="new", groups=10))  # over the bound: the oldest use goes (s1)
    assert views.get(kept[1].key) is None
    assert all(views.get(v.key) is v for v in (kept[0], kept[2], kept[3]))


@pytest.mark.parametrize("then", ["a new view", "a write"])
def test_idle_views_expire(then: str) -> None:
    """At the next new view, and at the next write when no new view comes."""
    clock = Clock()
    views = Views(clock)
    old = view(site="old")
    views.put(old)
    clock.now = rollup_views.IDLE_S + 1
    if then == "a new view":
        views.put(view(site="fresh"))
    else:
        views.add(Deltas())
    assert views.get(old.key) is None and len(views) == (then == "a new view")


def test_a_write_that_adds_groups_keeps_the_bound() -> None:
    """New values arrive with every write: the views grow between two queries, and the
    least recently used go then, not only when a new view is asked for."""
    clock = Clock()
    views, kept = four_views(clock, rollup_views.MAX_GROUPS // 4 - 100)
    clock.now = 4
    small = view(site="small", groups=300)
    views.put(small)
    assert views.groups == rollup_views.MAX_GROUPS - 100
    clock.now = 5
    fresh = {("small", "page", f"/new{i}", HOUR, rollups.NONE): [1] * 7 for i in range(150)}
    views.add(Deltas(counts=fresh))  # 50 groups past the bound
    assert views.groups <= rollup_views.MAX_GROUPS
    assert views.get(kept[0].key) is None  # the oldest use went
    assert all(views.get(v.key) is v for v in kept[1:])
    assert views.get(small.key) is small and small.size == 450


def test_a_view_that_grew_too_big_alone_goes() -> None:
    views = Views(Clock())
    v = view(groups=rollup_views.MAX_GROUPS // 4 - 5)
    views.put(v)
    v.add(Deltas(counts={("s", "page", f"/n{i}", HOUR, rollups.NONE): [1] * 7 for i in range(6)}))
    views.put(v)  # kept again once its sums came: now past a quarter alone
    assert views.get(v.key) is None
    w = view(dim="source", groups=3)
    views.put(w)
    views.add(
        Deltas(
            counts={
                ("s", "source", f"x{i}", HOUR, rollups.NONE): [1] * 7
                for i in range(rollup_views.MAX_GROUPS // 4)
            }
        )
    )
    assert views.get(w.key) is None  # grew past it at a write


def test_a_group_costs_what_the_bound_assumes() -> None:
    """``MAX_GROUPS`` is a memory bound through ``BYTES_PER_GROUP``: measured here on a view
    of page-like values with counts and sums, as a store builds it (values of ~30 chars,
    numbers past the small-int cache)."""
    n = 20_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        v = View("s", "page", 0, HOUR, None, {})
        v.sums = {}
        for i in range(n):
            value = f"/blog/2026/an-article-{i:08d}"
            v.counts[value] = numbers([1000 + i, 900 + i, 800, 300, 10**7 + i, 5000 + i, 6000 + i])
            v.sums[value] = numbers([7000 + i, 600 + i, 500, 40_000 + i, 400, 10**6 + i, 300])
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_group = used / v.size
    assert per_group <= rollup_views.BYTES_PER_GROUP, per_group
    # and the bound is near what a group costs, not loose (lists of Python ints, ~325 bytes
    # a group here, would not keep to it)
    assert per_group > rollup_views.BYTES_PER_GROUP / 1.5


def test_deltas_move_only_their_site_property_and_range() -> None:
    v = view(groups=0)
    deltas = Deltas(
        counts={
            ("s", "page", "/a", HOUR, rollups.NONE): [1, 1, 1, 0, 5, 2, 3],
            ("s", "page", "/a", 2 * HOUR, HOUR): [1, 1, 0, 0, 0, 1, 1],  # chained before
            ("s", "source", "x", HOUR, rollups.NONE): [9] * 7,  # another property
            ("t", "page", "/a", HOUR, rollups.NONE): [9] * 7,  # another site
            ("s", "page", "/a", 5 * HOUR, rollups.NONE): [9] * 7,  # past the range
        }
    )
    v.add(deltas)
    # the chained fields of (2h, prev 1h) count only from a range starting after 1h; this
    # view starts at 0, so only its pageviews and events add up
    assert {g: list(c) for g, c in v.counts.items()} == {"/a": [1, 1, 1, 0, 5, 3, 4]}


def test_breakdown_rows_order_by_the_metric_then_by_value_and_keep_the_limit() -> None:
    v = View("s", "page", 0, HOUR, None, {})
    for value, visitors in (("/b", 2), ("/a", 2), ("/c", 5), ("/d", 1)):
        v.counts[value] = numbers([visitors, 1, 0, 0, 0, 1, 1])
    v.counts["/gone"] = numbers([0, 0, 0, 0, 0, 0, 0])  # no events: not a row
    query = StatsQuery("s", Range(0, HOUR), ("visitors",), property="page", limit=3)
    assert [row[0] for row in v.rows(query, grouped=True)] == ["/c", "/a", "/b"]


def test_named_periods_end_where_a_rollup_period_ends() -> None:
    """Named periods end "so far" at the end of the current half hour: the rollups answer them
    while events arrive; realtime still ends now."""
    from hitstream.domain import rollups
    from hitstream.domain.stats import PERIOD_GRAIN_MS, resolve_period

    assert PERIOD_GRAIN_MS == rollups.SLOT
    now = 1_790_000_123_456
    for period in ("day", "7d", "30d", "month"):
        found = resolve_period(period, now, "Europe/Berlin")
        assert found.end % rollups.SLOT == 0 and now < found.end <= now + rollups.SLOT
    on_the_boundary = 1_790_001_000_000 // rollups.SLOT * rollups.SLOT
    assert resolve_period("day", on_the_boundary).end == on_the_boundary + rollups.SLOT
    assert resolve_period("realtime", now).end == now + 1
