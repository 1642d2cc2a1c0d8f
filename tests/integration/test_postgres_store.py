"""PostgreSQL-only behaviour of the store: partitions, fencing and dedupe under real concurrency,
concurrent migrations, retention by whole months. The shared contract runs in tests/contract.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import pytest

from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.stats import METRICS, Filter, Range, StatsQuery
from hitstream.errors import PositionConflict, StoreUnavailable
from hitstream.stores.base import WriteBatch
from tests.answers import Answer, filtered_queries, flat_answers
from tests.brokers import create_database, drop_database, unreachable

psycopg = pytest.importorskip("psycopg")

ROLLED = tuple(m for m in METRICS if m not in ("time_on_page", "scroll_depth", "avg_duration"))
"""The metrics the rollups answer; the engagement and duration ones scan (decision 0018)."""

from hitstream.domain import rollups  # noqa: E402
from hitstream.stores.postgres import PostgresStore  # noqa: E402
from hitstream.stores.sql.postgres import migrations  # noqa: E402

pytestmark = pytest.mark.integration
SITE = "pg.example"
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
T = TypeVar("T")


def utc(year: int, month: int, day: int = 1, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


def event(event_id: str, ts: int, visitor: str = "v", session: str = "s") -> ProcessedEvent:
    return ProcessedEvent(
        event_id=event_id,
        site_id=SITE,
        type="pageview",
        name="",
        timestamp=ts,
        received_at=ts,
        visitor_id=visitor,
        session_id=session,
        hostname="pg.example",
        url="https://pg.example/",
        props={"n": 1},
    )


@pytest.fixture(scope="module")
def database(pg_admin_url: str) -> Iterator[str]:
    url = create_database(pg_admin_url, "hs_it")
    yield url
    drop_database(pg_admin_url, url)


@pytest.fixture
def url(database: str) -> str:
    """A URL whose connections work in a fresh schema of their own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{database}?{urlencode({'options': f'-csearch_path={schema}'})}"


@pytest.fixture
async def store(url: str) -> AsyncIterator[PostgresStore]:
    opened = PostgresStore(url)
    await opened.start()
    yield opened
    await opened.close()


def sql_rows(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(query, params).fetchall())


def partitions(url: str) -> list[str]:
    rows = sql_rows(
        url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass ORDER BY 1",
    )
    return [str(row[0]) for row in rows]


async def test_months_get_partitions_and_odd_times_the_default(
    store: PostgresStore, url: str
) -> None:
    assert partitions(url) == ["events_default"]
    await store.write(
        WriteBatch(
            "e",
            {0: 3},
            [
                event("mar", utc(2026, 3, 31, 23)),
                event("apr", utc(2026, 4, 1)),
                event("old", utc(1960, 1, 1)),
            ],
        )
    )
    assert partitions(url) == ["events_default", "events_m202603", "events_m202604"]
    placed = sql_rows(url, "SELECT tableoid::regclass::text, event_id FROM events ORDER BY 2")
    assert placed == [
        ("events_m202604", "apr"),
        ("events_m202603", "mar"),
        ("events_default", "old"),
    ]
    everything = StatsQuery(SITE, Range(utc(1900, 1), utc(2100, 1)), metrics=("events",))
    assert await store.aggregate(everything) == {"events": 3.0}


async def test_a_new_month_takes_over_its_rows_from_the_default_partition(
    store: PostgresStore, url: str
) -> None:
    """A process whose partition cache is stale (retention elsewhere dropped the month) sends
    rows to DEFAULT; creating the month later must move them, or ATTACH would fail."""
    await store.write(WriteBatch("e", {0: 1}, [event("jan", utc(2026, 1, 5))]))
    may = utc(2026, 5, 2)
    with psycopg.connect(url, autocommit=True) as conn:  # a copy of "jan", retimed to May
        conn.execute(
            "INSERT INTO events SELECT (jsonb_populate_record(NULL::events, to_jsonb(e) "
            "|| jsonb_build_object('event_id', 'stray', 'ts', %s::bigint))).* "
            "FROM events e WHERE event_id = 'jan'",
            (may,),
        )
    assert sql_rows(url, "SELECT event_id FROM events_default") == [("stray",)]
    await store.write(WriteBatch("e", {0: 2}, [event("may", may + 1)]))
    assert "events_m202605" in partitions(url)
    assert sql_rows(url, "SELECT count(*) FROM events_default") == [(0,)]
    moved = sql_rows(url, "SELECT event_id FROM events_m202605 ORDER BY 1")
    assert moved == [("may",), ("stray",)]


async def test_concurrent_writers_with_the_same_start_exactly_one_wins(url: str) -> None:
    """Two processors that both believe they own partition 0 write batches starting at the
    same offset, released together from behind a lock: one commits, the other is fenced off."""
    first, second = PostgresStore(url), PostgresStore(url)
    await first.start()
    await second.start()
    try:
        for round_number in range(4):
            start, end = round_number * 100, (round_number + 1) * 100
            batches = [
                WriteBatch(
                    "orders",
                    {0: end},
                    [event(f"{who}-{round_number}-{i}", utc(2026, 3, 1) + i) for i in range(2000)],
                    starts={0: start},
                )
                for who in ("a", "b")
            ]
            with psycopg.connect(url) as gate:  # holds the position row (or its insert)
                if round_number == 0:
                    gate.execute("INSERT INTO positions (stream, partition) VALUES ('orders', 0)")
                else:
                    gate.execute(
                        "SELECT * FROM positions WHERE stream = 'orders' FOR UPDATE"
                    ).fetchall()
                tasks = [
                    asyncio.create_task(s.write(b))
                    for s, b in zip((first, second), batches, strict=True)
                ]
                await asyncio.sleep(0.3)
                assert not any(task.done() for task in tasks), "the writers must wait"
                gate.rollback()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            conflicts = [o for o in outcomes if isinstance(o, PositionConflict)]
            assert len(conflicts) == 1 and outcomes.count(None) == 1, outcomes
            assert await first.positions("orders") == {0: end}
            winner = "a" if outcomes[0] is None else "b"
            loser = "b" if winner == "a" else "a"
            assert await first.count_events() == 2000 * (round_number + 1)
            ids = [f"{who}-{round_number}-{i}" for who in (winner, loser) for i in (0, 1999)]
            assert await second.known_event_ids(ids) == set(ids[:2])
    finally:
        await first.close()
        await second.close()


async def test_the_same_event_ids_from_two_writers_at_once_are_stored_once(url: str) -> None:
    """Client retries can reach two partitions (two processors): the id claim is exact."""
    stores = [PostgresStore(url), PostgresStore(url)]
    for opened in stores:
        await opened.start()
    try:
        shared = [event(f"dup-{i}", utc(2026, 3, 2) + i) for i in range(3000)]
        own = [[event(f"{p}-{i}", utc(2026, 3, 3) + i) for i in range(500)] for p in (0, 1)]
        batches = [
            WriteBatch("orders", {p: 1}, own[p] + (shared if p == 0 else shared[::-1]))
            for p in (0, 1)
        ]
        await asyncio.gather(*(s.write(b) for s, b in zip(stores, batches, strict=True)))
        assert await stores[0].count_events() == 3000 + 2 * 500
        rows = sql_rows(url, "SELECT count(*), count(DISTINCT event_id) FROM events")
        assert rows == [(4000, 4000)]
        # and a later replay of all of it adds nothing
        await stores[1].write(replace(batches[0], positions={0: 2}))
        assert await stores[1].count_events() == 4000
    finally:
        for opened in stores:
            await opened.close()


async def test_migrations_run_once_when_processes_start_together(url: str) -> None:
    stores = [PostgresStore(url, min_size=1, max_size=2) for _ in range(4)]
    try:
        await asyncio.gather(*(s.start() for s in stores))
        names = [name for name, _ in migrations.migration_files()]
        recorded = sql_rows(url, "SELECT name FROM schema_migrations ORDER BY name")
        assert [row[0] for row in recorded] == names
        assert [await s.migrate() for s in stores] == [[]] * 4
        await stores[0].write(WriteBatch("e", {0: 1}, [event("x", utc(2026, 3, 1))]))
        assert await stores[3].count_events() == 1
    finally:
        for opened in stores:
            await opened.close()


async def test_concurrent_apply_pending_applies_each_file_once(url: str) -> None:
    async def apply() -> list[str]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await migrations.apply_pending(conn)

    results = await asyncio.gather(*(apply() for _ in range(3)))
    names = [name for name, _ in migrations.migration_files()]
    assert sorted(results, key=len) == [[], [], names]


async def test_retention_drops_whole_months_and_forgets_their_ids(
    store: PostgresStore, url: str
) -> None:
    jan = [event(f"j{i}", utc(2026, 1, 10) + i, session=f"s{i}") for i in range(5)]
    feb = event("f", utc(2026, 2, 20))
    mar = event("m", utc(2026, 3, 3))
    await store.write(WriteBatch("e", {0: 7}, [*jan, feb, mar]))
    version = await store.data_version(SITE)
    assert await store.delete_before(utc(2026, 2, 1)) == 5
    assert "events_m202601" not in partitions(url)
    assert await store.known_event_ids(["j0", "f", "m"]) == {"f", "m"}
    assert await store.data_version(SITE) == version + 1
    assert await store.delete_before(utc(2026, 2, 25)) == 1  # February: row by row
    assert "events_m202602" in partitions(url)
    assert await store.delete_before(utc(2026, 2, 25)) == 0
    assert await store.data_version(SITE) == version + 2
    # a late January event is stored again, in a partition made anew
    await store.write(WriteBatch("e", {0: 8}, [jan[0]]))
    assert "events_m202601" in partitions(url)
    assert await store.count_events(SITE) == 2


async def test_an_unreachable_server_is_store_unavailable(pg_admin_url: str) -> None:
    nowhere = PostgresStore(unreachable(pg_admin_url), timeout=1.0)
    with pytest.raises(StoreUnavailable):
        await nowhere.start()
    with pytest.raises(StoreUnavailable):
        await nowhere.count_events()


async def test_a_database_that_does_not_exist_is_named_as_the_reason(pg_admin_url: str) -> None:
    """The pool said only "pool initialization incomplete after 10.0 sec"; the server's own
    reason was in four warnings above it."""
    missing = urlsplit(pg_admin_url)._replace(path=f"/hs_missing_{uuid.uuid4().hex[:8]}")
    with pytest.raises(StoreUnavailable, match=r"database \"hs_missing_\w+\" does not exist"):
        await PostgresStore(missing.geturl(), timeout=1.0).start()


async def test_a_connection_killed_while_idle_is_replaced_unseen(
    store: PostgresStore, url: str
) -> None:
    await store.write(WriteBatch("e", {0: 1}, [event("a", utc(2026, 3, 1))]))
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = '' AND pid <> pg_backend_pid() "
            "AND datname = current_database()"
        )
    outcomes: list[int | None] = []
    for _ in range(3):
        try:
            outcomes.append(await store.count_events())
        except StoreUnavailable:
            outcomes.append(None)
    # the pooled connection died while idle: it is tested at checkout and replaced, so no
    # caller is handed a dead one
    assert outcomes == [1, 1, 1]


# -- rollups: the same answers as raw scans, and used only where they hold ---------------


def _traffic(count: int, start: int) -> tuple[list[ProcessedEvent], list[Session]]:
    """``count`` events of random visits over 3 days from ``start`` (benchmark generator)."""
    from benchmarks.store_bench import START_MS, generate

    events, sessions = generate(count, seed=11)
    shift = start - START_MS
    moved = [replace(e, timestamp=(e.timestamp - START_MS) // 10 + start) for e in events]
    visits = {
        key: replace(s, started_at=s.started_at + shift, last_seen=s.last_seen + shift)
        for key, s in sessions.items()
    }
    return moved, list(visits.values())


def _queries(site: str, start: int) -> list[tuple[str, StatsQuery]]:
    whole = Range(start, start + 3 * DAY)
    asked: list[tuple[str, StatsQuery]] = [
        ("aggregate", StatsQuery(site, whole, metrics=ROLLED)),
        ("aggregate", StatsQuery(site, Range(start + DAY, start + DAY + 7 * HOUR), ROLLED)),
        (
            "aggregate",
            StatsQuery(site, Range(start + 5 * HOUR, start + 2 * DAY + 7 * HOUR), ROLLED),
        ),
        ("timeseries", StatsQuery(site, whole, metrics=ROLLED, interval="day")),
        ("timeseries", StatsQuery(site, whole, ("visitors", "pageviews"), interval="hour")),
        ("timeseries", StatsQuery(site, whole, ("visitors",), interval="day", tz="Europe/Berlin")),
    ]
    for prop in [*sorted(rollups.DIMS), "prop:plan"]:
        for metrics in (("visitors", "visits"), ("pageviews", "visitors"), ("bounce_rate",)):
            asked.append(("breakdown", StatsQuery(site, whole, metrics, property=prop, limit=20)))
    return asked


_answers = flat_answers


async def test_rollups_answer_whole_hours_exactly_as_raw_scans(url: str) -> None:
    start = utc(2026, 4, 6)
    events, sessions = _traffic(6_000, start)
    rolled, raw = PostgresStore(url), PostgresStore(url, rollups=False)
    paths: list[str] = []
    rolled.count_answers(paths.append)  # what feeds hitstream_store_queries_total{path}
    await rolled.start()
    await raw.start()
    try:
        for offset in range(0, len(events), 500):  # processor-sized batches
            chunk = events[offset : offset + 500]
            ids = {e.session_id for e in chunk}
            touched = [s for s in sessions if s.session_id in ids]
            await rolled.write(
                WriteBatch("e", {0: offset + 500}, chunk, touched, starts={0: offset})
            )
        site = events[0].site_id
        asked = _queries(site, start)
        got, want = await _answers(rolled, asked), await _answers(raw, asked)
        # the same numbers; percentiles may differ in the last bit (PostgreSQL's arithmetic
        # against the memory store's, which the rollups use)
        assert got == [(*row[:3], pytest.approx(row[3], rel=1e-12)) for row in want]
        assert rolled.answered == {"rollup": len(asked)}
        assert paths == ["rollup"] * len(asked)
        assert raw.answered == {"raw": len(asked)}
        # one ``property == value`` filter: the rollup rows of that value; other filters scan
        by_rollups, by_scans = filtered_queries(events, site, start)
        filtered = by_rollups + by_scans
        got, want = await _answers(rolled, filtered), await _answers(raw, filtered)
        assert got == [(*row[:3], pytest.approx(row[3], rel=1e-12)) for row in want]
        assert sum(1 for *_, value in want if value) > len(filtered)
        assert rolled.answered == {"rollup": len(asked) + len(by_rollups), "raw": len(by_scans)}
    finally:
        await rolled.close()
        await raw.close()


async def test_engagement_events_leave_the_counts_exact_and_their_sums_are_rolled_up(
    url: str,
) -> None:
    """The same traffic plus an engagement event after every pageview and a duration on every
    custom event: the rolled-up counts do not move (engagement is no activity), the
    engagement and duration metrics are what the test computes, and every query asking them
    is answered from the rollups exactly as a raw scan of the same data answers it."""
    start = utc(2026, 4, 6)
    events, sessions = _traffic(3_000, start)
    extra: list[ProcessedEvent] = []
    for number, e in enumerate(events):
        if e.type == "pageview":
            extra.append(
                replace(
                    e,
                    event_id=f"{e.event_id}-en",
                    type="engagement",
                    timestamp=e.timestamp + 1,
                    engaged_ms=number * 7 % 90_000,
                    scroll_depth=None if number % 3 == 0 else number % 101,
                    load_time_ms=None,
                )
            )
    timed = [
        replace(e, duration_ms=n * 13 % 20_000) if e.type == "custom" else e
        for n, e in enumerate(events)
    ]
    plain, measured, raw = PostgresStore(url), PostgresStore(url), PostgresStore(url, rollups=False)
    await plain.start()
    await measured.start()
    await raw.start()
    try:
        run = uuid.uuid4().hex[:8]  # ids and sites of this test only: ids are stored once
        site = f"{events[0].site_id}-{run}"
        ours = [replace(e, site_id=site, event_id=f"p{run}{e.event_id}") for e in events]
        await plain.write(
            WriteBatch("p", {0: 1}, ours, [replace(s, site_id=site) for s in sessions])
        )
        mine = [
            replace(e, site_id=f"{site}-m", event_id=f"m{run}{e.event_id}") for e in timed + extra
        ]
        await measured.write(
            WriteBatch("m", {0: 1}, mine, [replace(s, site_id=f"{site}-m") for s in sessions])
        )
        asked = _queries(site, start)
        want = await _answers(plain, asked)
        got = await _answers(measured, [(k, replace(q, site_id=f"{site}-m")) for k, q in asked])
        assert got == want
        assert measured.answered == {"rollup": len(asked)}
        whole = Range(start, start + 3 * DAY)
        query = StatsQuery(f"{site}-m", whole, ("time_on_page", "scroll_depth", "avg_duration"))
        result = await measured.aggregate(query)
        depths = [e.scroll_depth for e in extra if e.scroll_depth is not None]
        durations = [e.duration_ms for e in timed if e.duration_ms is not None]
        assert result == pytest.approx(
            {
                "time_on_page": sum(e.engaged_ms or 0 for e in extra) / len(extra) / 1000,
                "scroll_depth": sum(depths) / len(depths),
                "avg_duration": sum(durations) / len(durations) / 1000,
            },
            rel=1e-12,
        )
        assert "raw" not in measured.answered
        engaged = ("time_on_page", "scroll_depth", "avg_duration", "visitors")
        summed = [
            ("aggregate", replace(query, metrics=engaged)),
            ("aggregate", replace(query, range=Range(start + 5 * HOUR, start + DAY + 7 * HOUR))),
            ("timeseries", replace(query, metrics=engaged, interval="hour")),
            ("timeseries", replace(query, metrics=("avg_duration",), interval="day")),
        ] + [
            ("breakdown", replace(query, metrics=(first, *rest), property=prop, limit=15))
            for prop in ("page", "event_name", "country", "event_type")
            for first, *rest in (engaged, ("avg_duration", "events"), ("scroll_depth",))
        ]
        before = measured.answered["rollup"]
        assert await _answers(measured, summed) == await _answers(raw, summed)
        assert measured.answered["rollup"] == before + len(summed)
    finally:
        await plain.close()
        await measured.close()
        await raw.close()


async def test_an_event_in_the_edge_period_past_the_range_end_means_a_raw_scan(
    store: PostgresStore,
) -> None:
    t = utc(2026, 4, 6, 10)
    await store.write(WriteBatch("e", {0: 3}, [event("a", t + 5), event("b", t + 25 * MINUTE)]))
    inside = StatsQuery(SITE, Range(t, t + 20 * MINUTE), ("pageviews", "visitors"))
    assert await store.aggregate(inside) == {"pageviews": 1.0, "visitors": 1.0}
    assert store.answered == {"raw": 1}
    # nothing of the site between the end and the next half hour: the rollups hold exactly it
    assert await store.aggregate(replace(inside, range=Range(t, t + 26 * MINUTE))) == {
        "pageviews": 2.0,
        "visitors": 1.0,
    }
    assert store.answered == {"raw": 1, "rollup": 1}


async def test_half_hour_time_zones_get_their_days_from_the_rollups(url: str) -> None:
    start = utc(2026, 4, 6) - 5 * HOUR - 30 * MINUTE  # midnight in Kolkata (+05:30)
    events, sessions = _traffic(2_000, start)
    rolled, raw = PostgresStore(url), PostgresStore(url, rollups=False)
    await rolled.start()
    await raw.start()
    try:
        await rolled.write(WriteBatch("e", {0: 1}, events, sessions))
        site, whole = events[0].site_id, Range(start, start + 3 * DAY)
        asked = [
            ("aggregate", StatsQuery(site, whole, ROLLED, tz="Asia/Kolkata")),
            ("timeseries", StatsQuery(site, whole, ROLLED, interval="day", tz="Asia/Kolkata")),
            ("breakdown", StatsQuery(site, whole, ("visitors", "visits"), property="page")),
        ]
        got, want = await _answers(rolled, asked), await _answers(raw, asked)
        assert got == [(*row[:3], pytest.approx(row[3], rel=1e-12)) for row in want]
        assert rolled.answered == {"rollup": 3}
        # Kathmandu (+05:45) days start on a quarter hour: those scan
        nepal = StatsQuery(site, whole, ("visitors",), interval="day", tz="Asia/Kathmandu")
        await rolled.timeseries(nepal)
        assert rolled.answered == {"rollup": 3, "raw": 1}
    finally:
        await rolled.close()
        await raw.close()


async def test_retention_moves_the_rollups_start_past_the_hours_it_cut(
    store: PostgresStore,
) -> None:
    t = utc(2026, 4, 6, 10)
    await store.write(
        WriteBatch("e", {0: 3}, [event("a", t), event("b", t + 40 * MINUTE), event("c", t + HOUR)])
    )
    assert await store.delete_before(t + 30 * MINUTE) == 1
    query = StatsQuery(SITE, Range(t, t + 2 * HOUR), ("pageviews",))
    assert await store.aggregate(query) == {"pageviews": 2.0}
    assert store.answered == {"raw": 1}  # the 10:00 hour lost an event: not from the rollups
    later = replace(query, range=Range(t + HOUR, t + 2 * HOUR))
    assert await store.aggregate(later) == {"pageviews": 1.0}
    assert store.answered == {"raw": 1, "rollup": 1}


async def test_a_database_migrated_with_events_answers_its_past_from_raw_events(
    store: PostgresStore, url: str
) -> None:
    t = utc(2026, 4, 6, 10)
    await store.write(WriteBatch("e", {0: 1}, [event("a", t + 5)]))
    with psycopg.connect(url, autocommit=True) as conn:  # as if written before schema 2
        conn.execute("DROP TABLE rollups, rollup_slots, rollup_loads")
        conn.execute("ALTER TABLE sites DROP COLUMN rollup_from")
        conn.execute("DELETE FROM schema_migrations WHERE name = '0002_rollups'")
    assert await store.migrate() == ["0002_rollups"]
    await store.write(WriteBatch("e", {0: 2}, [event("b", t + HOUR + 5)], starts={0: 1}))
    day = StatsQuery(SITE, Range(t, t + DAY), ("pageviews", "visitors", "visits"))
    assert await store.aggregate(day) == {"pageviews": 2.0, "visitors": 1.0, "visits": 1.0}
    assert store.answered == {"raw": 1}
    after = replace(day, range=Range(t + HOUR, t + DAY))
    assert await store.aggregate(after) == {"pageviews": 1.0, "visitors": 1.0, "visits": 1.0}
    assert store.answered == {"raw": 1, "rollup": 1}


async def test_one_process_leads_and_the_lead_passes_on_when_it_dies(url: str) -> None:
    first, second = PostgresStore(url), PostgresStore(url)
    await first.start()
    await second.start()
    try:
        assert await first.lead("alerting")
        assert await first.lead("alerting")  # held: asking again keeps it
        assert not await second.lead("alerting")
        assert await second.lead("other")  # leads are by name
        with psycopg.connect(url, autocommit=True) as conn:  # the holder's connection dies
            killed = conn.execute(
                # this database's holder only: other tests (other databases) may lead too,
                # and a refused asker's connection may linger a moment after its close
                "WITH lead AS MATERIALIZED (SELECT pid FROM pg_stat_activity "
                "WHERE application_name = 'hitstream-lead-alerting' "
                "AND datname = current_database() "
                "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')) "
                "SELECT pg_terminate_backend(pid) FROM lead"
            ).fetchall()
        assert killed == [(True,)]
        assert not await first.lead("alerting")  # it notices, and lets go
        assert await second.lead("alerting")  # released: the next to ask takes it
        assert not await first.lead("alerting")
        await second.close()
        assert await first.lead("alerting")  # a holder that closes releases too
    finally:
        await first.close()
        await second.close()


async def test_migration_3_builds_the_daily_load_times_from_the_hourly_ones(
    store: PostgresStore, url: str
) -> None:
    t = utc(2026, 4, 6, 22)
    loads = [replace(event(f"l{i}", t + i * 20 * MINUTE), load_time_ms=100 * i) for i in range(9)]
    await store.write(WriteBatch("e", {0: 1}, loads))  # 22:00 on the 6th to 00:40 on the 7th
    query = StatsQuery(
        SITE, Range(t - 22 * HOUR, t + 26 * HOUR), ("load_time_p50", "load_time_p95")
    )
    want = await store.aggregate(query)
    assert want == {"load_time_p50": 400.0, "load_time_p95": pytest.approx(760.0)}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE rollup_loads_daily")
        conn.execute("DELETE FROM schema_migrations WHERE name = '0003_daily_loads'")
    assert await store.migrate() == ["0003_daily_loads"]
    assert sql_rows(url, "SELECT day, sum(n) FROM rollup_loads_daily GROUP BY 1 ORDER BY 1") == [
        (utc(2026, 4, 6), 6),
        (utc(2026, 4, 7), 3),
    ]
    assert await store.aggregate(query) == want
    assert store.answered == {"rollup": 2}


async def test_stats_queries_beyond_the_pool_queue_instead_of_failing(url: str) -> None:
    """A dashboard asks ~16 queries at once; slow ones (raw scans of a big site) must queue,
    not fail after the pool's short wait for a connection."""
    store = PostgresStore(url, max_size=3, timeout=0.3)
    await store.start()
    try:
        t = utc(2026, 4, 6, 10)
        await store.write(WriteBatch("e", {0: 1}, [event("a", t)]))
        query = StatsQuery(SITE, Range(t, t + 30 * MINUTE), ("pageviews",))
        with psycopg.connect(url) as blocker:  # every query waits on this lock for 1.5 s
            blocker.execute("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            asked = [asyncio.create_task(store.aggregate(query)) for _ in range(8)]
            await asyncio.sleep(1.5)
            blocker.rollback()
        answers = await asyncio.gather(*asked)
        assert answers == [{"pageviews": 1.0}] * 8
        assert sum(store.answered.values()) == 8
    finally:
        await store.close()


def test_migrate_rebuild_rollups_recomputes_them_from_the_events(url: str) -> None:
    """The upgrade path: rollups lost (or never kept) come back, exactly, from the events."""
    from typer.testing import CliRunner

    from hitstream.cli import app

    start = utc(2026, 4, 6)
    events, sessions = _traffic(3_000, start)

    async def fill_and_answer() -> list[Answer]:
        store, raw = PostgresStore(url), PostgresStore(url, rollups=False)
        await store.start()
        await raw.start()
        try:
            await store.write(WriteBatch("e", {0: 1}, events, sessions))
            return await _answers(raw, _queries(events[0].site_id, start))
        finally:
            await store.close()
            await raw.close()

    want = asyncio.run(fill_and_answer())
    with psycopg.connect(url, autocommit=True) as conn:  # as if kept by an older version
        conn.execute("TRUNCATE rollups, rollup_slots, rollup_loads, rollup_loads_daily")
        conn.execute("UPDATE sites SET rollup_from = 9000000000000000")
    env = {"HITSTREAM_STORE_URL": url, "HITSTREAM_LOG_LEVEL": "warning"}
    result = CliRunner().invoke(app, ["migrate", "--rebuild-rollups"], env=env)
    assert result.exit_code == 0, result.output
    assert "rollups rebuilt from 3,000 events" in result.output

    async def answer() -> tuple[list[Answer], Counter[str]]:
        store = PostgresStore(url)
        await store.start()
        try:
            return await _answers(store, _queries(events[0].site_id, start)), store.answered
        finally:
            await store.close()

    got, answered = asyncio.run(answer())
    assert got == [(*row[:3], pytest.approx(row[3], rel=1e-12)) for row in want]
    assert set(answered) == {"rollup"}


async def test_migration_4_drops_hourly_rollups_until_they_are_rebuilt(
    store: PostgresStore, url: str
) -> None:
    t = utc(2026, 4, 6, 10)
    await store.write(WriteBatch("e", {0: 1}, [event("a", t + 5), event("b", t + 40 * MINUTE)]))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE name = '0004_half_hours'")
    assert await store.migrate() == ["0004_half_hours"]
    assert sql_rows(url, "SELECT count(*) FROM rollups") == [(0,)]
    day = StatsQuery(SITE, Range(t, t + DAY), ("pageviews", "visitors"))
    assert await store.aggregate(day) == {"pageviews": 2.0, "visitors": 1.0}
    assert store.answered == {"raw": 1}  # the past scans until a rebuild
    assert await store.rebuild_rollups() == 2
    assert await store.aggregate(day) == {"pageviews": 2.0, "visitors": 1.0}
    assert store.answered == {"raw": 1, "rollup": 1}


async def test_migration_9_sums_the_past_only_after_a_rebuild(
    store: PostgresStore, url: str
) -> None:
    """A database from before schema 9 has events with engagement but no sums: queries that
    ask engagement metrics over its past scan (the counts still come from rollups) until a
    rebuild; after it, the same answers come from the rollups."""
    t = utc(2026, 4, 6, 10)
    seen = [
        event("a", t + 5),
        replace(event("a-en", t + 9), type="engagement", engaged_ms=4_000, scroll_depth=60),
        replace(
            event("b", t + 40 * MINUTE, "v2", "s2"), type="custom", name="x", duration_ms=1_500
        ),
    ]
    await store.write(WriteBatch("e", {0: 1}, seen))
    with psycopg.connect(url, autocommit=True) as conn:  # as if written before schema 9
        conn.execute("DROP TABLE rollup_sums")
        conn.execute("ALTER TABLE sites DROP COLUMN sums_from")
        conn.execute("DELETE FROM schema_migrations WHERE name = '0009_rollup_sums'")
    assert await store.migrate() == ["0009_rollup_sums"]
    day = StatsQuery(SITE, Range(t, t + DAY), ("time_on_page", "scroll_depth", "avg_duration"))
    want = {"time_on_page": 4.0, "scroll_depth": 60.0, "avg_duration": 1.5}
    assert await store.aggregate(day) == want
    assert store.answered == {"raw": 1}
    counts = replace(day, metrics=("pageviews", "visitors"))
    assert await store.aggregate(counts) == {"pageviews": 1.0, "visitors": 2.0}
    assert store.answered == {"raw": 1, "rollup": 1}
    assert await store.rebuild_rollups() == 3
    assert await store.aggregate(day) == want
    assert store.answered == {"raw": 1, "rollup": 2}


async def behind_a_held_write(
    url: str, later: int, registration: Callable[[], Coroutine[Any, Any, T]]
) -> T:
    """A write in flight read the site's keys and segments (it holds ROW SHARE on
    ``rollup_props``) and stored a copy of event ``a`` at ``later``: ``registration``,
    started meanwhile, waits for its lock until that write commits; then its result."""
    with psycopg.connect(url) as held:
        held.execute("LOCK TABLE rollup_props IN ROW SHARE MODE")
        held.execute(
            "INSERT INTO events SELECT (jsonb_populate_record(NULL::events, to_jsonb(e) || "
            "jsonb_build_object('event_id', 'w', 'ts', %s::bigint))).* "
            "FROM events e WHERE event_id = 'a'",
            (later,),
        )
        task = asyncio.create_task(registration())
        for _ in range(200):  # until the registration waits for the lock
            waiting = sql_rows(
                url,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND starts_with(query, 'LOCK TABLE rollup_props IN EXCLUSIVE')",
            )
            if waiting == [(1,)]:
                break
            await asyncio.sleep(0.05)
        assert waiting == [(1,)]
        assert not task.done()
        held.commit()
    return await task


async def test_a_new_property_key_waits_for_writes_that_read_the_keys(
    store: PostgresStore, url: str
) -> None:
    """A write in flight read the site's keys (it holds ROW SHARE) and stores an event three
    hours on without the new key: the key's registration waits for it, so the key's rollups
    start after that event. Breakdowns from then on read rollups; earlier starts scan."""
    t = utc(2026, 4, 6, 10)
    await store.write(WriteBatch("e", {0: 1}, [event("a", t)]))
    later = t + 3 * HOUR
    batch = [replace(event("b", t + HOUR, "v2", "s2"), props={"plan": "pro"})]
    await behind_a_held_write(
        url, later, lambda: store.write(WriteBatch("e", {0: 2}, batch, starts={0: 1}))
    )
    start = rollups.slot_of(later) + rollups.SLOT
    assert sql_rows(url, "SELECT key, from_slot FROM rollup_props WHERE key = 'plan'") == [
        ("plan", start)
    ]
    for lo, path in ((t, "raw"), (start, "rollup")):
        query = StatsQuery(SITE, Range(lo, start + DAY), ("visitors",), property="prop:plan")
        await store.breakdown(query)
        assert store.answered[path] == 1


async def test_breakdowns_under_a_filter_read_its_segment_from_the_period_after_it_was_asked(
    url: str,
) -> None:
    """A breakdown by another property under one ``==`` filter scans and registers the
    filter as a segment from the period after the site's newest stored event; ranges from
    there read the segment's rollups after more writes, equal to raw scans (entry pages,
    custom properties and engagement sums included); earlier starts scan until a rebuild."""
    start = utc(2026, 4, 6)
    events, sessions = _traffic(4_000, start)
    site = Counter(e.site_id for e in events).most_common(1)[0][0]
    countries = Counter(e.country for e in events if e.site_id == site)
    filters = [
        Filter("country", "==", (countries.most_common(1)[0][0],)),
        Filter("prop:plan", "==", ("pro",)),
    ]
    rolled, raw = PostgresStore(url), PostgresStore(url, rollups=False)
    await rolled.start()
    await raw.start()

    def asked(lo: int) -> list[tuple[str, StatsQuery]]:
        whole = Range(lo, start + 3 * DAY)
        counted = ("visitors", "visits", "bounce_rate", "pageviews", "events")
        found: list[tuple[str, StatsQuery]] = []
        for flt in filters:
            for prop in ("page", "source", "entry_page", "browser", "country", "prop:plan"):
                if prop != flt.property:
                    query = StatsQuery(site, whole, counted, (flt,), property=prop, limit=50)
                    found.append(("breakdown", query))
            engaged = ("time_on_page", "avg_duration", "events")
            query = StatsQuery(site, whole, engaged, (flt,), property="device", limit=50)
            found.append(("breakdown", query))
        return found

    async def write(part: list[ProcessedEvent], at: int) -> None:
        for offset in range(0, len(part), 500):
            chunk = part[offset : offset + 500]
            ids = {e.session_id for e in chunk}
            touched = [s for s in sessions if s.session_id in ids]
            positions, starts = {0: at + offset + len(chunk)}, {0: at + offset}
            await rolled.write(WriteBatch("e", positions, chunk, touched, starts=starts))

    try:
        first = [e for e in events if e.timestamp < start + DAY]
        rest = [e for e in events if e.timestamp >= start + DAY]
        await write(first, 0)
        early = asked(start)
        assert await _answers(rolled, early) == await _answers(raw, early)
        assert rolled.answered == {"raw": len(early)}
        since = rollups.slot_of(max(e.timestamp for e in first if e.site_id == site))
        since += rollups.SLOT
        assert sorted(sql_rows(url, "SELECT dim, value, from_slot FROM rollup_segments")) == [
            (f.property, f.values[0], since) for f in sorted(filters, key=lambda f: f.property)
        ]
        await write(rest, len(first))
        late = asked(since)
        got, want = await _answers(rolled, late + early), await _answers(raw, late + early)
        assert got == [(*row[:3], pytest.approx(row[3], rel=1e-12)) for row in want]
        assert sum(1 for *_, value in want if value) > len(late)
        assert rolled.answered == {"raw": 2 * len(early), "rollup": len(late)}
        assert await rolled.rebuild_rollups() == len(events)
        got = await _answers(rolled, late + early)
        assert got == [(*row[:3], pytest.approx(row[3], rel=1e-12)) for row in want]
        assert rolled.answered == {"raw": 2 * len(early), "rollup": 2 * len(late) + len(early)}
    finally:
        await rolled.close()
        await raw.close()


async def test_a_new_segment_waits_for_writes_that_read_the_segments(
    store: PostgresStore, url: str
) -> None:
    """A write in flight read the site's segments (it holds ROW SHARE) and stores an event
    three hours on: the segment's registration waits for it, so the segment starts after
    that event, which it does not hold."""
    t = utc(2026, 4, 6, 10)
    await store.write(WriteBatch("e", {0: 1}, [event("a", t)]))
    later = t + 3 * HOUR
    assert await behind_a_held_write(
        url, later, lambda: store.register_segment(SITE, "country", "")
    )
    assert not await store.register_segment(SITE, "country", "")  # known already
    start = rollups.slot_of(later) + rollups.SLOT
    assert sql_rows(url, "SELECT dim, value, from_slot FROM rollup_segments") == [
        ("country", "", start)
    ]


async def test_a_new_segment_replaces_one_idle_for_a_day_with_its_rows(
    store: PostgresStore, url: str
) -> None:
    now = [1_800_000_000.0]
    store.clock = lambda: now[0]
    values = [f"C{n:02}" for n in range(rollups.SEGMENTS_PER_SITE)]
    for value in values:
        assert await store.register_segment(SITE, "country", value)
        now[0] += 60
    t = utc(2026, 4, 6, 10)
    batch = [replace(event("a", t), country="C01"), replace(event("b", t, "w", "z"), country="C02")]
    await store.write(WriteBatch("e", {0: 2}, batch))
    whole = Range(t - HOUR, t + HOUR)

    def under(value: str) -> StatsQuery:
        flt = Filter("country", "==", (value,))
        return StatsQuery(SITE, whole, ("visitors",), (flt,), property="page", limit=10)

    def rows_of(value: str) -> int:
        dims = rollups.segment_dims(("country", value), ["n"])
        found = sql_rows(url, "SELECT count(*) FROM rollups WHERE dim = ANY(%s)", (dims,))
        return int(str(found[0][0]))

    assert not await store.register_segment(SITE, "country", "new")  # none idle
    now[0] += 7_200
    assert [r.value for r in await store.breakdown(under("C00"))] == []  # noted as asked
    assert rows_of("C00") == 0 and rows_of("C01") > 0
    now[0] += 86_400 - 3_600
    assert await store.register_segment(SITE, "country", "new")
    kept = sql_rows(url, "SELECT value FROM rollup_segments ORDER BY value")
    assert [v for (v,) in kept] == sorted([values[0], *values[2:], "new"])
    assert rows_of("C01") == 0 and rows_of("C02") > 0
    got = await store.breakdown(under("C02"))
    assert [(r.value, r.results["visitors"]) for r in got] == [("/", 1.0)]
    assert store.answered["rollup"] == 2


async def test_segments_keep_to_a_budget_of_the_sites_events(store: PostgresStore) -> None:
    t = utc(2026, 4, 6, 10)
    batch = [event("a", t), event("b", t + HOUR, "w", "z"), event("c", t + 30 * HOUR, "x", "y")]
    await store.write(WriteBatch("e", {0: 3}, batch))
    assert await store.register_segment(SITE, "hostname", "pg.example")  # every event
    assert await store.register_segment(SITE, "user_id", "")  # every event: the budget is used
    assert not await store.register_segment(SITE, "page", "/")
    assert await store.register_segment(SITE, "page", "/none")  # holds no event


async def test_an_event_postgresql_cannot_hold_is_dead_lettered_and_the_rest_stored(
    store: PostgresStore,
) -> None:
    """A NUL in a property's value (the collector refuses it now; a log written before may
    hold one): PostgreSQL refuses the text. The write says so as ``StoreRefused`` (not
    ``StoreUnavailable``, which the processor retried forever, stalling every later event),
    so the processor halves the batch down to that message, dead-letters it and stores the
    others; a read asking for such a value is a refusal too, not a 503."""
    from hitstream.errors import StoreRefused
    from hitstream.log.memory import MemoryLog
    from tests.access import Sites
    from tests.unit.test_processor import T0, accepted, make, put
    from tests.unit.test_runner import dead_letters, run_all

    log = MemoryLog()
    good = [accepted(n, visitor=f"v{n}", path=f"/p{n}") for n in range(6)]
    poison = accepted(99, visitor="vx", props={"k": "a\x00b"})
    await put(log, *good[:3], poison, *good[3:])
    # bounded: a refusal taken for an outage is retried forever
    await asyncio.wait_for(run_all(make(log, store, sites=Sites("a.io"))), 60)
    letters = await dead_letters(log)
    assert len(letters) == 1 and letters[0][0].startswith("write: StoreRefused"), letters
    assert poison.event_id.encode() in letters[0][1]
    day = StatsQuery("a.io", Range(T0 - 1, T0 + 3_600_000), ("pageviews", "visitors"))
    assert await store.aggregate(day) == {"pageviews": 6.0, "visitors": 6.0}
    assert await store.positions("memory") == {0: len(good) + 1}
    with pytest.raises(StoreRefused):  # the read side: the same refusal (a 400 in the API)
        await store.aggregate(replace(day, filters=(Filter("prop:k", "==", ("a\x00b",)),)))
