"""The shared store: PostgreSQL through psycopg 3 and a connection pool, for scale-out.

Several processors and web processes share one database. What makes that safe lives in SQL:
a write locks its positions rows and checks the fence inside its transaction
(``stores/sql/postgres/writes.py``), event ids are claimed in an ``event_ids`` table in the
same transaction (exact dedupe across processes), and migrations and partition creation take
advisory locks. Every driver or pool error leaves as ``StoreUnavailable`` (the transaction was
rolled back); ``PositionConflict`` and ``QueryError`` pass through as they are.

Outages: a connection-level failure starts a probe (``hitstream.breaker``); while PostgreSQL
cannot be reached every call fails at once with ``StoreUnavailable`` (a stats request gets
its 503 in milliseconds, not after the pool's wait), and once the probe gets through the
pool is replaced by a fresh one: the old pool's connections are all dead, and its own
reconnection backs off exponentially (up to minutes). No process restart is needed.

Nothing connects before ``start`` (which opens the pool and migrates); ``close`` closes it.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from hashlib import blake2b
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from hitstream.breaker import Breaker
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
from hitstream.stores.base import RollupAnswers, Store, WriteBatch
from hitstream.stores.sql.common import (
    EVENT_TEXT,
    EXPORT_COLUMNS,
    SELECT_SESSIONS,
    exported_event,
    results,
    sessions_of,
)
from hitstream.stores.sql.postgres import migrations, partitions, rollups, stats, writes
from hitstream.stores.sql.registry import BUMP, SqlDefinitions, forgotten_statement
from hitstream.stores.sql.registry import Statement as RegistryStatement

Connection = psycopg.AsyncConnection[Any]
Row = tuple[Any, ...]
_ICU_ROOT = "und-x-icu"
_RETENTION_LOCK = 0x68_73_72_65_74_61_69_6E
_PARAM = re.compile(r"\$(\w+)")
_BY_VISIT = 'site_id COLLATE "C", session_id COLLATE "C"'


class PostgresStore(RollupAnswers, Store, SqlDefinitions):
    name = "postgres"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 3.0,
        work_mem: str = "64MB",
        jit: bool = False,
        rollups: bool = True,
    ) -> None:
        """``timeout``: seconds to wait for a pooled connection (then ``StoreUnavailable``);
        short, because stats queries queue on a semaphore first and an outage is caught by
        the breaker, so only a saturated pool waits this long.
        ``work_mem``/``jit``: set on every pooled connection; stats queries hash distinct
        visitors and visits in memory, and JIT compiling costs more than it saves at this size.
        ``rollups``: answer the queries the rollups can answer from them (the default); off,
        every query scans raw events (the baseline the benchmarks compare against). Writes
        keep the rollups either way.
        """
        self._url = url
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._settings = {"work_mem": work_mem, "jit": "on" if jit else "off"}
        self._pool: AsyncConnectionPool[Connection] | None = None
        self._months: set[int] = set()
        """Months whose partition this process knows to exist."""
        self._collation: str | None = None
        self._use_rollups = rollups
        self.clock: Callable[[], float] = time.time
        """Wall time, when a segment was asked (``rollup_segments.asked_at``)."""
        self._refused: dict[tuple[str, str, str], int] = {}
        """(site, property, value) -> when registering that segment was last refused."""
        self._queries = asyncio.Semaphore(max(1, max_size - 2))
        """Stats queries in flight: they queue here, not for a pool connection (whose wait
        ends in ``StoreUnavailable`` after ``timeout``); two connections stay for the rest."""
        self._leads: dict[str, Connection] = {}
        """Leads this process holds, each on a connection of its own (``lead``)."""
        RollupAnswers.__init__(self)
        self.breaker = Breaker(
            "postgres", self._probe, error=StoreUnavailable, on_recovery=self._renew_pool
        )

    async def _configure(self, conn: Connection) -> None:
        await conn.set_autocommit(True)
        for name, value in self._settings.items():
            await conn.execute("SELECT set_config(%s, %s, false)", (name, value))

    @asynccontextmanager
    async def _connection(self, what: str) -> AsyncIterator[Connection]:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("postgres store is not started (or closed)")
        self.breaker.guard()
        try:
            async with pool.connection(timeout=self._timeout) as conn:
                yield conn
        except (StoreUnavailable, PositionConflict, QueryError):
            raise
        except psycopg.DataError as exc:  # the value, not the server: the same fails again
            raise StoreRefused(what, str(exc).splitlines()[0] if str(exc) else "") from exc
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.OperationalError):  # the server may be gone
                self.breaker.suspect(exc)
            raise StoreUnavailable(f"postgres {what} failed: {exc}") from exc

    async def _rows(self, sql: str, params: Any = None) -> list[Row]:
        async with self._connection("query") as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchall()

    async def _stats_rows(self, sql: str, params: Any = None) -> list[Row]:
        """A stats query. Its CTEs join per-group results on the group value, and the planner
        cannot estimate how many groups there are: with nested loops a breakdown of a site
        with many distinct pages (unique URLs) went quadratic (minutes at 100k events).
        Hash and merge joins are linear, so nested loops are off for these queries only."""
        async with self._queries, self._connection("query") as conn, conn.transaction():
            return await self._scan(conn, sql, params)

    async def _scan(self, conn: Connection, sql: str, params: Any) -> list[Row]:
        """Run a raw stats query inside the caller's transaction."""
        await conn.execute("SET LOCAL enable_nestloop = off")
        cursor = await conn.execute(sql, params)
        self._answered("raw")
        return await cursor.fetchall()

    async def _open_pool(self) -> AsyncConnectionPool[Connection]:
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._url,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            configure=self._configure,
            # a connection cut while idle is replaced at checkout, not handed to a caller
            check=self._check_connection,
            timeout=self._timeout,
            name="hitstream-store",
        )
        try:
            await pool.open(wait=True, timeout=max(self._timeout, 10.0))
        except psycopg.Error as exc:
            await pool.close()
            raise StoreUnavailable(f"cannot connect to postgres: {await self._why(exc)}") from exc
        return pool

    async def _why(self, exc: psycopg.Error) -> str:
        """Why the pool could not open: the pool itself says only that it timed out ("pool
        initialization incomplete"), so one direct connection asks the server (a database
        that does not exist, a refused password; no password is in its text)."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, connect_timeout=2, application_name="hitstream-probe"
            )
        except psycopg.Error as direct:
            return " ".join(str(direct).split())
        await conn.close()
        return str(exc)

    async def _check_connection(self, conn: Connection) -> None:
        """The pool's test of a connection before lending it: a dead one may mean a dead
        server, so the breaker probes at once (callers arriving next fail fast instead of
        waiting for the pool to give up)."""
        try:
            await AsyncConnectionPool.check_connection(conn)
        except psycopg.Error as exc:
            self.breaker.suspect(exc)
            raise

    async def _probe(self) -> None:
        """One fresh connection and a ``SELECT 1``: can PostgreSQL be reached at all?"""
        conn = await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=2, application_name="hitstream-probe"
        )
        try:
            await conn.execute("SELECT 1")
        finally:
            await conn.close()

    async def _renew_pool(self) -> None:
        """After an outage: a fresh pool in place of the one whose connections died."""
        if self._pool is None:
            return
        fresh = await self._open_pool()
        old, self._pool = self._pool, fresh
        await old.close()  # connections still lent out are closed when given back

    async def start(self) -> None:
        if self._pool is not None:
            return
        self._pool = await self._open_pool()
        try:
            self.migrations_applied = tuple(await self.migrate())
            rows = await self._rows(
                "SELECT collname FROM pg_collation WHERE collname = %s", (_ICU_ROOT,)
            )
        except BaseException:
            await self.close()
            raise
        self._collation = _ICU_ROOT if rows else None

    async def close(self) -> None:
        await self.breaker.close()
        pool, self._pool = self._pool, None
        self._months.clear()
        leads, self._leads = list(self._leads.values()), {}
        for conn in leads:
            # unlock first: the server releases a closed session's locks only once its
            # backend has exited, which may be after the next process asked for the lead
            with suppress(psycopg.Error):
                await conn.execute("SELECT pg_advisory_unlock_all()")
            with suppress(psycopg.Error):
                await conn.close()
        if pool is not None:
            await pool.close()

    async def migrate(self) -> list[str]:
        async with self._connection("migration") as conn:
            return await migrations.apply_pending(conn)

    async def check(self) -> None:
        await self._rows("SELECT 1")

    async def positions(self, stream: str) -> dict[int, int]:
        rows = await self._rows(
            "SELECT partition, next_offset FROM positions "
            "WHERE stream = %s AND next_offset IS NOT NULL",
            (stream,),
        )
        return {int(partition): int(offset) for partition, offset in rows}

    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        if not event_ids:
            return set()
        rows = await self._rows(
            "SELECT event_id FROM event_ids WHERE event_id = ANY(%b::text[])", (list(event_ids),)
        )
        return {row[0] for row in rows}

    async def write(self, batch: WriteBatch) -> None:
        ready = writes.plan(batch)
        async with self._connection("write") as conn:
            try:
                missing = ready.months - self._months
                if missing:  # DDL in transactions of its own, before the write's
                    await partitions.ensure(conn, missing)
                    self._months |= missing
                await rollups.register(conn, list(ready.events.values()))  # new prop keys
                await writes.write(conn, batch, ready)
            except (psycopg.Error, PositionConflict):
                raise
            except Exception as exc:  # a value the driver cannot send: rolled back
                raise StoreRefused("write", f"rolled back: {exc}") from exc

    async def open_sessions(self, since_ms: int) -> list[Session]:
        rows = await self._rows(
            f"{SELECT_SESSIONS} WHERE last_seen >= %s ORDER BY {_BY_VISIT}", (since_ms,)
        )
        return sessions_of(rows)

    async def visits_of(
        self, site_visitors: Sequence[tuple[str, str]], since_ms: int
    ) -> list[Session]:
        wanted = set(site_visitors)
        rows = await self._rows(  # the index sessions_visitor (migration 0012)
            f"{SELECT_SESSIONS} "
            "WHERE (site_id, visitor_id) IN (SELECT * FROM unnest(%s::text[], %s::text[])) "
            f"AND last_seen >= %s ORDER BY {_BY_VISIT}",
            ([s for s, _ in wanted], [v for _, v in wanted], since_ms),
        )
        return sessions_of(rows)

    async def newest_visit_ms(self) -> int | None:
        ((newest,),) = await self._rows("SELECT max(last_seen) FROM sessions")  # its index
        return None if newest is None else int(newest)

    async def events_page(
        self, site_id: str, start_ms: int, end_ms: int, after: tuple[int, str] | None, limit: int
    ) -> list[ProcessedEvent]:
        after_ts, after_id = after if after is not None else (start_ms - 1, "")
        rows = await self._rows(
            f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events WHERE site_id = %(s)s "
            "AND ts >= %(start)s AND ts < %(end)s "
            'AND (ts, event_id COLLATE "C") > (%(ats)s, %(aid)s::text COLLATE "C") '
            'ORDER BY ts, event_id COLLATE "C" LIMIT %(n)s',
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

    async def _stats(
        self, query: StatsQuery, group: str | None = None, buckets: list[int] | None = None
    ) -> list[Row]:
        """Rows of ``COLUMNS``: from the rollups when they can answer, else from raw events.
        The raw SQL is built first either way: building it validates the query."""
        sql, params = stats.stats_sql(
            query, group=group, buckets=buckets, collation=self._collation
        )
        if self._use_rollups and rollups.usable(query, group, buckets):
            async with self._queries, self._connection("query") as conn, conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                async with conn.cursor() as cur:
                    found = await rollups.answer(
                        cur, query, group=group, buckets=buckets, collation=self._collation
                    )
                if found is not None:
                    self._answered("rollup")
                else:
                    found = await self._scan(conn, sql, params)
            segment = rollups_domain.segment_of(query, group)
            if segment is not None:  # noted as asked; rolled up from now on if it is new
                await self._want(query.site_id, segment)
            return found
        return await self._stats_rows(sql, params)

    async def _want(self, site_id: str, segment: tuple[str, str]) -> None:
        """``register_segment`` after a breakdown under ``segment``, unless it was refused
        within the hour: a live view asks its breakdowns every second, and a refusal takes
        the registry's EXCLUSIVE lock."""
        now_ms, memo = int(self.clock() * 1000), (site_id, *segment)
        if self._refused.get(memo, rollups_domain.NONE) > now_ms - rollups_domain.SEGMENT_TOUCH_MS:
            return
        if not await self.register_segment(site_id, *segment):
            known = await self._rows(
                "SELECT 1 FROM rollup_segments WHERE site_id = %s AND dim = %s AND value = %s",
                memo,
            )
            if not known:
                if len(self._refused) >= 4096:
                    self._refused.clear()
                self._refused[memo] = now_ms

    async def register_segment(self, site_id: str, prop: str, value: str) -> bool:
        """Roll up breakdowns under the filter ``prop == value`` from the period after the
        site's newest stored event (what the first such breakdown does on its own); returns
        whether it was registered (new, and it fits: ``rollups.make_room``)."""
        async with self._connection("query") as conn:
            return await rollups.want(conn, site_id, (prop, value), int(self.clock() * 1000))

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

    async def latest_events(
        self, site_id: str, start_ms: int, end_ms: int, limit: int
    ) -> list[ProcessedEvent]:
        rows = await self._rows(
            f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events WHERE site_id = %(s)s "
            "AND ts >= %(start)s AND ts < %(end)s "
            'ORDER BY ts DESC, event_id COLLATE "C" DESC LIMIT %(n)s',
            {"s": site_id, "start": start_ms, "end": end_ms, "n": max(limit, 0)},
        )
        return [exported_event(row) for row in reversed(rows)]

    async def funnel(
        self, query: StatsQuery, steps: tuple[Filter, ...], window_ms: int | None
    ) -> list[int]:
        """Always from raw events: the rollups keep no visit order."""
        sql, params = stats.funnel_sql(query, steps, window_ms, self._collation)
        rows = await self._stats_rows(sql, params)
        return [int(count) for count in rows[0]]

    async def rebuild_rollups(self) -> int:
        """Recompute the rollups from the stored events (after an upgrade from a version
        without them, or to repair them); processor writes wait meanwhile. Returns the events
        read."""
        async with self._connection("rollup rebuild") as conn:
            return await rollups.rebuild(conn, [*EVENT_TEXT, *writes.EVENT_INTS, "props"])

    async def lead(self, name: str) -> bool:
        """A session advisory lock held on a connection outside the pool: while it answers,
        this process leads; when this process or the connection dies, PostgreSQL releases the
        lock and the next process to ask gets it."""
        if self._pool is None:
            raise StoreUnavailable("postgres store is not started (or closed)")
        self.breaker.guard()
        held = self._leads.get(name)
        if held is not None:
            try:
                await held.execute("SELECT 1")
                return True
            except psycopg.Error:
                del self._leads[name]
                with suppress(psycopg.Error):
                    await held.close()
                return False  # lost: ask again next time, like everyone else
        key = int.from_bytes(blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, round(self._timeout)),
                application_name=f"hitstream-lead-{name}",  # visible in pg_stat_activity
            )
        except psycopg.Error as exc:
            self.breaker.suspect(exc)
            raise StoreUnavailable(f"postgres lead {name!r}: cannot connect: {exc}") from exc
        try:
            cursor = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            await conn.close()
            raise StoreUnavailable(f"postgres lead {name!r} failed: {exc}") from exc
        if row is not None and row[0]:
            self._leads[name] = conn
            return True
        await conn.close()
        return False

    async def data_version(self, site_id: str) -> int:
        rows = await self._rows("SELECT data_version FROM sites WHERE site_id = %s", (site_id,))
        return int(rows[0][0]) if rows else 0

    async def sites(self) -> list[str]:
        rows = await self._rows('SELECT site_id FROM sites ORDER BY site_id COLLATE "C"')
        return [row[0] for row in rows]

    async def prop_keys(self, site_id: str) -> list[str]:
        rows = await self._rows(
            "SELECT key FROM rollup_props WHERE site_id = %(s)s "
            'ORDER BY from_slot, key COLLATE "C"',
            {"s": site_id},
        )
        return [row[0] for row in rows]

    async def drop_counts(self, site_id: str | None = None) -> dict[str, int]:
        rows = await self._rows(
            "SELECT reason, sum(count) FROM drops "
            "WHERE %(s)s::text IS NULL OR site_id = %(s)s::text GROUP BY reason",
            {"s": site_id},
        )
        return {reason: int(count) for reason, count in rows}

    async def count_events(self, site_id: str | None = None) -> int:
        if site_id is None:
            rows = await self._rows("SELECT count(*) FROM events")
        else:
            rows = await self._rows("SELECT count(*) FROM events WHERE site_id = %s", (site_id,))
        return int(rows[0][0])

    async def delete_before(self, cutoff_ms: int) -> int:
        """Whole months before the cutoff go as tables; the rest row by row, in one transaction
        with the sessions, the dedupe ids and the version bumps of the sites that lost rows."""
        async with self._connection("retention") as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_RETENTION_LOCK,))
            removed, touched, dropped = await partitions.drop_expired(conn, cutoff_ms)
            cursor = await conn.execute(
                "WITH gone AS (DELETE FROM events WHERE ts < %s RETURNING site_id) "
                "SELECT site_id, count(*) FROM gone GROUP BY site_id",
                (cutoff_ms,),
            )
            for site_id, count in await cursor.fetchall():
                touched.add(site_id)
                removed += int(count)
            cursor = await conn.execute(
                "WITH gone AS (DELETE FROM sessions WHERE last_seen < %s RETURNING site_id) "
                "SELECT DISTINCT site_id FROM gone",
                (cutoff_ms,),
            )
            touched.update(row[0] for row in await cursor.fetchall())
            await conn.execute("DELETE FROM event_ids WHERE ts < %s", (cutoff_ms,))
            async with conn.cursor() as cur:
                await rollups.forget_before(cur, cutoff_ms)
            if touched:  # cached stats of these sites went stale
                await conn.execute(*writes.bump_sites(sorted(touched)))
        self._months.difference_update(dropped)
        return removed

    # -- the registry (stores/sql/registry.py) and per-site deletions ---------------------

    async def _registry_tx(self, statements: Sequence[RegistryStatement]) -> list[list[Row]]:
        found: list[list[Row]] = []
        async with self._connection("registry") as conn, conn.transaction():
            for sql, params in statements:
                cursor = await conn.execute(_PARAM.sub(r"%(\1)s", sql), params)
                found.append(await cursor.fetchall() if cursor.description else [])
        return found

    def _site_data_statements(self, site_id: str) -> list[RegistryStatement]:
        s: dict[str, object] = {"s": site_id}
        statements: list[RegistryStatement] = [
            (
                "DELETE FROM event_ids WHERE event_id IN "
                "(SELECT event_id FROM events WHERE site_id = $s)",
                s,
            ),
            ("DELETE FROM events WHERE site_id = $s", s),
            ("DELETE FROM sessions WHERE site_id = $s", s),
            ("DELETE FROM drops WHERE site_id = $s", s),
        ]
        for table in (
            "rollups",
            "rollup_sums",
            "rollup_slots",
            "rollup_loads",
            "rollup_loads_daily",
            "rollup_props",
            "rollup_segments",
        ):
            statements.append((f"DELETE FROM {table} WHERE site_id = $s", s))
        statements.append(
            (
                "INSERT INTO sites (site_id, data_version) VALUES ($s, 1) ON CONFLICT (site_id) "
                "DO UPDATE SET data_version = sites.data_version + 1",
                s,
            )
        )
        return statements

    async def delete_site_before(self, site_id: str, cutoff_ms: int) -> int:
        p = {"s": site_id, "cut": cutoff_ms}
        async with self._connection("retention") as conn, conn.transaction():
            await conn.execute("LOCK TABLE positions IN EXCLUSIVE MODE")  # writers wait
            await conn.execute(
                "DELETE FROM event_ids WHERE event_id IN (SELECT event_id FROM events "
                "WHERE site_id = %(s)s AND ts < %(cut)s)",
                p,
            )
            cursor = await conn.execute(
                "WITH gone AS (DELETE FROM events WHERE site_id = %(s)s AND ts < %(cut)s "
                "RETURNING 1) SELECT count(*) FROM gone",
                p,
            )
            row = await cursor.fetchone()
            await conn.execute(
                "DELETE FROM sessions WHERE site_id = %(s)s AND last_seen < %(cut)s", p
            )
            async with conn.cursor() as cur:
                await rollups.forget_site_before(cur, site_id, cutoff_ms)
            await conn.execute(*writes.bump_sites([site_id]))
        return int(row[0]) if row else 0

    async def forget_user(self, site_id: str, user_id: str, at_ms: int) -> int:
        check_forgotten_user(user_id)  # "" is every anonymous event of the site
        """One transaction that first locks ``positions`` (processors wait: a write that
        touches the same visitor cannot interleave), takes back the user's rollups from their
        slots and visit rows, then deletes their events, ids and visits."""
        p = {"s": site_id, "u": user_id}
        async with self._connection("forget") as conn, conn.transaction():
            await conn.execute("LOCK TABLE positions IN EXCLUSIVE MODE")
            cursor = await conn.execute(
                "SELECT DISTINCT visitor_id FROM events WHERE site_id = %(s)s AND user_id = %(u)s",
                p,
            )
            visitors = [row[0] for row in await cursor.fetchall()]
            cursor = await conn.execute(
                f"SELECT {', '.join(EXPORT_COLUMNS)} FROM events "
                "WHERE site_id = %(s)s AND user_id = %(u)s",
                p,
            )
            events = [exported_event(row) for row in await cursor.fetchall()]
            async with conn.cursor() as cur:
                await rollups.forget_visitors(cur, site_id, visitors, events)
            await conn.execute(
                "DELETE FROM event_ids WHERE event_id IN (SELECT event_id FROM events "
                "WHERE site_id = %(s)s AND user_id = %(u)s)",
                p,
            )
            await conn.execute(
                "DELETE FROM sessions WHERE site_id = %(s)s AND session_id IN (SELECT "
                "session_id FROM events WHERE site_id = %(s)s AND user_id = %(u)s)",
                p,
            )
            cursor = await conn.execute(
                "WITH gone AS (DELETE FROM events WHERE site_id = %(s)s AND user_id = %(u)s "
                "RETURNING 1) SELECT count(*) FROM gone",
                p,
            )
            row = await cursor.fetchone()
            await conn.execute(*writes.bump_sites([site_id]))
            sql, params = forgotten_statement(site_id, user_id, at_ms)
            await conn.execute(_PARAM.sub(r"%(\1)s", sql), params)
            await conn.execute(BUMP[0])  # processors reload their open visits
        return int(row[0]) if row else 0
