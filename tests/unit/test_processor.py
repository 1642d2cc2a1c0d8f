"""The processor over memory adapters: enrich, sessionize, write once, resume, publish."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from dataclasses import replace

import msgspec
import pytest

from hitstream.backoff import Backoff
from hitstream.domain.events import AcceptedEvent
from hitstream.domain.pipeline import UserAgentInfo
from hitstream.domain.sessions import Sessionizer
from hitstream.domain.stats import Range, StatsQuery
from hitstream.errors import StoreUnavailable
from hitstream.fanout.memory import MemoryFanout
from hitstream.log.memory import MemoryLog
from hitstream.metrics import Metrics
from hitstream.services.pipeline import Named, Pipeline, SiteBook, processing_steps
from hitstream.services.processor import IDLE_LAG_S, STORE_GAUGES_S, Processor
from hitstream.stores.base import Store, WriteBatch
from hitstream.stores.memory import MemoryStore
from tests.access import Sites

T0 = 1_790_000_000_000
SITES: SiteBook = Sites("a.io", "b.io")
"""The registered sites of these tests."""
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


class FakeAgents:
    def parse(self, user_agent: str) -> UserAgentInfo:
        return UserAgentInfo("Chrome", "130", "Windows", "10", "desktop")


class FakeBots:
    def bot_reason(self, user_agent: str) -> str | None:
        return "ua_pattern" if "bot" in user_agent.lower() else None


def accepted(
    n: int, *, visitor: str = "v1", ua: str = CHROME, ts: int = T0, **kw: object
) -> AcceptedEvent:
    fields: dict[str, object] = {
        "event_id": f"00000000-0000-7000-8000-{n:012d}",
        "site_id": "a.io",
        "type": "pageview",
        "timestamp": ts,
        "received_at": ts,
        "visitor_id": visitor,
        "visitor_id_prev": visitor,
        "path": f"/p{n}",
        "user_agent": ua,
        "referrer": "https://www.google.com/",
        "hostname": "a.io",
    }
    fields.update(kw)
    return AcceptedEvent(**fields)  # type: ignore[arg-type]


async def put(log: MemoryLog, *events: AcceptedEvent) -> None:
    await log.append([(e.visitor_id.encode(), msgspec.json.encode(e)) for e in events])


async def no_wait(seconds: float) -> None:
    """The backoff's sleep in unit tests: no real waiting."""


def make(
    log: MemoryLog,
    store: Store,
    fanout: MemoryFanout | None = None,
    *,
    sites: SiteBook = SITES,
    stream: str = "memory",
    clock: Callable[[], int] = lambda: T0 + 1000,
    steps: Callable[[list[Named]], list[Named]] = lambda steps: steps,
) -> Processor:
    """A processor over memory adapters and fake parsers, with the real pipeline (``steps``
    may change it, to inject a failure) and a backoff that does not wait."""
    metrics = Metrics()
    sessions = Sessionizer()
    named = steps(processing_steps(store, FakeAgents(), FakeBots(), sessions, sites))
    return Processor(
        log,
        store,
        fanout or MemoryFanout(),
        Pipeline(named, metrics),
        metrics,
        sessions=sessions,
        stream=stream,
        poll_timeout=0.01,
        clock=clock,
        backoff=Backoff(sleep=no_wait),
    )


def everything() -> StatsQuery:
    return StatsQuery(
        site_id="a.io",
        range=Range(T0 - 1, T0 + 3_600_000),
        metrics=("visitors", "visits", "pageviews", "events", "bounce_rate"),
    )


async def test_events_are_enriched_sessionized_and_stored() -> None:
    log, store = MemoryLog(), MemoryStore()
    await put(log, accepted(1), accepted(2, ts=T0 + 60_000), accepted(3, visitor="v2"))
    processor = make(log, store)
    await processor.start()
    assert await processor.process_once() == 3
    result = await store.aggregate(everything())
    assert result["visitors"] == 2
    assert result["visits"] == 2
    assert result["pageviews"] == 3
    assert result["bounce_rate"] == 50
    rows = await store.breakdown(
        StatsQuery(
            site_id="a.io", range=everything().range, metrics=("pageviews",), property="source"
        )
    )
    assert [(r.value, r.results["pageviews"]) for r in rows] == [("Google", 3)]
    assert await store.positions("memory") == {0: 3}


async def test_bots_and_duplicates_are_dropped_and_counted() -> None:
    log, store = MemoryLog(), MemoryStore()
    await put(log, accepted(1), accepted(2, ua="Googlebot/2.1"), accepted(1))
    processor = make(log, store)
    await processor.start()
    await processor.process_once()
    await put(log, accepted(1))  # a retry arriving in a later batch
    await processor.process_once()
    assert await store.count_events() == 1
    assert await store.drop_counts("a.io") == {"bot:ua_pattern": 1, "duplicate": 2}


async def test_restart_resumes_from_stored_positions_and_visits() -> None:
    log, store = MemoryLog(), MemoryStore()
    await put(log, accepted(1))
    first = make(log, store)
    await first.start()
    await first.process_once()
    await put(log, accepted(2, ts=T0 + 60_000))
    second = make(log, store)  # a new process: nothing in memory
    await second.start()
    assert await second.process_once() == 1
    result = await store.aggregate(everything())
    assert (result["events"], result["visits"], result["bounce_rate"]) == (2, 1, 0)


async def test_store_outage_retries_the_same_batch_without_skipping() -> None:
    log, store = MemoryLog(), MemoryStore()
    await put(log, accepted(1), accepted(2))
    real_write = store.write
    failures = 0

    async def flaky(batch: WriteBatch) -> None:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise StoreUnavailable("down")
        await real_write(batch)

    store.write = flaky  # type: ignore[method-assign]
    processor = make(log, store)
    await processor.start()
    await asyncio.wait_for(processor.process_once(), 5)
    assert failures == 2
    assert await store.count_events() == 2


async def test_late_events_are_counted_once_however_often_their_batch_is_retried() -> None:
    minute = 60_000
    now = [T0 + 10 * minute]
    log, store = MemoryLog(), MemoryStore()
    processor = make(log, store, clock=lambda: now[0])
    await processor.start()
    await put(log, accepted(1, ts=T0))
    assert await processor.process_once() == 1
    for n in range(2, 5):  # others' traffic for three hours: v1's visit leaves memory
        now[0] += 60 * minute
        await put(log, accepted(n, visitor="v2", ts=now[0]))
        assert await processor.process_once() == 1
    real_write, failures = store.write, list[WriteBatch]()

    async def flaky(batch: WriteBatch) -> None:
        if len(failures) < 2:
            failures.append(batch)
            raise StoreUnavailable("down")
        await real_write(batch)

    store.write = flaky  # type: ignore[method-assign]
    await put(log, accepted(5, ts=T0 + 5 * minute))  # v1's, three hours late
    assert await asyncio.wait_for(processor.process_once(), 5) == 1
    assert len(failures) == 2
    assert processor.metrics.late_events._value.get() == 1
    assert processor.metrics.visits_recalled._value.get() == 1


async def test_live_message_published_per_site() -> None:
    log, store, fanout = MemoryLog(), MemoryStore(), MemoryFanout()
    subscription = await fanout.subscribe("site:a.io")
    other = await fanout.subscribe("site:b.io")
    processor = make(log, store, fanout)
    await processor.start()
    versions = []
    for n in (1, 3):
        await put(log, accepted(n), accepted(n + 1, ua="bot"))
        await processor.process_once()
        message = msgspec.json.decode(await asyncio.wait_for(subscription.get(), 1))
        assert message["type"] == "processed"
        assert message["events_total"] == 1
        assert message["events"][0]["path"] == f"/p{n}"
        assert message["dropped"] == {"bot:ua_pattern": 1}
        assert message["data_version"] == await store.data_version("a.io")
        versions.append(message["data_version"])
    assert versions[1] > versions[0] > 0  # each batch's write moved the site's version on
    await put(log, accepted(9, site_id="b.io"))
    await processor.process_once()
    message = msgspec.json.decode(await asyncio.wait_for(other.get(), 1))
    assert (message["site_id"], message["events_total"]) == ("b.io", 1)
    assert len(subscription) == 0  # a.io's channel heard nothing of b.io


@pytest.mark.parametrize("garbage", [b"not json", b'{"site_id": 1}'])
async def test_undecodable_messages_are_counted_not_fatal(garbage: bytes) -> None:
    log, store = MemoryLog(), MemoryStore()
    await log.append([(b"k", garbage)])
    await put(log, accepted(1))
    processor = make(log, store)
    await processor.start()
    assert await processor.process_once() == 2
    assert await store.count_events() == 1
    assert await store.drop_counts() == {"undecodable": 1}


async def test_undecodable_messages_are_dead_lettered() -> None:
    log, store = MemoryLog(), MemoryStore()
    await log.append([(b"k", b"garbage")])
    processor = make(log, store)
    await processor.start()
    await processor.process_once()

    async def nowhere(partition: int) -> int | None:
        return None

    dead = await log.dead_letters("ops", nowhere).poll(10, 0.1)
    assert [(m.key, m.value) for m in dead] == [(b"undecodable", b"garbage")]


async def test_a_processor_that_lost_its_partition_is_fenced_off() -> None:
    """The old owner of a partition read a batch, then the new owner stored the same
    messages first: the old owner's write is refused, and it resumes from the store."""
    log, store = MemoryLog(), MemoryStore()
    await put(log, accepted(1), accepted(2, ts=T0 + 60_000))
    slow_store = copy.copy(store)  # the same data, but its writes wait for the new owner
    slow, fast = make(log, slow_store), make(log, store)
    await slow.start()
    await fast.start()
    real_write = store.write

    async def write_after_the_new_owner(batch: WriteBatch) -> None:
        if batch.starts:
            assert await fast.process_once() == 2
        await real_write(batch)

    slow_store.write = write_after_the_new_owner  # type: ignore[method-assign]
    assert await slow.process_once() == 0  # refused: nothing counted twice
    result = await store.aggregate(everything())
    assert (result["events"], result["visits"], result["pageviews"]) == (2, 1, 2)
    del slow_store.write  # its own writes again (to the same data)
    await put(log, accepted(3, ts=T0 + 120_000))
    assert await slow.process_once() == 1
    assert len(slow.sessions) == 1  # the visit state was reloaded from the store
    result = await store.aggregate(everything())
    assert (result["events"], result["visits"], result["pageviews"]) == (3, 1, 3)


async def test_run_rides_out_a_store_outage_without_losing_a_batch() -> None:
    log, store = MemoryLog(), MemoryStore()
    await put(log, *(accepted(n, ts=T0 + n) for n in range(1, 6)))
    real_known = store.known_event_ids
    down = asyncio.Event()
    down.set()

    async def flaky(ids: Sequence[str]) -> set[str]:
        if down.is_set():
            raise StoreUnavailable("down")
        return await real_known(ids)

    store.known_event_ids = flaky  # type: ignore[method-assign,assignment]
    processor = make(log, store)
    processor.batch_max = 2
    await processor.start()
    stop = asyncio.Event()
    running = asyncio.create_task(processor.run(stop))
    await asyncio.sleep(0.05)  # a few failed attempts
    await put(log, accepted(6, ts=T0 + 6))
    down.clear()
    await asyncio.wait_for(processor.caught_up.wait(), 10)
    stop.set()
    await asyncio.wait_for(running, 10)
    assert await store.count_events() == 6


# -- sites: per-site retention, and forgetting a user mid-visit -------------------------------


async def test_each_site_keeps_data_for_its_own_retention() -> None:
    from hitstream.domain.sites import Site

    day = 86_400_000
    now = [T0 + 10 * day]
    log, store = MemoryLog(), MemoryStore()
    await store.add_site(Site("a.io", retention_days=3))
    await store.add_site(Site("b.io"))  # keeps everything
    events = [accepted(1, ts=T0), accepted(2, ts=T0 + 9 * day, visitor="v2")]
    events += [accepted(3, ts=T0, site_id="b.io", visitor="v3")]
    await put(log, *events)
    processor = make(log, store, clock=lambda: now[0])
    await processor.start()
    assert await processor.process_once() == 3
    await processor.process_once()  # nothing to read: housekeeping, retention
    assert await store.count_events("a.io") == 1  # 10 days old went, 1 day old stayed
    assert await store.count_events("b.io") == 1


async def test_housekeeping_runs_under_traffic_that_never_pauses() -> None:
    """Every poll finds events, so the log is never seen empty: retention applies and closed
    visits leave memory all the same."""
    from hitstream.domain.sites import Site

    day = 86_400_000
    now = [T0 + 10 * day]
    log, store = MemoryLog(), MemoryStore()
    await store.add_site(Site("a.io", retention_days=3))
    processor = make(log, store, clock=lambda: now[0])
    await processor.start()
    await put(log, accepted(1, ts=now[0], site_id="a.io"))
    assert await processor.process_once() == 1  # written, then the first housekeeping
    # a late event, older than the site keeps, from another visitor
    await put(log, accepted(2, ts=T0, site_id="a.io", visitor="late"))
    now[0] += 30_000
    assert await processor.process_once() == 1
    assert await store.count_events("a.io") == 2  # the last housekeeping is 30 s old
    assert len(processor.sessions) == 2
    for n in (3, 4):  # more traffic, a poll never finding the log empty
        now[0] += 300_000  # site retention runs every 10 minutes, housekeeping every minute
        await put(log, accepted(n, ts=now[0], site_id="a.io"))
        assert await processor.process_once() == 1
    assert await store.count_events("a.io") == 3  # the late event went: retention ran
    assert len(processor.sessions) == 1  # and its closed visit left memory


async def test_forgetting_a_user_mid_visit_does_not_bring_their_visit_back() -> None:
    """The processor holds the user's open visit; after the store forgets them, their next
    event starts a fresh visit (the registry moved: the visit state is reloaded)."""
    log, store = MemoryLog(), MemoryStore()
    await put(
        log, accepted(1, visitor="u1", user_id="alice"), accepted(2, visitor="u1", user_id="alice")
    )
    processor = make(log, store)
    await processor.start()
    assert await processor.process_once() == 2
    assert await store.forget_user("a.io", "alice", T0 + 30_000) == 2
    processor._registry_checked = float("-inf")  # as if a second had passed
    await put(log, accepted(3, visitor="u1", user_id="alice", ts=T0 + 60_000))
    assert await processor.process_once() == 1
    (visit,) = await store.open_sessions(0)
    assert (visit.pageviews, visit.events) == (1, 1)  # not 3: the forgotten ones are gone


async def test_events_of_a_site_removed_after_they_were_taken_are_dropped() -> None:
    log, store = MemoryLog(), MemoryStore()
    await put(log, accepted(1), accepted(2, site_id="gone.io", visitor="v9"))
    processor = make(log, store)
    await processor.start()
    assert await processor.process_once() == 2
    assert await store.count_events("a.io") == 1
    assert await store.count_events("gone.io") == 0
    assert await store.drop_counts("gone.io") == {"site_not_registered": 1}


async def test_a_forgotten_users_events_never_come_back_but_their_new_ones_count() -> None:
    """Forgotten at T0 + 30 s: their events received before then are dropped when they come
    again (a replay, or still in the log); one received after is their new data."""
    from hitstream.domain.sites import Site
    from hitstream.domain.visitors import user_hash
    from hitstream.services.access import Gatekeeper

    alice = user_hash("a.io", "alice")  # as the collector makes it
    log, store = MemoryLog(), MemoryStore()
    await store.add_site(Site("a.io"))
    gate = Gatekeeper(store, refresh_s=0)
    first = [accepted(n, visitor=alice, user_id="alice", ts=T0 + n) for n in (1, 2)]
    await put(log, *first)
    processor = make(log, store, sites=gate)
    await processor.start()
    assert await processor.process_once() == 2
    await store.forget_user("a.io", "alice", T0 + 30_000)
    replayed = [accepted(n, visitor=alice, user_id="alice", ts=T0 + n) for n in (3, 4)]
    later = accepted(5, visitor=alice, user_id="alice", ts=T0 + 60_000)
    await put(log, *replayed, later)
    assert await processor.process_once() == 3
    assert await store.count_events("a.io") == 1  # only the one received after
    assert (await store.drop_counts("a.io"))["forgotten_user"] == 2


class MeteredStore(MemoryStore):
    """A memory store that says what its engine holds, as an embedded engine's would."""

    def __init__(self) -> None:
        super().__init__()
        self.held = {"BASE_TABLE": 7_000, "ART_INDEX": 0}
        self.asked = 0

    async def memory_usage(self) -> dict[str, int]:
        self.asked += 1
        return dict(self.held)

    async def allocator_usage(self) -> dict[str, int]:
        return {"allocated": 3_000, "resident": 5_000}

    async def view_groups(self) -> int:
        return 1_234


async def test_the_stores_memory_is_exported_by_tag_while_it_writes() -> None:
    log, store = MemoryLog(), MeteredStore()
    processor = make(log, store)
    await processor.start()
    await put(log, accepted(1))
    await processor.process_once()
    gauge = processor.metrics.store_memory
    assert store.asked == 1
    assert gauge.labels("BASE_TABLE")._value.get() == 7_000
    assert gauge.labels("ART_INDEX")._value.get() == 0
    assert processor.metrics.store_view_groups._value.get() == 1_234
    allocator = processor.metrics.store_allocator
    assert allocator.labels("allocated")._value.get() == 3_000
    assert allocator.labels("resident")._value.get() == 5_000
    store.held["BASE_TABLE"] = 9_000  # read again only every 10 s: the next batch keeps 7,000
    await put(log, accepted(2))
    await processor.process_once()
    assert store.asked == 1
    assert gauge.labels("BASE_TABLE")._value.get() == 7_000


async def test_the_stores_memory_is_read_on_a_quiet_site_too() -> None:
    """Writes more than 5 s apart: the idle lag reading reset the clock these gauges shared,
    so they were never read (Grafana's memory panels stayed empty on a small site)."""
    log, store = MemoryLog(), MeteredStore()
    processor = make(log, store)
    await processor.start()
    assert await processor.process_once(poll_timeout=0.0) == 0  # nothing arrived: read anyway
    assert store.asked == 1
    assert processor.metrics.store_memory.labels("BASE_TABLE")._value.get() == 7_000
    for n in range(3):  # a write now and then, each after an idle poll that read the lag
        store.held["BASE_TABLE"] = 8_000 + n
        processor._last_lag -= IDLE_LAG_S
        processor._last_gauges -= STORE_GAUGES_S
        await processor.process_once(poll_timeout=0.0)
        await put(log, accepted(10 + n))
        await processor.process_once()
        assert processor.metrics.store_memory.labels("BASE_TABLE")._value.get() == 8_000 + n
    await processor.close()


async def test_the_lag_gauge_is_read_while_nothing_arrives() -> None:
    """A processor with nothing to read reads the lag every few seconds (it was read after
    writes and once a minute: a standby that caught up showed its old lag for a minute)."""
    log, store = MemoryLog(), MemoryStore()
    processor = make(log, store)
    await processor.start()
    asked: list[int] = []

    async def lag() -> int:
        asked.append(1)
        return 7 - len(asked)

    assert processor._consumer is not None
    processor._consumer.lag = lag  # type: ignore[method-assign]
    assert await processor.process_once(poll_timeout=0.0) == 0
    gauge = processor.metrics.registry.get_sample_value("hitstream_processor_lag_events")
    assert (gauge, len(asked)) == (6.0, 1)
    assert await processor.process_once(poll_timeout=0.0) == 0  # within IDLE_LAG_S: not again
    assert len(asked) == 1
    processor._last_lag -= 10
    await processor.process_once(poll_timeout=0.0)
    gauge = processor.metrics.registry.get_sample_value("hitstream_processor_lag_events")
    assert (gauge, len(asked)) == (5.0, 2)
    await processor.close()


async def test_a_batch_sent_out_of_order_makes_its_visits_by_time() -> None:
    """Events of one batch are put in visits by their time, not by their order in the batch:
    40 min, 0, 20 min (gaps of 20 min) are one visit of 40 min; sent in that order they
    were two, one of them started at 40 min."""
    log, store = MemoryLog(), MemoryStore()
    minute = 60_000
    await put(
        log,
        accepted(1, ts=T0 + 40 * minute),
        accepted(2, ts=T0),
        accepted(3, ts=T0 + 20 * minute),
    )
    processor = make(log, store, clock=lambda: T0 + 41 * minute)
    await processor.start()
    assert await processor.process_once() == 3
    query = replace(everything(), metrics=("visits", "pageviews", "visit_duration"))
    result = await store.aggregate(query)
    assert (result["visits"], result["pageviews"], result["visit_duration"]) == (1, 3, 2400)
    (visit,) = await store.open_sessions(0)
    assert (visit.entry_page, visit.exit_page) == ("/p2", "/p1")


async def test_a_first_backlog_into_an_empty_store_has_no_late_events() -> None:
    """Nothing is stored, so nothing was forgotten: a first backlog of old events makes no
    store lookups (a reload's bound made every event of it look late)."""
    log, store = MemoryLog(), MemoryStore()
    processor = make(log, store, clock=lambda: T0 + 86_400_000)
    await processor.start()
    await put(log, accepted(1, ts=T0), accepted(2, ts=T0 + 60_000))
    assert await processor.process_once() == 2
    assert processor.metrics.late_events._value.get() == 0


async def test_a_backlog_drained_hours_late_keeps_its_visits_whole() -> None:
    """A processor catching up on events hours old (after an outage) closes visits by the
    events' own time: one visitor's pageviews 20 minutes apart stay one visit while the
    housekeeping runs between them. Idle visits were dropped by the wall clock, so every
    visit of the backlog was cut at each minute's housekeeping."""
    minute = 60_000
    now = [T0 + 10 * 60 * minute]  # the backlog is ten hours old
    log, store = MemoryLog(), MemoryStore()
    processor = make(log, store, clock=lambda: now[0])
    await processor.start()
    for n in range(4):
        await put(log, accepted(n, ts=T0 + 20 * n * minute))
        assert await processor.process_once() == 1
        now[0] += 2 * minute  # each poll runs the housekeeping
    query = StatsQuery(
        site_id="a.io",
        range=Range(T0, T0 + 2 * 60 * minute),
        metrics=("visits", "pageviews", "visit_duration"),
    )
    result = await store.aggregate(query)
    assert (result["visits"], result["pageviews"], result["visit_duration"]) == (1, 4, 3600)
    assert len(processor.sessions) == 1
    # the backlog's end: once newer events pass it by the timeout, the visit leaves memory
    await put(log, accepted(9, ts=now[0], visitor="v2"))
    assert await processor.process_once() == 1
    now[0] += 2 * minute
    await put(log, accepted(10, ts=now[0], visitor="v2"))
    assert await processor.process_once() == 1
    assert len(processor.sessions) == 1


async def test_a_restart_in_a_backlog_continues_the_visits_it_left_open() -> None:
    """A new process resuming a backlog hours old loads the visits open at the backlog's
    position, not only those open by the wall clock (they were not loaded: cut in two)."""
    minute = 60_000
    log, store = MemoryLog(), MemoryStore()
    await put(log, accepted(1, ts=T0))
    first = make(log, store, clock=lambda: T0 + 600 * minute)
    await first.start()
    assert await first.process_once() == 1
    late, fresh = accepted(2, ts=T0 + 20 * minute), accepted(3, visitor="v2", ts=T0 + 590 * minute)
    await put(log, late, fresh)
    second = make(log, store, clock=lambda: T0 + 601 * minute)  # a new process, ten hours on
    await second.start()
    assert await second.process_once() == 2
    query = replace(everything(), range=Range(T0 - 1, T0 + 601 * minute))
    result = await store.aggregate(replace(query, metrics=("visits", "events", "bounce_rate")))
    assert (result["visits"], result["events"], result["bounce_rate"]) == (2, 3, 50)


async def test_an_event_sent_hours_late_continues_its_stored_visit() -> None:
    """A pageview queued by a client and sent three hours late joins the visit it belongs to,
    which the processor no longer holds (evicted as newer traffic passed it, or never loaded
    after a restart): it is loaded from the store first. It started a visit of its own."""
    minute = 60_000
    now = [T0 + 10 * minute]
    log, store = MemoryLog(), MemoryStore()
    processor = make(log, store, clock=lambda: now[0])
    await processor.start()
    await put(log, accepted(1, ts=T0), accepted(2, ts=T0 + 10 * minute))
    assert await processor.process_once() == 2
    for n in range(3, 6):  # others' traffic for three hours: v1's visit leaves memory
        now[0] += 60 * minute
        await put(log, accepted(n, visitor="v2", ts=now[0]))
        assert await processor.process_once() == 1
    assert processor.sessions.late(T0 + 15 * minute)
    await put(log, accepted(6, ts=T0 + 15 * minute))  # v1's, three hours late
    assert await processor.process_once() == 1
    assert processor.metrics.late_events._value.get() == 1
    assert processor.metrics.visits_recalled._value.get() == 1
    await put(log, accepted(7, ts=T0 + 16 * minute))  # and then a restart, and another one
    restarted = make(log, store, clock=lambda: now[0])
    await restarted.start()
    assert await restarted.process_once() == 1
    assert restarted.metrics.visits_recalled._value.get() == 1
    query = StatsQuery(
        site_id="a.io",
        range=Range(T0, T0 + 30 * minute),
        metrics=("visits", "pageviews", "visit_duration"),
    )
    result = await store.aggregate(query)
    assert (result["visits"], result["pageviews"], result["visit_duration"]) == (1, 4, 960)
    v1 = [s for s in await store.open_sessions(0) if s.visitor_id == "v1"]
    assert [(s.started_at, s.last_seen, s.exit_page) for s in v1] == [(T0, T0 + 16 * minute, "/p7")]
