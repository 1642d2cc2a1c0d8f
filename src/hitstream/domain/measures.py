"""How every store measures: which events a query matches, property values, metric values.

The metrics are defined in ``hitstream.domain.stats``; this module holds the rules that make
their numbers exact and the same in every adapter (memory, DuckDB, PostgreSQL): the contract
suite runs one set of tests against all of them, and a property test compares the SQL stores
with plain Python on random data.

- An event *matches* a query when it belongs to ``query.site_id``, its ``timestamp`` lies in
  the half-open ``[range.start, range.end)`` and it passes every filter (``Filter.matches``).
- The value of a property for an event: the mapped column for event properties; for ``prop:<k>``
  the canonical text of ``props[k]`` (``prop_text``), or ``""`` when the event has no such key;
  for ``entry_page``/``exit_page`` the column of the event's session row (by site and
  ``session_id``). An event whose session has no row has no entry/exit page: every filter on
  those properties rejects it and entry/exit breakdowns leave it out.
- Filters: ``==`` the value is one of the values; ``!=`` it is none of them; ``~`` it contains
  one of them, compared after ``str.lower`` on both sides (SQL ``lower`` agrees except for the
  rare characters whose lower case is longer, such as U+0130); ``!~`` it contains none of
  them (same comparison); ``=~`` the one pattern (``hitstream.domain.patterns``) matches
  somewhere in it, ``!=~`` it does not; stores run the pattern as that module writes it for
  their engine (RE2 in DuckDB, an ARE in PostgreSQL), and Python runs ``Pattern.search``.
- ``visits`` counts distinct non-empty ``session_id``. ``bounce_rate`` and ``visit_duration``
  look at the session rows of those visits (the rows as stored now); a visit without a row
  counts as a visit but is not measured. ``bounce_rate = 100 * bounces / measured``,
  ``visit_duration = sum(last_seen - started_at) / (1000 * measured)``, ``views_per_visit =
  pageviews / visits``: each one division of exact integers (``metric_values``), so every
  adapter gets the very same float.
- Engagement events (``events.is_engagement``) are in the matching set only when the query
  asks ``time_on_page`` or ``scroll_depth`` (``reads_engagement``), and then only those two
  metrics read them: visitors, visits, pageviews, events, bounces, durations and load times
  count the other events (SQL: ``FILTER (WHERE type <> 'engagement')``). ``time_on_page =
  engaged_ms_sum / (1000 * engaged_n)``, ``scroll_depth = scroll_sum / scroll_n``,
  ``avg_duration = duration_sum / (1000 * duration_n)`` over non-engagement events with a
  ``duration_ms``: exact integer sums, one division.
- Load-time percentiles are SQL's ``percentile_cont`` (``percentile_cont`` here, bit for bit).
- A store checks what it is given (a query may come from elsewhere than ``build_query``):
  every metric known (``check_metrics``), every property known (``check_property``), every
  filter's property and operator known (``check_filters``); else ``QueryError``.
- A timeseries point and a breakdown row are the aggregate over the matching events of that
  bucket or that value, so a breakdown by ``entry_page`` counts, for every entry page, the
  visitors, visits, pageviews and events of the matching events whose visit entered there.
  Breakdown rows: only values with at least one matching event (``""`` is a value like any
  other), ordered by the first metric descending then value ascending (code point order),
  ``limit`` rows.
- Writes: the first copy of an ``event_id`` wins (within a batch and across batches); the last
  copy of a session in a batch wins; a value a 64-bit SQL column cannot hold fails the whole
  batch with ``StoreUnavailable`` and changes nothing.
- Retention drops events with ``timestamp < cutoff`` and sessions with ``last_seen < cutoff``,
  and bumps the data version of every site that lost rows (cached stats went stale).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from fractions import Fraction

from hitstream.domain.errors import QueryError
from hitstream.domain.goals import GOAL_OPS, GOAL_PROPERTY
from hitstream.domain.patterns import compile_pattern
from hitstream.domain.stats import (
    ENGAGEMENT_METRICS,
    EVENT_PROPERTIES,
    METRICS,
    OPS,
    PATTERN_OPS,
    PROP_PREFIX,
    SESSION_PROPERTIES,
    Filter,
)


def check_metrics(metrics: Sequence[str]) -> None:
    """What a store checks of a query it is given (it may come from elsewhere than
    ``build_query``): every metric is known."""
    for name in metrics:
        if name not in METRICS:
            raise QueryError("metrics", f"unknown metric {name!r}")


def reads_engagement(metrics: Iterable[str]) -> bool:
    """Whether engagement events belong to the matching set of a query asking ``metrics``."""
    return any(name in ENGAGEMENT_METRICS for name in metrics)


def check_property(name: str, field: str = "property") -> None:
    if name == GOAL_PROPERTY and field == "filters":  # a breakdown by goal is composed
        return
    if name.startswith(PROP_PREFIX) and len(name) > len(PROP_PREFIX):
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            raise QueryError(field, "a property key must not contain control characters")
        return
    if name not in EVENT_PROPERTIES and name not in SESSION_PROPERTIES:
        raise QueryError(field, f"unknown property {name!r}")


def check_filters(filters: Iterable[Filter]) -> None:
    for flt in filters:
        check_property(flt.property, "filters")
        if flt.op not in OPS:
            raise QueryError("filters", f"unknown operator {flt.op!r}")
        if flt.op in PATTERN_OPS:
            if len(flt.values) != 1:
                raise QueryError("filters", f"{flt.op!r} takes exactly one pattern")
            compile_pattern(flt.values[0])
        if flt.property == GOAL_PROPERTY and flt.op not in ("==", "!="):
            raise QueryError("filters", GOAL_OPS)


def prop_text(value: object) -> str:
    """The canonical text of a property value, as every adapter stores and compares it (and
    the live channel filters by it): strings as they are, booleans as ``true``/``false``,
    numbers as Python writes them, no value as ``""``."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def percentile_cont(sorted_values: Sequence[int], fraction: float) -> float:
    """SQL ``percentile_cont`` over ascending values, bit for bit as DuckDB computes it.

    Position ``rn = (n - 1) * fraction``; between the neighbours ``lo`` and ``hi`` the result is
    ``lo * (1 - d) + hi * d`` with ``d = rn - floor(rn)``, the first product fused into the sum
    (DuckDB's compiled code does that; ``Fraction`` gives the one exact rounding).
    """
    if not sorted_values:
        return 0.0
    rn = (len(sorted_values) - 1) * fraction
    below, above = math.floor(rn), math.ceil(rn)
    lo, hi = float(sorted_values[below]), float(sorted_values[above])
    if below == above:
        return lo
    d = rn - below
    return float(Fraction(lo) * Fraction(1.0 - d) + Fraction(hi * d))


def metric_values(
    metrics: Sequence[str],
    *,
    visitors: int,
    visits: int,
    pageviews: int,
    events: int,
    measured: int,
    bounces: int,
    duration_ms: int,
    p50: float,
    p95: float,
    engaged_ms: int = 0,
    engaged_n: int = 0,
    scroll_sum: int = 0,
    scroll_n: int = 0,
    duration_sum: int = 0,
    duration_n: int = 0,
) -> dict[str, float]:
    """Metric name -> value from the integer parts every adapter counts the same way."""
    values = {
        "visitors": float(visitors),
        "visits": float(visits),
        "pageviews": float(pageviews),
        "events": float(events),
        "bounce_rate": 100 * bounces / measured if measured else 0.0,
        "visit_duration": duration_ms / (1000 * measured) if measured else 0.0,
        "views_per_visit": pageviews / visits if visits else 0.0,
        "load_time_p50": p50,
        "load_time_p95": p95,
        "time_on_page": engaged_ms / (1000 * engaged_n) if engaged_n else 0.0,
        "scroll_depth": scroll_sum / scroll_n if scroll_n else 0.0,
        "avg_duration": duration_sum / (1000 * duration_n) if duration_n else 0.0,
    }
    return {name: values[name] for name in metrics}
