"""The DuckDB store's rollups: the same answers as raw scans, used only where they hold.

Every test writes the same traffic into a store that keeps rollups and one that does not
(``rollups=False``: every query scans raw events), and compares what they answer; the store
contract (tests/contract) compares both against the memory store and the reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from hitstream.domain import rollups
from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.stats import METRICS, Filter, Range, StatsQuery
from hitstream.errors import StoreUnavailable
from hitstream.stores.base import WriteBatch
from hitstream.stores.duckdb import DuckDBStore
from hitstream.stores.sql.duckdb import allocator
from tests.answers import Answer, filtered_queries, flat_answers

pytestmark = pytest.mark.integration
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
ENGAGEMENT = ("time_on_page", "scroll_depth", "avg_duration")


def utc(year: int, month: int, day: int = 1, hour: int = 0) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)


START = utc(2026, 4, 6)
SITE = "big.example"
"""The site of 90 % of the benchmark generator's traffic."""


def traffic(count: int, start: int = START) -> tuple[list[ProcessedEvent], list[Session]]:
    """``count`` events of random visits over 3 days from ``start`` (benchmark generator),
    with an engagement event after every third pageview and a duration on custom events."""
    from benchmarks.store_bench import START_MS, generate

    events, sessions = generate(count, seed=11)
    shift = start - START_MS
    moved: list[ProcessedEvent] = []
    for n, e in enumerate(events):
        e = replace(e, timestamp=(e.timestamp - START_MS) // 10 + start)
        if e.type == "custom":
            e = replace(e, duration_ms=n * 13 % 20_000)
        moved.append(e)
        if e.type == "pageview" and n % 3 == 0:
            moved.append(
                replace(
                    e,
                    event_id=f"{e.event_id}-en",
                    type="engagement",
                    timestamp=e.timestamp + 1,
                    engaged_ms=None if n % 7 == 0 else n * 7 % 90_000,
                    scroll_depth=None if n % 5 == 0 else n % 101,
                    load_time_ms=None,
                )
            )
    visits = [
        replace(s, started_at=s.started_at + shift, last_seen=s.last_seen + shift)
        for s in sessions.values()
    ]
    return moved, visits


async def write_all(
    store: DuckDBStore, events: list[ProcessedEvent], sessions: list[Session], size: int = 500
) -> None:
    """Processor-sized batches, each with the visit rows its events touch."""
    for offset in range(0, len(events), size):
        chunk = events[offset : offset + size]
        ids = {e.session_id for e in chunk}
        touched = [s for s in sessions if s.session_id in ids]
        await store.write(WriteBatch("e", {0: offset + size}, chunk, touched))


def queries(site: str, start: int = START) -> list[tuple[str, StatsQuery]]:
    whole = Range(start, start + 3 * DAY)
    asked: list[tuple[str, StatsQuery]] = [
        ("aggregate", StatsQuery(site, whole, metrics=METRICS)),
        ("aggregate", StatsQuery(site, Range(start + DAY, start + DAY + 7 * HOUR), METRICS)),
        (
            "aggregate",
            StatsQuery(site, Range(start + 5 * HOUR, start + 2 * DAY + 7 * HOUR), METRICS),
        ),
        ("timeseries", StatsQuery(site, whole, metrics=METRICS, interval="day")),
        ("timeseries", StatsQuery(site, whole, ("visitors", "pageviews"), interval="hour")),
        ("timeseries", StatsQuery(site, whole, ("visitors",), interval="day", tz="Asia/Kolkata")),
        # durations without engagement metrics: engagement events are not in that set
        ("aggregate", StatsQuery(site, whole, ("visitors", "avg_duration"))),
        ("timeseries", StatsQuery(site, whole, ("avg_duration",), interval="day")),
    ]
    for prop in [*sorted(rollups.DIMS), "prop:plan"]:
        asked.append(
            ("breakdown", StatsQuery(site, whole, ("visitors", "visits"), property=prop, limit=20))
        )
        asked.append(
            ("breakdown", StatsQuery(site, whole, ("bounce_rate",), property=prop, limit=20))
        )
        if prop not in ("entry_page", "exit_page"):
            engaged = ("time_on_page", "pageviews", "scroll_depth", "avg_duration")
            asked.append(("breakdown", StatsQuery(site, whole, engaged, property=prop, limit=20)))
            timed = ("avg_duration", "events")
            asked.append(("breakdown", StatsQuery(site, whole, timed, property=prop, limit=20)))
    return asked


answers = flat_answers


def approx(want: list[Answer]) -> list[Any]:
    """Percentiles and ratios computed in Python against DuckDB's: equal to the last bits."""
    return [(*row[:3], pytest.approx(row[3], rel=1e-12)) for row in want]


def counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The keys of the views built from the rollup tables from now on (in the list returned)."""
    from hitstream.stores.sql.duckdb import rollups as duck_rollups

    built: list[object] = []
    build = duck_rollups._build

    def counting(conn: Any, key: Any) -> Any:
        built.append(key)
        return build(conn, key)

    monkeypatch.setattr(duck_rollups, "_build", counting)
    return built


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[DuckDBStore, DuckDBStore]]:
    rolled = DuckDBStore(tmp_path / "rolled.duckdb")
    raw = DuckDBStore(tmp_path / "raw.duckdb", rollups=False)
    await rolled.start()
    await raw.start()
    yield rolled, raw
    await rolled.close()
    await raw.close()


async def test_rollups_answer_whole_half_hours_exactly_as_raw_scans(
    pair: tuple[DuckDBStore, DuckDBStore],
) -> None:
    rolled, raw = pair
    events, sessions = traffic(6_000)
    paths: list[str] = []
    rolled.count_answers(paths.append)  # what feeds hitstream_store_queries_total{path}
    await write_all(rolled, events, sessions)
    await write_all(raw, events, sessions)
    asked = queries(SITE)
    got, want = await answers(rolled, asked), await answers(raw, asked)
    assert got == approx(want)
    assert len(want) > 10 * len(asked)  # breakdowns with rows, not empty answers
    assert rolled.answered == {"rollup": len(asked)}
    assert paths == ["rollup"] * len(asked)
    assert raw.answered == {"raw": len(asked)}


async def test_engagement_sums_are_the_events_own(tmp_path: Path) -> None:
    """time_on_page, scroll_depth and avg_duration from the rollups, against the test's sums."""
    store = DuckDBStore(tmp_path / "s.duckdb")
    await store.start()
    try:
        events, sessions = traffic(3_000)
        await write_all(store, events, sessions)
        site = SITE
        query = StatsQuery(site, Range(START, START + 3 * DAY), ENGAGEMENT)
        events = [e for e in events if e.site_id == site]
        engaged = [e.engaged_ms for e in events if e.type == "engagement" and e.engaged_ms]
        engaged_n = [e for e in events if e.type == "engagement" and e.engaged_ms is not None]
        depths = [e.scroll_depth for e in events if e.type == "engagement" and e.scroll_depth]
        depth_n = [e for e in events if e.type == "engagement" and e.scroll_depth is not None]
        timed = [e.duration_ms for e in events if e.type != "engagement" and e.duration_ms]
        timed_n = [e for e in events if e.type != "engagement" and e.duration_ms is not None]
        assert await store.aggregate(query) == pytest.approx(
            {
                "time_on_page": sum(engaged) / len(engaged_n) / 1000,
                "scroll_depth": sum(depths) / len(depth_n),
                "avg_duration": sum(timed) / len(timed_n) / 1000,
            },
            rel=1e-12,
        )
        assert store.answered == {"rollup": 1}
        # by a visit-row property the sums cannot answer: a raw scan, the same numbers
        by_entry = replace(query, property="entry_page", limit=5)
        await store.breakdown(by_entry)
        assert store.answered == {"rollup": 1, "raw": 1}
    finally:
        await store.close()


async def test_a_store_written_without_rollups_scans_until_rebuilt(
    pair: tuple[DuckDBStore, DuckDBStore], tmp_path: Path
) -> None:
    _, raw = pair
    events, sessions = traffic(3_000)
    await write_all(raw, events, sessions)
    await raw.close()
    reopened = DuckDBStore(tmp_path / "raw.duckdb")  # the same file, with rollups now
    await reopened.start()
    try:
        asked = queries(SITE)[:6]
        before = await answers(reopened, asked)
        assert reopened.answered == {"raw": len(asked)}
        assert await reopened.rebuild_rollups() == len(events)
        assert await answers(reopened, asked) == approx(before)
        assert reopened.answered == {"raw": len(asked), "rollup": len(asked)}
    finally:
        await reopened.close()


async def test_compaction_folds_deltas_and_changes_no_answer(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "c.duckdb", compact_rows=10**9)
    await store.start()
    try:
        events, sessions = traffic(4_000)
        await write_all(store, events, sessions, size=200)
        asked = queries(SITE)
        before = await answers(store, asked)

        def rows(conn: duckdb.DuckDBPyConnection) -> int:
            return int(conn.execute("SELECT count(*) FROM rollups").fetchone()[0])  # type: ignore[index]

        many = await store._run("count", rows)
        await store.compact_rollups()
        fewer = await store._run("count", rows)
        assert fewer < many
        keys = await store._run(
            "keys",
            lambda conn: conn.execute(
                "SELECT count(*) FROM (SELECT DISTINCT site_id, dim, value, hour, prev "
                "FROM rollups)"
            ).fetchone()[0],  # type: ignore[index]
        )
        assert fewer == keys  # one row per key
        assert await answers(store, asked) == approx(before)
        assert store.answered == {"rollup": 2 * len(asked)}
    finally:
        await store.close()


async def test_writes_compact_on_their_own_past_the_threshold(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "t.duckdb", compact_rows=2_000)
    await store.start()
    try:
        events, sessions = traffic(3_000)
        await write_all(store, events, sessions, size=200)

        def count(conn: duckdb.DuckDBPyConnection) -> Any:
            return conn.execute(
                "SELECT count(*), count(DISTINCT (site_id, dim, value, hour, prev)) FROM rollups"
            ).fetchone()

        total, distinct = await store._run("count", count)
        assert total < 2 * distinct  # compacted along the way: far fewer than every delta
    finally:
        await store.close()


async def test_late_and_duplicate_events_and_changed_visits_stay_exact(
    pair: tuple[DuckDBStore, DuckDBStore],
) -> None:
    """Batches out of time order, every batch written twice (a replay), and every visit row
    written again with its final version at the end: the rollups equal a raw scan."""
    rolled, raw = pair
    events, sessions = traffic(3_000)
    backwards = list(reversed(events))
    for store in (rolled, raw):
        for offset in range(0, len(backwards), 400):
            chunk = backwards[offset : offset + 400]
            ids = {e.session_id for e in chunk}
            touched = [s for s in sessions if s.session_id in ids]
            # first an older version of each visit row: one pageview, entered at "/old"
            stale = [replace(s, entry_page="/old", pageviews=1, events=1) for s in touched]
            await store.write(WriteBatch("e", {0: offset + 1}, chunk, stale))
            await store.write(WriteBatch("e", {0: offset + 2}, chunk, []))  # the replay
        await store.write(WriteBatch("e", {0: 10**6}, [], sessions))
    asked = queries(SITE)
    assert await answers(rolled, asked) == approx(await answers(raw, asked))
    assert rolled.answered == {"rollup": len(asked)}


async def test_forgetting_a_user_takes_back_what_they_counted(
    pair: tuple[DuckDBStore, DuckDBStore],
) -> None:
    rolled, raw = pair
    events, sessions = traffic(2_000)
    site = SITE
    # the visits of one visitor become an identified user's (a visitor of their own)
    visitor = next(e.visitor_id for e in events if e.type == "pageview")
    events = [replace(e, user_id="u-1") if e.visitor_id == visitor else e for e in events]
    for store in (rolled, raw):
        await write_all(store, events, sessions)
        assert await store.forget_user(site, "u-1", START) == sum(
            1 for e in events if e.user_id == "u-1"
        )
    asked = queries(site)
    assert await answers(rolled, asked) == approx(await answers(raw, asked))
    assert rolled.answered == {"rollup": len(asked)}


async def test_retention_moves_the_rollups_start_past_the_periods_it_cut(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "r.duckdb")
    await store.start()
    try:
        events, sessions = traffic(2_000)
        await write_all(store, events, sessions)
        site, cut = SITE, START + DAY + 10 * MINUTE
        await store.delete_before(cut)
        day = Range(START + DAY, START + 2 * DAY)
        query = StatsQuery(site, day, ("pageviews", "visitors"))
        kept = [e for e in events if e.site_id == site and cut <= e.timestamp < day.end]
        found = await store.aggregate(query)
        assert found["pageviews"] == sum(1 for e in kept if e.type == "pageview")
        assert store.answered == {"raw": 1}  # the first half hour lost events
        later = replace(query, range=Range(START + DAY + HOUR, START + 2 * DAY))
        await store.aggregate(later)
        assert store.answered == {"raw": 1, "rollup": 1}
        await store.delete_site_before(site, START + 2 * DAY)
        await store.aggregate(later)
        assert store.answered == {"raw": 2, "rollup": 1}
    finally:
        await store.close()


async def test_a_store_migrated_with_events_answers_its_past_from_raw_events(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.duckdb"
    store = DuckDBStore(path)
    await store.start()
    events, sessions = traffic(1_000)
    await write_all(store, events, sessions)
    await store.close()
    with duckdb.connect(str(path)) as conn:  # as if written before schema 6
        conn.execute(
            "DROP TABLE rollups; DROP TABLE rollup_sums; DROP TABLE rollup_loads; "
            "DROP TABLE rollup_slots; DROP TABLE rollup_state; "
            "DELETE FROM schema_migrations WHERE name = '0006_rollups'"
        )
    store = DuckDBStore(path)
    await store.start()
    try:
        site = SITE
        last = max(e.timestamp for e in events if e.site_id == site)
        whole = StatsQuery(site, Range(START, START + 4 * DAY), ("pageviews",))
        found = await store.aggregate(whole)
        assert found == {
            "pageviews": sum(1 for e in events if e.site_id == site and e.type == "pageview")
        }
        assert store.answered == {"raw": 1}
        after = replace(whole, range=Range(rollups.slot_after(last + 1), START + 4 * DAY))
        assert await store.aggregate(after) == {"pageviews": 0.0}
        assert store.answered == {"raw": 1, "rollup": 1}
    finally:
        await store.close()


async def test_views_follow_every_write_without_rebuilding(
    pair: tuple[DuckDBStore, DuckDBStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live dashboard asks the same queries after every write: the first round builds one
    view per query shape from the tables, the later rounds answer from those views moved
    forward by each write's deltas, and every answer equals a raw scan's."""
    built = counted_builds(monkeypatch)
    rolled, raw = pair
    events, sessions = traffic(4_000)
    asked = queries(SITE)
    rounds = 0
    for offset in range(0, len(events), 800):
        chunk = events[offset : offset + 800]
        ids = {e.session_id for e in chunk}
        touched = [s for s in sessions if s.session_id in ids]
        for store in (rolled, raw):
            await store.write(WriteBatch("e", {0: offset + 1}, chunk, touched))
        assert await answers(rolled, asked) == approx(await answers(raw, asked))
        rounds += 1
        if rounds == 1:
            first = len(built)
    assert rounds >= 5
    assert 0 < first < len(asked)  # queries of one shape (other metrics) share a view
    assert len(built) == first  # no view was built again: the writes moved them forward
    assert rolled.answered == {"rollup": rounds * len(asked)}


async def test_registry_reads_keep_the_views_and_registry_changes_drop_them(
    pair: tuple[DuckDBStore, DuckDBStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve``'s processor and collector read the registry version every second: a read
    must not drop the views (every live update then rebuilt them all from the tables); a
    registry change still does, and the rebuilt views answer the same."""
    built = counted_builds(monkeypatch)
    rolled, _ = pair
    events, sessions = traffic(1_000)
    await rolled.write(WriteBatch("e", {0: 1}, events, sessions))
    asked = queries(SITE)
    first = await answers(rolled, asked)
    views = len(built)
    assert views > 0
    await rolled.registry_version()
    await rolled.registered_sites()
    await rolled.get_site(SITE)
    await rolled.goals(SITE)
    await rolled.forgotten()
    await rolled.keys()
    assert await answers(rolled, asked) == first
    assert len(built) == views
    await rolled.touch_key("no-such-key", 1)  # an UPDATE: the registry changed
    assert await answers(rolled, asked) == first
    assert len(built) == 2 * views


async def test_an_event_in_an_edge_of_the_first_or_last_half_hour_means_a_raw_scan(
    tmp_path: Path,
) -> None:
    store = DuckDBStore(tmp_path / "e.duckdb")
    await store.start()
    try:
        events, _ = traffic(200)
        t = START + 10 * HOUR
        a, b = (
            replace(e, timestamp=t + offset)
            for e, offset in zip(
                [e for e in events if e.site_id == SITE and e.type == "pageview"][:2],
                (5 * MINUTE, 25 * MINUTE),
                strict=True,
            )
        )
        await store.write(WriteBatch("e", {0: 1}, [a, b], []))
        query = StatsQuery(SITE, Range(t, t + 20 * MINUTE), ("pageviews",))
        assert await store.aggregate(query) == {"pageviews": 1.0}
        assert store.answered == {"raw": 1}  # b lies in [end, next half hour)
        assert await store.aggregate(replace(query, range=Range(t, t + 26 * MINUTE))) == {
            "pageviews": 2.0
        }
        assert store.answered == {"raw": 1, "rollup": 1}
        late = replace(query, range=Range(t + 10 * MINUTE, t + HOUR))
        assert await store.aggregate(late) == {"pageviews": 1.0}
        assert store.answered == {"raw": 2, "rollup": 1}  # a lies in [half hour, start)
    finally:
        await store.close()


async def test_a_custom_property_is_rolled_up_from_the_period_after_it_was_first_seen(
    pair: tuple[DuckDBStore, DuckDBStore],
) -> None:
    """A site that sends a property key from day 2 on: its breakdowns over ranges from the
    period after the newest event stored before the key came read rollups; earlier starts
    scan. Both equal raw scans. A rebuild rolls the key up from the beginning."""
    rolled, raw = pair
    events, sessions = traffic(4_000)
    day2 = START + DAY
    first = [replace(e, props={}) for e in events if e.timestamp < day2]
    rest = [e for e in events if e.timestamp >= day2]
    assert any(e.props for e in rest) and len(first) > 500
    for store in (rolled, raw):
        await write_all(store, first + rest, sessions)
    # registered by the write of the first batch holding it (batches of 500): from the period
    # after the site's newest event stored before that batch
    written = first + rest
    carrier = next(n for n, e in enumerate(written) if e.site_id == SITE and e.props)
    before = written[: carrier // 500 * 500]
    start = rollups.slot_of(max(e.timestamp for e in before if e.site_id == SITE)) + rollups.SLOT
    assert START < start <= day2
    assert await rolled._rows(
        "SELECT key, from_slot FROM rollup_props WHERE site_id = $s", {"s": SITE}
    ) == [("plan", start)]
    metrics = ("visitors", "visits", "events", "avg_duration")
    late = [
        (
            "breakdown",
            StatsQuery(SITE, Range(start, START + 3 * DAY), metrics, property="prop:plan"),
        ),
        (
            "breakdown",
            StatsQuery(
                SITE, Range(day2 + DAY, START + 3 * DAY), ("bounce_rate",), property="prop:plan"
            ),
        ),
    ]
    early = [
        (
            "breakdown",
            StatsQuery(SITE, Range(START, START + 3 * DAY), metrics, property="prop:plan"),
        )
    ]
    assert await answers(rolled, late + early) == approx(await answers(raw, late + early))
    assert rolled.answered == {"rollup": 2, "raw": 1}
    assert await rolled.rebuild_rollups() == len(events)
    assert await answers(rolled, late + early) == approx(await answers(raw, late + early))
    assert rolled.answered == {"rollup": 5, "raw": 1}


async def test_a_site_rolls_up_its_first_32_property_keys(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "k.duckdb")
    await store.start()
    try:
        events, sessions = traffic(600)
        keys = [f"k{n:02}" for n in range(rollups.PROP_KEYS_PER_SITE + 8)]
        first = next(n for n, e in enumerate(events) if e.site_id == SITE)
        events[first] = replace(events[first], props={k: "x" for k in keys})
        await write_all(store, events, sessions)
        rows = await store._rows("SELECT key FROM rollup_props WHERE site_id = $s", {"s": SITE})
        assert sorted(k for (k,) in rows) == keys[: rollups.PROP_KEYS_PER_SITE]
        whole = Range(START, START + 3 * DAY)
        for key in (keys[0], keys[-1]):
            await store.breakdown(StatsQuery(SITE, whole, ("visitors",), property=f"prop:{key}"))
        assert store.answered == {"rollup": 1, "raw": 1}
    finally:
        await store.close()


async def test_one_equality_filter_reads_the_rollup_rows_of_its_value(
    pair: tuple[DuckDBStore, DuckDBStore],
) -> None:
    """Half the traffic, the queries (their views are built), the other half, the queries
    again (answered from views the writes moved on): equal to raw scans each time."""
    rolled, raw = pair
    events, sessions = traffic(6_000)
    half = len(events) // 2
    by_rollups, by_scans = filtered_queries(events, SITE, START)
    asked = by_rollups + by_scans
    for part in (events[:half], events[half:]):
        for store in (rolled, raw):
            await write_all(store, part, sessions)
        got, want = await answers(rolled, asked), await answers(raw, asked)
        assert got == approx(want)
        assert sum(1 for _, _, _, value in want if value) > len(asked)  # not all zeros
    assert rolled.answered == {"rollup": 2 * len(by_rollups), "raw": 2 * len(by_scans)}


async def test_the_memory_setting_limits_duckdb_after_migrations(tmp_path: Path) -> None:
    from hitstream.bootstrap.adapters import make_store
    from hitstream.settings import Settings

    settings = Settings(duckdb_memory_mb=200)
    store = make_store(f"duckdb:///{tmp_path / 'm.duckdb'}", settings)
    assert isinstance(store, DuckDBStore)
    await store.start()
    try:
        limit = await store._rows("SELECT current_setting('memory_limit')")
        assert limit == [("190.7 MiB",)]  # 200 * 10**6 bytes
        events, sessions = traffic(500)
        await write_all(store, events, sessions)
        assert await store.count_events() == len(events)
    finally:
        await store.close()


async def test_the_store_tells_what_duckdb_holds_by_tag(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "held.duckdb", memory_mb=150)
    await store.start()
    try:
        fresh = await store.memory_usage()
        events, sessions = traffic(2_000)
        await write_all(store, events, sessions)
        written = await store.memory_usage()
    finally:
        await store.close()
    assert set(fresh) == set(written) and {"BASE_TABLE", "ART_INDEX"} <= set(written)
    assert all(isinstance(used, int) and used >= 0 for used in written.values())
    held = written["BASE_TABLE"] + written.get("IN_MEMORY_TABLE", 0)
    assert held > fresh["BASE_TABLE"] + fresh.get("IN_MEMORY_TABLE", 0)  # the rows written


async def test_duckdbs_allocator_gives_freed_pages_back(tmp_path: Path) -> None:
    """Decision 0039: the store runs jemalloc's background threads, so pages DuckDB frees
    leave the process within seconds instead of staying resident until the arena allocates
    again; ``allocator_usage`` (``hitstream_store_allocator_bytes``) reads jemalloc's own
    figures. Without the setting, resident stays at its peak after the drop (tried: ~145 MB
    resident for 1 MB allocated, seconds later)."""
    store = DuckDBStore(tmp_path / "alloc.duckdb")
    await store.start()
    try:
        assert allocator.purging() is True  # the store turned the background threads on
        before = await store.allocator_usage()
        assert set(before) == {"allocated", "active", "resident"}
        assert 0 < before["allocated"] <= before["active"] <= before["resident"]
        sql = "CREATE TEMP TABLE big AS SELECT range i, md5(range::VARCHAR) s FROM range(1500000)"
        await store._run("test", lambda conn: conn.execute(sql))
        full = await store.allocator_usage()
        grown = full["allocated"] - before["allocated"]
        assert grown > 40_000_000  # 1.5 M rows of an int and a 32-character string
        await store._run("test", lambda conn: conn.execute("DROP TABLE big"))
        after = await store.allocator_usage()
        assert after["allocated"] < full["allocated"] - grown // 2  # DuckDB freed them
        for _ in range(300):  # jemalloc's decay is 1 s; give a loaded machine 30
            if after["resident"] < full["resident"] - grown // 2:
                break
            await asyncio.sleep(0.1)
            after = await store.allocator_usage()
        assert after["resident"] < full["resident"] - grown // 2
    finally:
        await store.close()


async def test_the_store_tells_how_many_groups_its_views_hold(tmp_path: Path) -> None:
    """``view_groups`` (exported as ``hitstream_store_view_groups``): a breakdown's view holds
    one group per value that has events, counted independently here; a write bringing new
    values adds theirs (decision 0038)."""
    store = DuckDBStore(tmp_path / "views.duckdb")
    await store.start()
    try:
        events, sessions = traffic(2_000)
        await write_all(store, events, sessions)
        assert await store.view_groups() == 0
        whole = Range(START, START + 3 * DAY)
        pages = StatsQuery(SITE, whole, ("visitors",), property="page", limit=5)
        await store.breakdown(pages)
        assert store.answered == {"rollup": 1}
        seen = {e.path for e in events if e.site_id == SITE and e.type != "engagement"}
        assert await store.view_groups() == len(seen)
        new = [
            replace(e, event_id=f"{e.event_id}-new", path=f"/brand-new/{n}")
            for n, e in enumerate(x for x in events[:40] if x.site_id == SITE)
            if e.type == "pageview"
        ]
        fresh = {e.path for e in new}
        touched = [s for s in sessions if s.session_id in {e.session_id for e in new}]
        await store.write(WriteBatch("e", {0: 10**6}, new, touched))
        assert await store.view_groups() == len(seen) + len(fresh)
    finally:
        await store.close()


async def test_the_default_limit_is_lifted_while_the_rollups_are_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decisions 0032 and 0037: 150 MB unless set; a rebuild (every event at once) runs under DuckDB's
    own limit and the store's is set again afterwards, also when the rebuild fails."""
    from hitstream.bootstrap.adapters import make_store
    from hitstream.settings import Settings
    from hitstream.stores.sql.duckdb import rollups as duck_rollups

    monkeypatch.delenv("HITSTREAM_DUCKDB_MEMORY_MB", raising=False)
    store = make_store(f"duckdb:///{tmp_path / 'm.duckdb'}", Settings())
    assert isinstance(store, DuckDBStore)
    await store.start()
    limit = "SELECT current_setting('memory_limit')"
    during: list[str] = []
    real = duck_rollups.rebuild

    def spy(conn: duckdb.DuckDBPyConnection, *args: Any) -> int:
        during.append(conn.execute(limit).fetchall()[0][0])
        if len(during) == 2:
            raise duckdb.OutOfMemoryException("the second rebuild fails")
        return real(conn, *args)

    monkeypatch.setattr(duck_rollups, "rebuild", spy)
    try:
        assert await store._rows(limit) == [("143.0 MiB",)]  # 150 * 10**6 bytes
        events, sessions = traffic(300)
        await write_all(store, events, sessions)
        assert await store.rebuild_rollups() == len(events)
        assert await store._rows(limit) == [("143.0 MiB",)]
        with pytest.raises(StoreUnavailable):
            await store.rebuild_rollups()
        assert await store._rows(limit) == [("143.0 MiB",)]
        assert len(during) == 2
        assert all(seen != "143.0 MiB" for seen in during), during
    finally:
        await store.close()


HEAVY = "SELECT len(list(x)) FROM range(5000000) t(x)"
"""A query that cannot spill: one 40 MB list, out of memory under a 16 MB limit."""
HEAVIER = "SELECT len(list(x)) FROM range(20000000) t(x)"
"""160 MB in one list: out of memory under 64 MB."""
LIMIT = "SELECT current_setting('memory_limit')"


async def test_a_query_that_does_not_fit_the_limit_runs_once_more_without_it(
    tmp_path: Path,
) -> None:
    """Decision 0032: a scan that needs more than the limit is answered (the limit lifted for
    it) instead of failing; the limit is set again by the first job that ends once
    ``memory_hold_s`` passed without another lift."""
    limited = DuckDBStore(tmp_path / "m.duckdb", memory_mb=16, memory_hold_s=3600)
    await limited.start()
    try:
        assert await limited._rows(LIMIT) == [("15.2 MiB",)]
        assert await limited._rows(HEAVY) == [(5_000_000,)]
        assert limited.memory_lifts == 1
        assert await limited._rows(LIMIT) != [("15.2 MiB",)]  # held lifted
        limited._memory_hold_s, limited._restore_at = 0.0, 0.0  # the hold is over
        await limited._rows("SELECT 1")
        assert await limited._rows(LIMIT) == [("15.2 MiB",)]
        events, sessions = traffic(300)
        await write_all(limited, events, sessions)
        assert await limited.count_events() == len(events)
    finally:
        await limited.close()
    unlimited = DuckDBStore(tmp_path / "m.duckdb", memory_mb=0)
    await unlimited.start()
    try:
        assert await unlimited._rows(HEAVY) == [(5_000_000,)]
        assert unlimited.memory_lifts == 0
    finally:
        await unlimited.close()


def _heavier(real: Any) -> Any:
    """``stats_sql`` whose raw statements also build a 160 MB list (same rows)."""

    def heavy(*args: Any, **kwargs: Any) -> tuple[str, dict[str, object]]:
        sql, params = real(*args, **kwargs)
        return f"SELECT * FROM ({sql}) WHERE ({HEAVIER}) > 0", params

    return heavy


async def test_a_live_batch_query_that_does_not_fit_the_limit_is_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dashboard's batch answers each query under the limit, lifting it for one that does
    not fit (here: filtered queries made to hold a 160 MB list): its answer equals the
    unlimited store's, where before it came back failed and the live update was dropped."""
    from hitstream.stores.batch import StatsCall
    from hitstream.stores.sql.duckdb import stats

    stats_sql = stats.stats_sql
    events, sessions = traffic(600)
    whole = Range(START, START + 3 * DAY)
    query = StatsQuery(
        SITE, whole, ("visitors", "pageviews"), property="page",
        filters=(Filter("browser", "!=", ("Firefox",)),),
    )  # fmt: skip
    calls = [StatsCall("breakdown", query), StatsCall("aggregate", replace(query, property=""))]
    answers = []
    for memory_mb in (0, 64):
        store = DuckDBStore(
            tmp_path / f"{memory_mb}.duckdb", memory_mb=memory_mb, memory_hold_s=0.0
        )
        await store.start()
        try:
            await write_all(store, events, sessions)
            assert store.memory_lifts == 0  # the writes fit
            if memory_mb:
                monkeypatch.setattr(stats, "stats_sql", _heavier(stats_sql))
            batch = await store.stats_batch(SITE, calls)
            assert all(answer.error == "" for answer in batch.answers), batch.answers
            answers.append(batch.answers)
            # lifted once: the batch's later queries run lifted too, until the job ends
            assert store.memory_lifts == (1 if memory_mb else 0)
            if memory_mb:
                assert await store._rows(LIMIT) == [("61.0 MiB",)]
        finally:
            monkeypatch.undo()
            await store.close()
    assert answers[0] == answers[1]
    assert answers[0][0].rows  # not empty


async def test_a_batch_is_one_job_that_checks_each_range_once(
    pair: tuple[DuckDBStore, DuckDBStore],
) -> None:
    """``stats_batch`` answers as the single methods do, by the same paths; inside its one
    job the rollups' coverage check of a range already checked is not run again."""
    from hitstream.stores.batch import StatsCall
    from hitstream.stores.sql.duckdb import batch as duck_batch

    rolled, _ = pair
    events, sessions = traffic(2_000)
    await rolled.write(WriteBatch("e", {0: 1}, events, sessions))
    asked = queries(SITE)
    singles = await answers(rolled, asked)
    paths = dict(rolled.answered)
    assert paths == {"rollup": len(asked)}
    calls = [StatsCall(kind, query) for kind, query in asked]  # type: ignore[arg-type]
    views = rolled._views

    def job(conn: duckdb.DuckDBPyConnection) -> duck_batch.Answered:
        return duck_batch.answer_all(conn, views, True, SITE, calls)

    done = await rolled._run("query", job)
    assert sorted(done.paths) == ["rollup"] * len(asked)
    ranges = {(q.range.start, q.range.end) for _, q in asked}
    assert done.repeated >= len(asked) - len(ranges)  # a coverage check per range at most
    batch = await rolled.stats_batch(SITE, calls)
    assert batch.data_version == await rolled.data_version(SITE)
    flat: list[Answer] = []
    for number, answer in enumerate(batch.answers):
        rows = (
            [("", answer.values)]
            if answer.values is not None
            else [(p.bucket, p.results) for p in answer.points or []]
            + [(r.value, r.results) for r in answer.rows or []]
        )
        flat += [(number, key, m, v) for key, results in rows for m, v in (results or {}).items()]
    assert flat == singles
    assert rolled.answered == {"rollup": 2 * len(asked)}


def segment_queries(filters: list[Filter], whole: Range) -> list[tuple[str, StatsQuery]]:
    """Every breakdown panel's shape under each filter: counts by every other rolled-up
    property, engagement metrics by the events' own properties."""
    asked: list[tuple[str, StatsQuery]] = []
    counted = ("visitors", "visits", "bounce_rate", "visit_duration", "pageviews", "events")
    engaged = ("time_on_page", "scroll_depth", "avg_duration", "events")
    for flt in filters:
        for prop in [*sorted(rollups.DIMS), "prop:plan"]:
            if prop == flt.property:
                continue
            asked.append(
                ("breakdown", StatsQuery(SITE, whole, counted, (flt,), property=prop, limit=50))
            )
            if prop not in ("entry_page", "exit_page"):
                asked.append(
                    ("breakdown", StatsQuery(SITE, whole, engaged, (flt,), property=prop, limit=50))
                )
    return asked


def most_common(events: list[ProcessedEvent], attribute: str) -> str:
    counts: dict[str, int] = {}
    for e in events:
        if e.site_id == SITE:
            counts[getattr(e, attribute)] = counts.get(getattr(e, attribute), 0) + 1
    return max(counts, key=lambda v: (counts[v], v))


async def test_breakdowns_under_a_filter_read_its_segment_from_the_period_after_it_was_asked(
    pair: tuple[DuckDBStore, DuckDBStore],
) -> None:
    """A breakdown by another property under one ``==`` filter scans the first time and
    registers the filter as a segment, from the period after the site's newest stored event.
    Ranges starting there or later then read the segment's rollups, equal to raw scans after
    more writes; earlier starts scan until a rebuild, which rolls the segment up whole."""
    rolled, raw = pair
    events, sessions = traffic(6_000)
    day2 = START + DAY
    first = [e for e in events if e.timestamp < day2]
    rest = [e for e in events if e.timestamp >= day2]
    assert len(first) > 1_000 and len(rest) > 1_000
    for store in (rolled, raw):
        await write_all(store, first, sessions)
    filters = [
        Filter("country", "==", (most_common(events, "country"),)),
        Filter("page", "==", (most_common(events, "path"),)),
        Filter("prop:plan", "==", ("pro",)),
    ]
    whole = Range(START, START + 3 * DAY)
    early = segment_queries(filters, whole)
    assert await answers(rolled, early) == approx(await answers(raw, early))
    assert rolled.answered == {"raw": len(early)}
    start = rollups.slot_of(max(e.timestamp for e in first if e.site_id == SITE)) + rollups.SLOT
    registered = await rolled._rows(
        "SELECT dim, value, from_slot FROM rollup_segments WHERE site_id = $s ORDER BY ALL",
        {"s": SITE},
    )
    assert registered == sorted((f.property, f.values[0], start) for f in filters)
    for store in (rolled, raw):
        await write_all(store, rest, sessions)
    late = segment_queries(filters, Range(start, START + 3 * DAY))
    got, want = await answers(rolled, late + early), await answers(raw, late + early)
    assert got == approx(want)
    assert sum(1 for _, _, _, value in want if value) > len(late)  # not all zeros
    assert rolled.answered == {"raw": 2 * len(early), "rollup": len(late)}
    assert await rolled.rebuild_rollups() == len(events)
    assert await answers(rolled, late + early) == approx(want)
    assert rolled.answered == {"raw": 2 * len(early), "rollup": 2 * len(late) + len(early)}


async def test_a_site_keeps_16_segments_and_a_new_one_replaces_the_least_recently_asked(
    tmp_path: Path,
) -> None:
    """16 segments registered before the traffic; a 17th filter asked within a day of them
    registers nothing. A day later it replaces the least recently asked one (a breakdown
    under a segment notes it as asked), whose rows go; the others still answer from rollups,
    as raw scans do. Custom properties the site does not roll up and visit-row properties
    are no segments."""
    store = DuckDBStore(tmp_path / "s.duckdb")
    raw = DuckDBStore(tmp_path / "raw.duckdb", rollups=False)
    now = [1_800_000_000.0]
    store.clock = lambda: now[0]
    await store.start()
    await raw.start()
    try:
        events, sessions = traffic(3_000)
        real = sorted({e.country for e in events if e.site_id == SITE})
        assert len(real) >= 3
        values = [*real, *(f"C{n:02}" for n in range(rollups.SEGMENTS_PER_SITE))]
        values = values[: rollups.SEGMENTS_PER_SITE]
        for value in values:
            assert await store.register_segment(SITE, "country", value)
            now[0] += 60
        for target in (store, raw):
            await write_all(target, events, sessions)
        whole = Range(START, START + 3 * DAY)

        def under(value: str) -> StatsQuery:
            flt = Filter("country", "==", (value,))
            return StatsQuery(SITE, whole, ("visitors", "visits"), (flt,), property="page")

        async def registered() -> list[str]:
            rows = await store._rows(
                "SELECT value FROM rollup_segments WHERE site_id = $s ORDER BY value", {"s": SITE}
            )
            return [v for (v,) in rows]

        async def rows_of(value: str) -> int:
            dims = rollups.segment_dims(("country", value), ["plan"])
            found = await store._rows(
                "SELECT count(*) FROM rollups WHERE dim IN (SELECT unnest($d::VARCHAR[]))",
                {"d": dims},
            )
            return int(found[0][0])

        await store.breakdown(under("new"))
        assert await registered() == sorted(values)  # none idle for a day: nothing replaced
        now[0] += 2 * 3600
        assert await store.breakdown(under(real[0])) == await raw.breakdown(under(real[0]))
        assert await rows_of(real[1]) > 0
        now[0] += 86_400 - 1_800  # real[1], asked first after real[0], idle for a day now
        await store.breakdown(under("new"))
        assert await registered() == sorted([*values[:1], *values[2:], "new"])
        assert await rows_of(real[1]) == 0
        assert await rows_of(real[0]) > 0
        for value in (real[0], real[2]):
            assert await store.breakdown(under(value)) == await raw.breakdown(under(value))
        assert store.answered["rollup"] == 3
        for flt in (Filter("prop:nope", "==", ("x",)), Filter("entry_page", "==", ("/",))):
            now[0] += 2 * 86_400
            await store.breakdown(StatsQuery(SITE, whole, ("visitors",), (flt,), property="page"))
        assert len(await registered()) == rollups.SEGMENTS_PER_SITE
        assert "new" in await registered()
    finally:
        await store.close()
        await raw.close()


async def test_a_dashboard_batch_registers_and_then_reads_a_segment(
    pair: tuple[DuckDBStore, DuckDBStore],
) -> None:
    """The live dashboard asks its panels in one batch (``stats_batch``): a breakdown under a
    filter there registers the segment too, and once more traffic came, the same batch over
    the later range reads it, with the answers of raw scans."""
    from hitstream.stores.batch import StatsCall

    rolled, raw = pair
    events, sessions = traffic(4_000)
    day2 = START + DAY
    first = [e for e in events if e.timestamp < day2]
    for store in (rolled, raw):
        await write_all(store, first, sessions)
    flt = Filter("country", "==", (most_common(events, "country"),))

    def calls(lo: int) -> list[StatsCall]:
        whole = Range(lo, START + 3 * DAY)
        metrics = ("visitors", "visits", "bounce_rate")
        return [
            StatsCall("aggregate", StatsQuery(SITE, whole, metrics, (flt,))),
            StatsCall("breakdown", StatsQuery(SITE, whole, metrics, (flt,), property="page")),
            StatsCall("breakdown", StatsQuery(SITE, whole, metrics, (flt,), property="source")),
        ]

    await rolled.stats_batch(SITE, calls(START))
    assert rolled.answered == {"rollup": 1, "raw": 2}
    rows = await rolled._rows(
        "SELECT from_slot FROM rollup_segments WHERE site_id = $s", {"s": SITE}
    )
    since = int(rows[0][0])
    for store in (rolled, raw):
        await write_all(store, [e for e in events if e.timestamp >= day2], sessions)
    got = await rolled.stats_batch(SITE, calls(since))
    want = await raw.stats_batch(SITE, calls(since))
    assert rolled.answered == {"rollup": 4, "raw": 2}
    assert [a.rows for a in got.answers] == [a.rows for a in want.answers]
    assert all(a.rows for a in got.answers[1:])


async def test_segments_keep_to_a_budget_of_the_sites_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two filters that hold every event of the site use the whole budget: a third one that
    holds any events is refused, one that holds none fits. A day later the new one takes the
    place of the least recently asked."""
    store = DuckDBStore(tmp_path / "b.duckdb")
    now = [1_800_000_000.0]
    store.clock = lambda: now[0]
    await store.start()
    try:
        events, sessions = traffic(3_000)
        await write_all(store, events, sessions)
        counted = [e for e in events if e.site_id == SITE and e.type != "engagement"]
        lo = rollups.slot_of(max(e.timestamp for e in counted)) - DAY
        recent = [e for e in counted if e.timestamp >= lo]
        assert {e.hostname for e in recent} == {SITE} and {e.user_id for e in recent} == {""}
        country = most_common(recent, "country")
        assert await store.register_segment(SITE, "hostname", SITE)
        now[0] += 60
        assert await store.register_segment(SITE, "user_id", "")
        now[0] += 60
        assert not await store.register_segment(SITE, "country", country)
        from hitstream.stores.sql.duckdb import rollups as duck_rollups

        worked: list[object] = []
        shares = duck_rollups._shares

        def shares_counted(*args: Any) -> Any:
            worked.append(args)
            return shares(*args)

        monkeypatch.setattr(duck_rollups, "_shares", shares_counted)
        # a refusal is not worked out again within the hour (a live view asks each second)
        assert not await store.register_segment(SITE, "country", country)
        assert worked == []
        assert await store.register_segment(SITE, "country", "XX")  # holds nothing
        assert len(worked) == 1
        now[0] += 86_400
        assert await store.register_segment(SITE, "country", country)
        rows = await store._rows("SELECT dim, value FROM rollup_segments ORDER BY ALL")
        assert rows == sorted([("country", "XX"), ("country", country), ("user_id", "")])
    finally:
        await store.close()
