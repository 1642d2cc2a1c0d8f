"""What the store's in-memory rollup views cost (decision 0038): bytes per group, and the CPU of
moving them forward (``Views.add``, at every write) and of answering from them (``View.rows``,
every second per open dashboard panel).

One page-like breakdown view of ``--groups`` values with counts and sums, as a store builds it
(each value read back as a fresh string and made a group as the store makes it, numbers past
Python's small-int cache), then ``--writes``
writes of ``--rows`` delta rows each (counts and sums over the view's values, 1 % new values),
then ``rows`` of a top-10 breakdown. Everything in one process with ``tracemalloc`` only
around the build. It uses whatever ``hitstream.stores.rollup_views`` is importable, so the code
before decision 0038 (lists of Python ints) is measured by running this file with
``PYTHONPATH`` on a ``git archive`` of it; alternate the two, medians of the runs.

    python -m benchmarks.view_memory                          # 50,000 groups
    PYTHONPATH=/tmp/old/src:/tmp/old python -m benchmarks.view_memory
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable
from typing import Any

from benchmarks.harness import machine, write_result
from hitstream.domain import rollups
from hitstream.domain.stats import Range, StatsQuery
from hitstream.stores import rollup_views
from hitstream.stores.rollup_views import Deltas, View, Views
from hitstream.stores.sql.duckdb.rollups import _group

HOUR = 3_600_000


def _numbers() -> Callable[[Iterable[int]], Any]:
    """How the store under test makes a group's integers (before 0038: a list)."""
    return getattr(rollup_views, "numbers", list)


def _value(i: int) -> str:
    # a fresh string per read, as DuckDB returns them: never the literal's object
    return "".join(("/blog/2026/", "an-article-", f"{i:08d}"))


def _read(i: int) -> Any:
    """A value as the store under test turns a row into a group (0038: interned)."""
    return _group(_value(i))


def build(groups: int, rng: random.Random) -> View:
    make = _numbers()
    view = View("s", "page", 0, 48 * HOUR, None, {})
    view.sums = {}
    for i in range(groups):
        view.counts[_read(i)] = make(rng.randrange(300, 90_000) for _ in rollups.FIELDS)
    for i in range(groups):
        view.sums[_read(i)] = make(rng.randrange(300, 9_000_000) for _ in rollups.SUMS)
    return view


def deltas(groups: int, rows: int, rng: random.Random, fresh: list[int]) -> Deltas:
    counts: dict[rollups.Key, list[int]] = {}
    sums: dict[rollups.SumKey, list[int]] = {}
    for _ in range(rows):
        if rng.random() < 0.01:
            fresh[0] += 1
            value = _value(groups + fresh[0])
        else:
            value = _value(rng.randrange(groups))
        hour = rng.randrange(48) * HOUR
        counts[("s", "page", value, hour, rollups.NONE)] = [1, 1, 1, 0, 4_000, 1, 1]
        sums[("s", "page", value, hour)] = [1, 2_000, 1, 60, 1, 3_000, 1]
    return Deltas(counts=counts, sums=sums)


def run(groups: int, writes: int, rows: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    view = build(groups, rng)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    views = Views(time.monotonic)
    views._views[view.key] = view  # kept whatever the bound: this measures one view's cost
    fresh = [0]
    batches = [deltas(groups, rows, rng, fresh) for _ in range(writes)]
    for batch in batches:
        batch.indexed()  # once per write in the store too, shared by every view: not timed
    began = time.process_time()
    for batch in batches:
        for v in views._views.values():
            v.add(batch)
    add_s = time.process_time() - began
    query = StatsQuery("s", Range(0, 48 * HOUR), ("visitors",), property="page", limit=10)
    took = []
    for _ in range(15):
        began = time.process_time()
        view.rows(query, grouped=True)
        took.append(time.process_time() - began)
    return {
        "code": "arrays (0038)" if hasattr(rollup_views, "numbers") else "lists (before 0038)",
        "groups_built": groups,
        "bytes_per_group": round(held / (len(view.counts) + len(view.sums or {})), 1),
        "held_mb": round(held / 1e6, 1),
        "add_us_per_delta_row": round(add_s / (2 * writes * rows) * 1e6, 3),
        "rows_ms_median": round(statistics.median(took) * 1000, 1),
        "groups_after": len(view.counts),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=50_000)
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1_000, help="delta rows per write")
    parser.add_argument("--seed", type=int, default=38)
    args = parser.parse_args(argv)
    result = run(args.groups, args.writes, args.rows, args.seed)
    print(json.dumps(result))
    print(f"results: {write_result('view-memory', {'machine': machine(), **result})}")


if __name__ == "__main__":
    main()
