"""A batch of stats queries answered in one job on the DuckDB thread (``Store.stats_batch``).

Each query is answered as ``DuckDBStore.aggregate``, ``timeseries`` and ``breakdown`` answer
it on their own (from the rollups where they can, else by a raw scan, then shaped by
``results``), and the site's data version is read in the same job: no write comes between
the version and the answers.

Inside the job the connection repeats nothing: a ``SELECT`` asked again with the same
parameters gets the rows it got the first time. Nothing writes during one job, so the rows
are the same; what this saves is the rollups' coverage check, which ``rollups.answer`` runs
for every query although a dashboard's queries share two or three ranges.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import duckdb

from hitstream.domain.stats import BreakdownRow, StatsQuery, TimeseriesPoint, bucket_starts
from hitstream.errors import HitstreamError, QueryError, StoreUnavailable
from hitstream.stores import rollup_views
from hitstream.stores.batch import StatsAnswer, StatsBatch, StatsCall
from hitstream.stores.sql.common import results
from hitstream.stores.sql.duckdb import rollups, stats
from hitstream.stores.sql.duckdb.memory import with_memory

Connection = duckdb.DuckDBPyConnection
Row = tuple[Any, ...]


class _Rows:
    """The answer of one statement, fetched at most once."""

    def __init__(self, rows: list[Row]) -> None:
        self._rows = rows

    def fetchall(self) -> list[Row]:
        return list(self._rows)

    def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None


class Repeating:
    """A connection for one read-only job: a ``SELECT`` asked again with the same parameters
    gets the rows it got the first time; anything else goes to the connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._seen: dict[tuple[str, str], _Rows] = {}
        self.repeated = 0
        """Statements answered from an earlier one (tests look)."""

    def execute(self, sql: str, params: object = None) -> Any:
        if sql.lstrip()[:6].upper() != "SELECT":
            return self._conn.execute(sql, params)
        key = (sql, repr(params))
        found = self._seen.get(key)
        if found is None:
            found = self._seen[key] = _Rows(self._conn.execute(sql, params).fetchall())
        else:
            self.repeated += 1
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    @property
    def direct(self) -> Connection:
        """The connection itself, for what must read fresh rows (a segment's bookkeeping)."""
        return self._conn


def _rows(
    conn: Repeating,
    views: rollup_views.Views,
    keep: bool,
    query: StatsQuery,
    group: str | None = None,
    buckets: list[int] | None = None,
    now_ms: int | None = None,
) -> tuple[str, list[Row]]:
    """What ``DuckDBStore._stats`` answers, and the path (``"rollup"``/``"raw"``)."""
    sql, params = stats.stats_sql(query, group=group, buckets=buckets)
    if keep and rollups.usable(query, group, buckets):
        found = rollups.answer(
            cast(Connection, conn), views, query, group=group, buckets=buckets, now_ms=now_ms
        )
        if found is not None:
            return "rollup", found
    return "raw", conn.execute(sql, params).fetchall()


def _answer(
    conn: Repeating,
    views: rollup_views.Views,
    keep: bool,
    call: StatsCall,
    answered: list[str],
    now_ms: int | None,
) -> StatsAnswer:
    query = call.query
    if call.kind == "aggregate":
        path, rows = _rows(conn, views, keep, query)
        answered.append(path)
        return StatsAnswer(values=results(query, rows[0] if rows else None))
    if call.kind == "timeseries":
        starts = bucket_starts(query)
        if not starts:
            return StatsAnswer(points=[])
        path, rows = _rows(conn, views, keep, query, buckets=starts)
        answered.append(path)
        by_bucket = {int(row[0]): row for row in rows}
        return StatsAnswer(
            points=[TimeseriesPoint(s, results(query, by_bucket.get(s))) for s in starts]
        )
    if not query.property:
        raise QueryError("property", "is required for a breakdown")
    path, rows = _rows(conn, views, keep, query, group=query.property, now_ms=now_ms)
    answered.append(path)
    return StatsAnswer(rows=[BreakdownRow(str(row[0]), results(query, row)) for row in rows])


@dataclass(slots=True)
class Answered:
    """A batch, with what ``DuckDBStore`` counts: the path of each query answered
    (``"rollup"``/``"raw"``) and how many statements were repeats."""

    batch: StatsBatch
    paths: list[str] = field(default_factory=list)
    repeated: int = 0


def answer_all(
    conn: Connection,
    views: rollup_views.Views,
    keep: bool,
    site_id: str,
    calls: Sequence[StatsCall],
    now_ms: int | None = None,
    memory_mb: int = 0,
    lifted: Callable[[str, str], None] = lambda what, reason: None,
) -> Answered:
    """The batch, run on the store's thread as one job (``keep``: the store keeps rollups;
    ``now_ms``: when a breakdown under a segment was asked, None on a read-only store;
    ``memory_mb``: the store's memory limit, lifted for a query that does not fit in it,
    after calling ``lifted``: ``with_memory``)."""
    repeating = Repeating(conn)
    version = repeating.execute(
        "SELECT data_version FROM sites WHERE site_id = $s", {"s": site_id}
    ).fetchall()
    paths: list[str] = []
    answers: list[StatsAnswer] = []
    for call in calls:

        def one(call: StatsCall = call) -> StatsAnswer:
            return _answer(repeating, views, keep, call, paths, now_ms)

        try:
            answers.append(with_memory(repeating, memory_mb, "query", one, lifted))
        except duckdb.Error as exc:  # as ``DuckDBStore._run`` says it
            answers.append(StatsAnswer.failed(StoreUnavailable(f"duckdb query failed: {exc}")))
        except HitstreamError as exc:
            answers.append(StatsAnswer.failed(exc))
    batch = StatsBatch(int(version[0][0]) if version else 0, answers)
    return Answered(batch, paths, repeating.repeated)
