"""The embedded store: one DuckDB file in the data folder, the default of ``hitstream serve``.

DuckDB calls block, so every call runs on one dedicated worker thread that owns the single
connection; the event loop only awaits. Calls are therefore serialised, and a ``write`` is one
job: BEGIN, every statement, COMMIT; or ROLLBACK and ``StoreUnavailable``. One process per
file: DuckDB lets no second process open it, not even read-only.

Events go in with a plain INSERT first; ``ON CONFLICT DO NOTHING`` would cost ~40 ms on every
5,000-event batch, for duplicates that only a replay after a crash brings. If the primary key
objects, the whole transaction is rolled back and done again with the conflict clause, so a
stored ``event_id`` is never stored twice either way. The SQL lives in ``stores/sql/duckdb``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from hitstream.domain import rollups as rollups_domain
from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.sites import check_forgotten_user
from hitstream.domain.stats import (
    BreakdownRow,
    Filter,
    StatsQuery,
    TimeseriesPoint,
    bucket_starts,
)
from hitstream.errors import PositionConflict, QueryError, StoreRefused, StoreUnavailable
from hitstream.stores import rollup_views
from hitstream.stores.base import RollupAnswers, Store, WriteBatch, check_fence
from hitstream.stores.batch import StatsBatch, StatsCall, check_site
from hitstream.stores.sql.common import (
    EXPORT_COLUMNS,
    SELECT_SESSIONS,
    exported_event,
    results,
    sessions_of,
)
from hitstream.stores.sql.duckdb import allocator, rollups, stats, writes
from hitstream.stores.sql.duckdb import batch as duck_batch
from hitstream.stores.sql.duckdb.memory import with_memory
from hitstream.stores.sql.registry import BUMP, SqlDefinitions, forgotten_statement
from hitstream.stores.sql.registry import Statement as RegistryStatement

T = TypeVar("T")
log = logging.getLogger(__name__)
Row = tuple[Any, ...]
Connection = duckdb.DuckDBPyConnection


_tx = writes.transaction


def _transaction(conn: Connection, statements: Sequence[tuple[str, object]]) -> list[Row]:
    """Run statements in one transaction; return the rows of the last one."""
    rows: list[Row] = []
    with _tx(conn):
        for sql, params in statements:
            rows = conn.execute(sql, params).fetchall()
    return rows


def _each(conn: Connection, statements: Sequence[tuple[str, object]]) -> list[list[Row]]:
    """Run statements in one transaction; return the rows of each."""
    with _tx(conn):
        return [conn.execute(sql, params).fetchall() for sql, params in statements]


def _write(
    conn: Connection, batch: WriteBatch, keep: bool, views: rollup_views.Views
) -> tuple[int, int | None]:
    """One write transaction (``keep``: with the rollups); return the rollup delta rows
    appended and the earliest period they touch. Once committed, what it added moves the
    in-memory views forward (on this thread, as every query: none reads one meanwhile)."""
    if batch.starts:  # one process owns a DuckDB file: no other writer between check and write
        stored = conn.execute(
            "SELECT partition, next_offset FROM positions WHERE stream = $s", {"s": batch.stream}
        ).fetchall()
        check_fence(batch.stream, {int(p): int(o) for p, o in stored}, batch.starts)
    events, sessions = writes.batch_rows(batch)
    try:
        with _tx(conn):
            deltas, kept = _write_fresh(conn, batch, events, sessions, keep)
    except duckdb.ConstraintException:  # an event_id is stored already: skip those
        with _tx(conn):
            known = _stored_ids(conn, [e.event_id for e in events])
            fresh = [e for e in events if e.event_id not in known]
            deltas, kept = _write_fresh(conn, batch, fresh, sessions, keep)
    views.add(deltas)
    return kept


def _stored_ids(conn: Connection, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` are stored. The bounds let min/max zone maps skip row groups:
    ids are time-ordered UUIDv7s."""
    if not event_ids:
        return set()
    rows = conn.execute(
        "SELECT event_id FROM events WHERE event_id >= $lo AND event_id <= $hi "
        "AND event_id IN (SELECT unnest($ids::VARCHAR[]))",
        {"ids": list(event_ids), "lo": min(event_ids), "hi": max(event_ids)},
    ).fetchall()
    return {row[0] for row in rows}


def _write_fresh(
    conn: Connection,
    batch: WriteBatch,
    events: list[ProcessedEvent],
    sessions: list[Session],
    keep: bool,
) -> tuple[rollup_views.Deltas, tuple[int, int | None]]:
    """The statements of a write whose ``events`` are all new to the store (a stored id
    raises ``ConstraintException``)."""
    keys = rollups.register(conn, events) if keep and events else {}
    if events:
        conn.execute(*writes.insert_events(events, skip_stored=False))
    deltas = rollup_views.Deltas()
    kept: tuple[int, int | None] = (0, None)
    visit_rows = None
    if keep:
        sites = {e.site_id for e in events} | {s.site_id for s in sessions}
        segments = rollups.segments_of(conn, sites) if sites else {}
        deltas, appended, lowest, visit_rows = rollups.keep(conn, events, sessions, keys, segments)
        kept = (appended, lowest)
    else:
        rollups.stop_at(conn, {e.site_id for e in events} | {s.site_id for s in sessions})
    for sql, params in writes.rest_statements(batch, events, sessions, visit_rows):
        conn.execute(sql, params)
    writes.finish(conn, batch, writes.written_sites(batch, events, sessions))
    return deltas, kept


def _migrations() -> list[tuple[str, str]]:
    folder = resources.files("hitstream.stores.sql.duckdb")
    found = [
        (item.name.removesuffix(".sql"), item.read_text(encoding="utf-8"))
        for item in folder.iterdir()
        if item.name.endswith(".sql")
    ]
    return sorted(found)


def _migrate(conn: Connection, read_only: bool) -> list[str]:
    if not read_only:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(name VARCHAR PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
    done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations").fetchall()}
    pending = [(name, sql) for name, sql in _migrations() if name not in done]
    if pending and read_only:
        raise StoreUnavailable(f"a read-only store cannot apply {[n for n, _ in pending]}")
    for name, sql in pending:
        record = "INSERT INTO schema_migrations VALUES ($name, epoch_ms(now()))"
        _transaction(conn, [(sql, None), (record, {"name": name})])
    return [name for name, _ in pending]


def _delete_before(conn: Connection, cutoff_ms: int) -> int:
    cut = {"cut": cutoff_ms}
    touched = conn.execute(
        "SELECT site_id FROM events WHERE ts < $cut "
        "UNION SELECT site_id FROM sessions WHERE last_seen < $cut",
        cut,
    ).fetchall()
    statements: list[tuple[str, object]] = []
    if touched:  # cached stats of these sites went stale
        statements.append(writes.bump_sites(sorted(row[0] for row in touched)))
    statements.append(("DELETE FROM sessions WHERE last_seen < $cut", cut))
    statements.append(("DELETE FROM events WHERE ts < $cut", cut))
    gone = 0
    with _tx(conn):
        rollups.forget_before(conn, cutoff_ms)
        for sql, params in statements:
            gone = int(conn.execute(sql, params).fetchall()[0][0])
    return gone


class DuckDBStore(RollupAnswers, Store, SqlDefinitions):
    name = "duckdb"

    def __init__(
        self,
        path: str | Path,
        *,
        read_only: bool = False,
        checkpoint_mb: int = 64,
        rollups: bool = True,
        compact_rows: int = 200_000,
        memory_mb: int = 0,
        memory_hold_s: float = 60.0,
    ) -> None:
        """``checkpoint_mb``: WAL size that triggers a checkpoint. DuckDB's 16 MB default
        checkpoints every few batches, each rewriting the open row group (measured 38k
        events/s, p95 410 ms per batch); 64 MB gives 52k/s, p95 112 ms, with a pause of
        ~0.8 s every ~40 batches, which queries wait out too (one connection)."""
        self._path = str(path)
        self._read_only = read_only
        self._checkpoint_mb = int(checkpoint_mb)
        self._conn: Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._use_rollups = rollups
        """False: writes keep no rollups and every query scans (benchmarks' baseline; a
        store written so must be rebuilt before it runs with rollups again)."""
        self._compact_rows = compact_rows
        self._memory_mb = memory_mb
        """DuckDB's memory limit after migrations and outside rollup rebuilds (0: its
        default; ``Settings.duckdb_memory_mb`` gives 150): building an index over a big table
        or rebuilding the rollups needs more than running does."""
        self.memory_lifts = 0
        """Queries and writes that ran once more without the memory limit (tests look)."""
        self._limit_lifted = False
        """The limit is lifted (``with_memory``, a rebuild) and not set again yet."""
        self._memory_hold_s = memory_hold_s
        self._restore_at = 0.0
        """When the end of a job may set the lifted limit again (monotonic seconds)."""
        self._unlogged_lifts = 0
        self._next_lift_log = 0.0
        self._appended = 0
        self._lowest: int | None = None
        """Rollup delta rows appended since the last compaction, and their earliest period."""
        RollupAnswers.__init__(self)
        self.clock: Callable[[], float] = time.time
        """Wall time, when a segment was asked (``rollup_segments.asked_at``)."""
        self._views = rollup_views.Views(time.monotonic)
        """Rollup answers kept in memory, moved forward by every write (used and changed on
        the DuckDB thread only)."""

    async def _run(self, what: str, job: Callable[[Connection], T]) -> T:
        """``job`` on the store's thread. A query or a write that runs out of memory under
        the store's limit runs once more without it (``memory.with_memory``)."""
        conn, executor = self._conn, self._executor
        if conn is None or executor is None:
            raise StoreUnavailable(f"duckdb store at {self._path} is not started")
        memory_mb = self._memory_mb
        liftable = what in ("query", "write") and bool(memory_mb)

        def run(conn: Connection) -> T:
            try:
                if liftable:
                    return with_memory(conn, memory_mb, what, lambda: job(conn), self._lifted)
                return job(conn)
            finally:
                if self._limit_lifted and time.monotonic() >= self._restore_at:
                    self._restore_limit(conn)

        try:
            return await asyncio.get_running_loop().run_in_executor(executor, run, conn)
        except duckdb.DataError as exc:  # the value, not the file: the same fails again
            raise StoreRefused(what, str(exc).splitlines()[0] if str(exc) else "") from exc
        except duckdb.Error as exc:
            raise StoreUnavailable(f"duckdb {what} failed: {exc}") from exc

    async def _changing(self, what: str, job: Callable[[Connection], T]) -> T:
        """Run a job that changes stored data other than by a write (deletions, registry
        changes, rebuilds): the in-memory rollup views go with it, on the DuckDB thread."""
        views = self._views

        def run(conn: Connection) -> T:
            try:
                return job(conn)
            finally:
                views.clear()

        return await self._run(what, run)

    async def _rows(self, sql: str, params: object = None) -> list[Row]:
        return await self._run("query", lambda conn: conn.execute(sql, params).fetchall())

    async def start(self) -> None:
        if self._conn is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hitstream-duckdb")
        config: dict[str, str | bool | int | float | list[str]] = {
            "checkpoint_threshold": f"{self._checkpoint_mb}MB",
            # jemalloc gives freed pages back to the system (decision 0039)
            "allocator_background_threads": True,
        }
        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(
                executor,
                lambda: duckdb.connect(self._path, read_only=self._read_only, config=config),
            )
        except duckdb.Error as exc:
            executor.shutdown(wait=False)
            raise StoreUnavailable(f"cannot open duckdb store at {self._path}: {exc}") from exc
        self._executor = executor
        self.migrations_applied = tuple(await self.migrate())
        await self._run("settings", self._limit_memory)

    def _limit_memory(self, conn: Connection) -> None:
        if self._memory_mb:
            conn.execute(f"SET memory_limit = '{int(self._memory_mb)}MB'")

    def _lifted(self, what: str, reason: str) -> None:
        """A job ran out of memory under the limit and runs once more without it (on the
        DuckDB thread). The limit is set again once ``memory_hold_s`` passed without another:
        setting it at once made every write of a heavy ingest at 10 M events fail once
        before it ran (decision 0032). Logged at most once a minute."""
        now = time.monotonic()
        self._limit_lifted = True
        self._restore_at = now + self._memory_hold_s
        self.memory_lifts += 1
        self._unlogged_lifts += 1
        if now >= self._next_lift_log:
            log.warning(
                "duckdb: %d job(s) needed more than HITSTREAM_DUCKDB_MEMORY_MB=%d (the last a "
                "%s: %s); they ran without the limit, set again after %.0f s without another",
                self._unlogged_lifts,
                self._memory_mb,
                what,
                reason,
                self._memory_hold_s,
            )
            self._unlogged_lifts, self._next_lift_log = 0, now + 60.0

    def _restore_limit(self, conn: Connection) -> None:
        """Set the memory limit again after a job that lifted it. DuckDB refuses while what
        it holds does not fit under the limit: the limit stays lifted and the end of the next
        job tries again."""
        try:
            self._limit_memory(conn)
        except duckdb.Error as exc:
            log.debug("duckdb: the memory limit is set again after a later job (%s)", exc)
        else:
            self._limit_lifted = False

    async def close(self) -> None:
        conn, executor = self._conn, self._executor
        self._conn = self._executor = None
        if conn is not None and executor is not None:
            with suppress(duckdb.Error):
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=False)

    async def migrate(self) -> list[str]:
        read_only = self._read_only
        return await self._run("migration", lambda conn: _migrate(conn, read_only))

    async def check(self) -> None:
        await self._rows("SELECT 1")

    async def positions(self, stream: str) -> dict[int, int]:
        rows = await self._rows(
            "SELECT partition, next_offset FROM positions WHERE stream = $s", {"s": stream}
        )
        return {int(partition): int(offset) for partition, offset in rows}

    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        return await self._run("query", lambda conn: _stored_ids(conn, event_ids))

    async def write(self, batch: WriteBatch) -> None:
        keep, views = self._use_rollups, self._views
        try:
            appended, lowest = await self._run(
                "write", lambda conn: _write(conn, batch, keep, views)
            )
        except (StoreUnavailable, StoreRefused, PositionConflict):
            raise
        except Exception as exc:  # a value the schema cannot hold: nothing was written
            raise StoreRefused("write", f"rolled back: {exc}") from exc
        self._appended += appended
        if lowest is not None:
            self._lowest = lowest if self._lowest is None else min(self._lowest, lowest)
        if self._appended >= self._compact_rows and self._lowest is not None:
            await self.compact_rollups(self._lowest)

    async def compact_rollups(self, from_hour: int = rollups_domain.NONE) -> None:
        """Fold the rollups' delta rows of periods ``>= from_hour`` into one row per key
        (the writes do it on their own once ``compact_rows`` delta rows piled up)."""

        def job(conn: Connection) -> None:
            with _tx(conn):
                rollups.compact(conn, from_hour)

        await self._run("rollup compaction", job)
        self._appended, self._lowest = 0, None

    async def open_sessions(self, since_ms: int) -> list[Session]:
        rows = await self._rows(
            f"{SELECT_SESSIONS} WHERE last_seen >= $since ORDER BY site_id, session_id",
            {"since": since_ms},
        )
        return sessions_of(rows)

    async def visits_of(
        self, site_visitors: Sequence[tuple[str, str]], since_ms: int
    ) -> list[Session]:
        wanted = set(site_visitors)
        rows = await self._rows(  # no index: last_seen's zone maps skip most row groups
            f"{SELECT_SESSIONS} WHERE last_seen >= $since "
            "AND visitor_id IN (SELECT unnest($visitors::VARCHAR[])) "
            "ORDER BY site_id, session_id",
            {"since": since_ms, "visitors": sorted({v for _, v in wanted})},
        )
        return [s for s in sessions_of(rows) if (s.site_id, s.visitor_id) in wanted]

    async def newest_visit_ms(self) -> int | None:
        ((newest,),) = await self._rows("SELECT max(last_seen) FROM sessions")
        return None if newest is None else int(newest)

    async def _stats(
        self, query: StatsQuery, group: str | None = None, buckets: list[int] | None = None
    ) -> list[Row]:
        """Rows of ``COLUMNS``: from the rollups when they can answer, else from raw events.
        The raw SQL is built first either way: building it validates the query. One job on
        the store's thread: no write comes between the rollups' check and their sums."""
        sql, params = stats.stats_sql(query, group=group, buckets=buckets)
        if not (self._use_rollups and rollups.usable(query, group, buckets)):
            self._answered("raw")
            return await self._rows(sql, params)

        views = self._views
        now_ms = None if self._read_only else int(self.clock() * 1000)

        def job(conn: Connection) -> tuple[str, list[Row]]:
            found = rollups.answer(conn, views, query, group=group, buckets=buckets, now_ms=now_ms)
            if found is not None:
                return "rollup", found
            return "raw", conn.execute(sql, params).fetchall()

        path, rows = await self._run("query", job)
        self._answered(path)
        return rows

    async def aggregate(self, query: StatsQuery) -> dict[str, float]:
        rows = await self._stats(query)
        return results(query, rows[0] if rows else None)

    async def timeseries(self, query: StatsQuery) -> list[TimeseriesPoint]:
        starts = bucket_starts(query)
        if not starts:
            return []
        by_bucket = {int(row[0]): row for row in await self._stats(query, buckets=starts)}
        return [TimeseriesPoint(s, results(query, by_bucket.get(s))) for s in starts]

    async def breakdown(self, query: StatsQuery) -> list[BreakdownRow]:
        if not query.property:
            raise QueryError("property", "is required for a breakdown")
        rows = await self._stats(query, group=query.property)
        return [BreakdownRow(str(row[0]), results(query, row)) for row in rows]

    async def register_segment(self, site_id: str, prop: str, value: str) -> bool:
        """Roll up breakdowns under the filter ``prop == value`` from the period after the
        site's newest stored event (what the first such breakdown does on its own); returns
        whether it was registered (new, and it fits: ``rollups.make_room``)."""
        now_ms, views = int(self.clock() * 1000), self._views
        return bool(
            await self._run(
                "query", lambda conn: rollups.want(conn, site_id, (prop, value), now_ms, views)
            )
        )

    async def rebuild_rollups(self) -> int:
        """Recompute the rollups from the stored events and visit rows (after an upgrade
        from a version without them, or to repair them); returns the events read. One job:
        writes and queries wait for it."""

        def job(conn: Connection) -> int:
            # a rebuild reads every event at once: DuckDB's own limit while it runs (0032),
            # set again when the job ends (``_run``)
            if self._memory_mb:
                self._limit_lifted, self._restore_at = True, 0.0
                conn.execute("RESET memory_limit")
            return rollups.rebuild(conn, EXPORT_COLUMNS, exported_event)

        read = await self._changing("rollup rebuild", job)
        self._appended, self._lowest = 0, None
        return read

    async def events_page(
        self, site_id: str, start_ms: int, end_ms: int, after: tuple[int, str] | None, limit: int
    ) -> list[ProcessedEvent]:
        after_ts, after_id = after if after is not None else (start_ms - 1, "")
        rows = await self._rows(
            f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events WHERE site_id = $s "
            "AND ts >= $start AND ts < $end AND (ts > $ats OR (ts = $ats AND event_id > $aid)) "
            "ORDER BY ts, event_id LIMIT $n",
            {
                "s": site_id,
                "start": start_ms,
                "end": end_ms,
                "ats": after_ts,
                "aid": after_id,
                "n": max(limit, 0),
            },
        )
        return [exported_event(row) for row in rows]

    async def latest_events(
        self, site_id: str, start_ms: int, end_ms: int, limit: int
    ) -> list[ProcessedEvent]:
        rows = await self._rows(
            f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events WHERE site_id = $s "
            "AND ts >= $start AND ts < $end ORDER BY ts DESC, event_id DESC LIMIT $n",
            {"s": site_id, "start": start_ms, "end": end_ms, "n": max(limit, 0)},
        )
        return [exported_event(row) for row in reversed(rows)]

    async def funnel(
        self, query: StatsQuery, steps: tuple[Filter, ...], window_ms: int | None
    ) -> list[int]:
        rows = await self._rows(*stats.funnel_sql(query, steps, window_ms))
        return [int(count) for count in rows[0]]

    async def data_version(self, site_id: str) -> int:
        rows = await self._rows("SELECT data_version FROM sites WHERE site_id = $s", {"s": site_id})
        return int(rows[0][0]) if rows else 0

    async def memory_usage(self) -> dict[str, int]:
        """DuckDB's own accounting (``duckdb_memory()``: every tag, zeros included): what
        its memory limit bounds. The process holds more (Python, the library, allocations
        DuckDB does not tag)."""
        rows = await self._rows(
            "SELECT tag, sum(memory_usage_bytes) FROM duckdb_memory() GROUP BY tag ORDER BY tag"
        )
        return {str(tag): int(used) for tag, used in rows}

    async def allocator_usage(self) -> dict[str, int]:
        """What DuckDB's jemalloc holds, by state (decision 0039): beside ``memory_usage``,
        the pages it keeps after DuckDB frees them."""
        return allocator.usage()

    async def view_groups(self) -> int:
        views = self._views  # read on the store's thread, where writes move the views
        return int(await self._run("views", lambda conn: views.groups))

    async def sites(self) -> list[str]:
        return [row[0] for row in await self._rows("SELECT site_id FROM sites ORDER BY site_id")]

    async def prop_keys(self, site_id: str) -> list[str]:
        rows = await self._rows(
            "SELECT key FROM rollup_props WHERE site_id = $s ORDER BY from_slot, key",
            {"s": site_id},
        )
        return [row[0] for row in rows]

    async def drop_counts(self, site_id: str | None = None) -> dict[str, int]:
        rows = await self._rows(
            "SELECT reason, sum(count) FROM drops WHERE $s IS NULL OR site_id = $s GROUP BY reason",
            {"s": site_id},
        )
        return {reason: int(count) for reason, count in rows}

    async def count_events(self, site_id: str | None = None) -> int:
        rows = await self._rows(
            "SELECT count(*) FROM events WHERE $s IS NULL OR site_id = $s", {"s": site_id}
        )
        return int(rows[0][0])

    async def delete_before(self, cutoff_ms: int) -> int:
        return await self._changing("retention", lambda conn: _delete_before(conn, cutoff_ms))

    # -- the registry (stores/sql/registry.py) and per-site deletions ---------------------

    async def _registry_tx(self, statements: Sequence[RegistryStatement]) -> list[list[Row]]:
        # DuckDB refuses parameters a statement does not name: pass only those it does
        named = [
            (sql, {k: v for k, v in params.items() if f"${k}" in sql}) for sql, params in statements
        ]
        return await self._changing("registry", lambda conn: _each(conn, named))

    def _site_data_statements(self, site_id: str) -> list[RegistryStatement]:
        s: dict[str, object] = {"s": site_id}
        return [
            ("DELETE FROM events WHERE site_id = $s", s),
            ("DELETE FROM sessions WHERE site_id = $s", s),
            ("DELETE FROM drops WHERE site_id = $s", s),
            *((f"DELETE FROM {table} WHERE site_id = $s", s) for table in rollups.TABLES),
            ("DELETE FROM rollup_state WHERE site_id = $s", s),
            ("DELETE FROM rollup_props WHERE site_id = $s", s),
            ("DELETE FROM rollup_segments WHERE site_id = $s", s),
            writes.bump_sites([site_id]),
        ]

    async def delete_site_before(self, site_id: str, cutoff_ms: int) -> int:
        p: dict[str, object] = {"s": site_id, "cut": cutoff_ms}

        def job(conn: Connection) -> int:
            with _tx(conn):
                rollups.forget_before(conn, cutoff_ms, site_id)
                conn.execute("DELETE FROM sessions WHERE site_id = $s AND last_seen < $cut", p)
                gone = conn.execute(
                    "DELETE FROM events WHERE site_id = $s AND ts < $cut", p
                ).fetchall()
                conn.execute(*writes.bump_sites([site_id]))
            return int(gone[0][0])

        return await self._changing("retention", job)

    async def forget_user(self, site_id: str, user_id: str, at_ms: int) -> int:
        check_forgotten_user(user_id)  # "" is every anonymous event of the site
        p: dict[str, object] = {"s": site_id, "u": user_id}
        keep = self._use_rollups
        statements = [
            (
                "DELETE FROM sessions WHERE site_id = $s AND session_id IN (SELECT "
                "session_id FROM events WHERE site_id = $s AND user_id = $u)",
                p,
            ),
            ("DELETE FROM events WHERE site_id = $s AND user_id = $u", p),
            writes.bump_sites([site_id]),
            forgotten_statement(site_id, user_id, at_ms),
            BUMP,  # processors reload their open visits (services/processor.py)
        ]

        def job(conn: Connection) -> int:
            gone = 0
            with _tx(conn):
                if keep:  # take back what the user counts, before the rows go
                    rows = conn.execute(
                        f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events "
                        "WHERE site_id = $s AND user_id = $u",
                        p,
                    ).fetchall()
                    events = [exported_event(row) for row in rows]
                    visitors = sorted({e.visitor_id for e in events})
                    rollups.forget_visitors(conn, site_id, visitors, events)
                for sql, params in statements:
                    named = {k: v for k, v in params.items() if f"${k}" in sql}
                    found = conn.execute(sql, named).fetchall()
                    if sql.startswith("DELETE FROM events"):
                        gone = int(found[0][0])
            if gone:  # the deleted rows leave DuckDB's write-ahead log now, not at its next
                conn.execute("CHECKPOINT")  # checkpoint (the file holds them no longer)
            return gone

        return await self._changing("forget user", job)

    # -- added for the live loop (issue 11 point 5) -----------------------------------------

    async def _one(self, sql: str, params: dict[str, object] | None = None) -> list[Row]:
        """A registry statement. A read (one ``SELECT``) runs as a plain job and leaves the
        in-memory rollup views as they are; anything else goes through ``_registry_tx``,
        which drops them. Without this, the processor's and the collector's registry-version
        checks (each once a second) dropped every view, and each live update rebuilt them
        all from the rollup tables (three quarters of its time on the DuckDB thread)."""
        if sql.lstrip()[:6].upper() != "SELECT":
            return await super()._one(sql, params)
        named = {k: v for k, v in (params or {}).items() if f"${k}" in sql}
        return await self._run("registry", lambda conn: conn.execute(sql, named).fetchall())

    async def stats_batch(self, site_id: str, calls: list[StatsCall]) -> StatsBatch:
        """The batch as one job on the store's thread, with the data version read in it
        (``stores/sql/duckdb/batch.py``): a live update's ~17 queries cost one job, and the
        rollups' coverage check runs once per range instead of once per query."""
        check_site(site_id, calls)
        keep, views = self._use_rollups, self._views
        now_ms = None if self._read_only else int(self.clock() * 1000)
        memory_mb, lifted = self._memory_mb, self._lifted
        done = await self._run(
            "query",
            lambda conn: duck_batch.answer_all(
                conn, views, keep, site_id, calls, now_ms, memory_mb, lifted
            ),
        )
        for path in done.paths:
            self._answered(path)
        return done.batch
