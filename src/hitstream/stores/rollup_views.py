"""Rollup answers kept in memory and moved forward by every write's deltas (issue 11 point 5).

A *view* is what one shape of rollup query sums: one site, one property (``""``: the totals),
the whole half hours ``[lo, hi)``, and either one group, one group per value, or one group per
bucket start. It holds, per group, the integer parts a stats row is made of: the chained
counts, the plain sums, the engagement sums and (asked for once) the load-time histogram.

The store builds a view from its rollup tables the first time a query of that shape is
answered, then adds to it the deltas of every write it commits (``Deltas``, the very rows the
write appended to the rollups), so the next query of that shape (a live dashboard asks the
same ones every second) is answered from memory: same integers as summing the tables, since
the tables are the same deltas summed. A view's rows are then shaped exactly as the SQL
answer shapes them (presence, order, limit, percentiles): ``rows``.

What a view cannot know (a deletion, a rebuild) makes the store drop its views (``clear``).
Idle views are dropped after ``IDLE_S``; at most ``MAX_VIEWS`` are kept, holding at most
``MAX_GROUPS`` groups, bounds kept at every write as well as when a view is added (a write
adds groups: new values, decision 0038). A group's integers are one ``array`` of int64s, not
a list of Python ints (about half the memory, with the value's string).
"""

from __future__ import annotations

import bisect
import heapq
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from hitstream.domain import rollups
from hitstream.domain.measures import percentile_cont, reads_engagement
from hitstream.domain.stats import StatsQuery

Row = tuple[Any, ...]
Group = int | str
MAX_VIEWS: Final = 256
MAX_GROUPS: Final = 200_000
"""Groups (values, buckets; counts and sums each) over all kept views: ~200-260 bytes each as
measured with their keys (``BYTES_PER_GROUP``, held by a test), so ~50 MB at most; a view
alone larger than a quarter of it (a breakdown by user id of a big site) is not kept."""
BYTES_PER_GROUP: Final = 260
"""What one group of a view costs in Python's heap, its value's string included (measured:
``tests/unit/test_rollup_views.py``, ``benchmarks/view_memory.py``); as lists of Python ints
a group cost ~325-445 (decision 0038)."""
IDLE_S: Final = 600.0
PERCENTILES: Final = frozenset({"load_time_p50", "load_time_p95"})
SUMMED: Final = frozenset({"time_on_page", "scroll_depth", "avg_duration"})
"""Metrics read from the engagement sums."""

ViewKey = tuple[str, str, int, int, tuple[int, ...] | None, str | None]
"""(site, property, lo, hi, bucket starts or None, the one value kept or None: all)."""
Indexed = tuple[
    dict[tuple[str, str], list[tuple[str, int, int, Sequence[int]]]],
    dict[tuple[str, str], list[tuple[str, int, Sequence[int]]]],
    dict[str, list[tuple[int, int, int]]],
]
"""A write's deltas by (site, property): counts (value, hour, prev, fields), sums (value,
hour, parts); loads by site: (hour, load time, pageviews)."""
_FIRST_PLAIN: Final = rollups.FIELDS.index("pageviews")
"""``FIELDS`` from here on are plain sums; those before are chained."""
_NO_COUNTS: Final = (0,) * len(rollups.FIELDS)
_NO_SUMS: Final = (0,) * len(rollups.SUMS)


def numbers(values: Iterable[int]) -> array[int]:
    """A group's integers, compact (int64: a count or sum of milliseconds fits many times)."""
    return array("q", values)


def zeros(n: int) -> array[int]:
    return array("q", bytes(8 * n))


@dataclass(slots=True)
class Deltas:
    """What one write added to the rollups (``rollups.change``'s counts, ``event_sums``,
    ``load_counts``)."""

    counts: Mapping[rollups.Key, Sequence[int]] = field(default_factory=dict)
    sums: Mapping[rollups.SumKey, Sequence[int]] = field(default_factory=dict)
    loads: Mapping[tuple[str, int, int], int] = field(default_factory=dict)

    _indexed: Indexed | None = None

    def __bool__(self) -> bool:
        return bool(self.counts or self.sums or self.loads)

    def indexed(self) -> Indexed:
        """The rows by (site, property), loads by site: each view reads only its own (once
        per write, however many views)."""
        if self._indexed is None:
            counts: dict[tuple[str, str], list[tuple[str, int, int, Sequence[int]]]] = {}
            for (site, dim, value, hour, prev), fields in self.counts.items():
                counts.setdefault((site, dim), []).append((value, hour, prev, fields))
            sums: dict[tuple[str, str], list[tuple[str, int, Sequence[int]]]] = {}
            for (site, dim, value, hour), parts in self.sums.items():
                sums.setdefault((site, dim), []).append((value, hour, parts))
            loads: dict[str, list[tuple[int, int, int]]] = {}
            for (site, hour, load_ms), n in self.loads.items():
                loads.setdefault(site, []).append((hour, load_ms, n))
            self._indexed = (counts, sums, loads)
        return self._indexed


@dataclass(slots=True)
class View:
    site: str
    dim: str
    lo: int
    hi: int
    starts: tuple[int, ...] | None
    counts: dict[Group, array[int]]
    """group -> ``rollups.FIELDS`` (chained fields summed with ``prev < first(group)``)."""
    sums: dict[Group, array[int]] | None = None
    """group -> ``rollups.SUMS``; None until a query asks for them."""
    loads: dict[Group, Counter[int]] | None = None
    """group -> load time -> pageviews; None until a query asks for percentiles."""
    used: float = 0.0
    only: str | None = None
    """The one value of ``dim`` the view holds (a filter ``dim == only``), None: every value."""

    @property
    def size(self) -> int:
        """Groups held (counts, sums and histograms)."""
        return len(self.counts) + len(self.sums or ()) + len(self.loads or ())

    @property
    def key(self) -> ViewKey:
        return (self.site, self.dim, self.lo, self.hi, self.starts, self.only)

    def group(self, value: str, hour: int) -> Group | None:
        """The group a row of ``hour`` (and ``value``) falls in, None if outside the view."""
        if not self.lo <= hour < self.hi:
            return None
        if self.only is not None and value != self.only:
            return None
        if self.starts is not None:  # the slot holding the first start is the first bucket's
            i = bisect.bisect_right(self.starts, hour) - 1
            return self.starts[max(i, 0)]
        return value if self.dim else 0

    def first(self, group: Group) -> int:
        """The start the chains of a group are counted from (``prev < first``)."""
        if self.starts is not None:
            assert isinstance(group, int)
            return max(rollups.slot_of(group), self.lo)
        return self.lo

    def add(self, deltas: Deltas) -> None:
        counts, sums, loads = deltas.indexed()
        for value, hour, prev, fields in counts.get((self.site, self.dim), ()):
            g = self.group(value, hour)
            if g is None:
                continue
            row = self.counts.get(g)
            if row is None:
                row = self.counts[g] = zeros(len(rollups.FIELDS))
            # the chained fields count from ``first``; pageviews and events whatever the prev
            summed = 0 if prev < self.first(g) else _FIRST_PLAIN
            for i in range(summed, len(fields)):
                row[i] += fields[i]
        if self.sums is not None:
            for value, hour, parts in sums.get((self.site, self.dim), ()):
                g = self.group(value, hour)
                if g is None:
                    continue
                row = self.sums.get(g)
                if row is None:
                    row = self.sums[g] = zeros(len(rollups.SUMS))
                for i, delta in enumerate(parts):
                    row[i] += delta
        if self.loads is not None:
            for hour, load_ms, n in loads.get(self.site, ()):
                g = self.group("", hour)
                if g is not None:
                    self.loads.setdefault(g, Counter())[load_ms] += n

    def rows(self, query: StatsQuery, grouped: bool) -> list[Row]:
        """The rows of ``COLUMNS`` the SQL answer gives for ``query``."""
        engaging = reads_engagement(query.metrics)
        summed = bool(SUMMED.intersection(query.metrics))
        sums = self.sums or {}
        groups = set(self.counts) | (set(sums) if summed else set())
        found: list[Row] = []
        counts_of, sums_of = self.counts.get, sums.get
        for g in groups:
            c = counts_of(g) or _NO_COUNTS
            s = (sums_of(g) or _NO_SUMS) if summed else _NO_SUMS
            if not (c[6] > 0 or (engaging and s[0] > 0)):
                continue
            # visitors, visits, pageviews, events, measured, bounces, duration (FIELDS order:
            # visitors, visits, measured, bounces, duration, pageviews, events)
            found.append((g, c[0], c[1], c[5], c[6], c[2], c[3], c[4], None, None, *s[1:]))
        if grouped:
            # by the first metric descending, then the second, then by value ascending
            # (``domain.stats.breakdown_order``)
            order = ORDER[query.metrics[0]]
            then = ORDER[query.metrics[1]] if len(query.metrics) > 1 else _NOTHING

            def key(row: Row) -> tuple[float, float, str]:
                return (-order(row), -then(row), row[0])

            if query.limit < len(found):
                return heapq.nsmallest(query.limit, found, key=key)
            found.sort(key=key)
            return found[: query.limit]
        if PERCENTILES.intersection(query.metrics) and self.loads is not None:
            shaped = []
            for row in found:
                histogram = sorted((v, n) for v, n in self.loads.get(row[0], {}).items() if n)
                if histogram:
                    values = rollups.Histogram(histogram)
                    p50, p95 = percentile_cont(values, 0.5), percentile_cont(values, 0.95)
                    row = (*row[:8], p50, p95, *row[10:])
                shaped.append(row)
            found = shaped
        return found


def _ratio(top: int, bottom: int, scale: int = 1) -> float:
    """``top::float8 / (scale * bottom)`` as SQL computes it, 0 when ``bottom`` is 0."""
    return 0.0 if bottom == 0 else float(top) / (scale * bottom)


def _NOTHING(row: Row) -> float:
    return 0.0


ORDER: Final[dict[str, Callable[[Row], float]]] = {
    # row: g, visitors, visits, pageviews, events, measured, bounces, duration, p50, p95,
    # engaged, engaged_n, scroll, scroll_n, timed, timed_n (``ORDER_KEYS`` in SQL)
    "visitors": lambda r: r[1],
    "visits": lambda r: r[2],
    "pageviews": lambda r: r[3],
    "events": lambda r: r[4],
    "bounce_rate": lambda r: _ratio(100 * r[6], r[5]),
    "visit_duration": lambda r: _ratio(r[7], r[5], 1000),
    "views_per_visit": lambda r: _ratio(r[3], r[2]),
    "load_time_p50": lambda r: r[8] or 0.0,
    "load_time_p95": lambda r: r[9] or 0.0,
    "time_on_page": lambda r: _ratio(r[10], r[11], 1000),
    "scroll_depth": lambda r: _ratio(r[12], r[13]),
    "avg_duration": lambda r: _ratio(r[14], r[15], 1000),
}


class Views:
    """The views of one store, with their use times (``clock``: seconds)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._views: dict[ViewKey, View] = {}
        self.refused: dict[tuple[str, str, str], int] = {}
        """(site, property, value) -> when a segment was last refused (epoch ms): a live
        view asks its breakdowns every second, and the refusal is not worked out again for
        ``SEGMENT_TOUCH_MS`` (``stores/sql/duckdb/rollups.want``)."""

    def __len__(self) -> int:
        return len(self._views)

    def get(self, key: ViewKey) -> View | None:
        view = self._views.get(key)
        if view is not None:
            view.used = self._clock()
        return view

    @property
    def groups(self) -> int:
        """Groups held over every view (what ``MAX_GROUPS`` bounds)."""
        return sum(view.size for view in self._views.values())

    def put(self, view: View) -> None:
        """Keep ``view``, or keep it again once it grew (its sums or load times were added);
        unless it alone is too big: it answers its query and goes."""
        if view.size > MAX_GROUPS // 4:
            self._views.pop(view.key, None)
            return
        view.used = self._clock()
        self._views[view.key] = view
        self._expire()

    def add(self, deltas: Deltas) -> None:
        """A write's deltas into every view; then the bounds again (the write may have added
        groups, and idle views go even when no new view is asked for)."""
        if deltas:
            for key, view in list(self._views.items()):
                try:
                    view.add(deltas)
                except OverflowError:  # past int64: no site gets there; the tables answer
                    del self._views[key]
        if self._views:
            self._expire()

    def clear(self, sites: Iterable[str] | None = None) -> None:
        """Drop the views of these sites (None: all)."""
        if sites is None:
            self._views.clear()
            return
        gone = set(sites)
        for key in [k for k in self._views if k[0] in gone]:
            del self._views[key]

    def _expire(self) -> None:
        now = self._clock()
        quarter = MAX_GROUPS // 4
        for key in [k for k, v in self._views.items() if now - v.used > IDLE_S or v.size > quarter]:
            del self._views[key]
        total = sum(view.size for view in self._views.values())
        while len(self._views) > MAX_VIEWS or total > MAX_GROUPS:
            oldest = min(self._views, key=lambda k: self._views[k].used)
            total -= self._views.pop(oldest).size
