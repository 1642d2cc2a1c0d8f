"""The store contract: every adapter passes these, with numbers worked out by hand.

The dataset of the stats tests (site ``shop``, times as offsets from T = 2026-03-10 10:00 UTC):

    visit visitor events (offset, page, extra)                   session row
    sa    va      pageview +0 /home; pageview +60s /pricing      entry /home, exit /pricing,
                  load 100; custom Signup +120s /pricing         2 pv, 3 events, 120 s
                  props plan=pro seats=3
    sb    vb      pageview +1h /home load 300, source Google     1 pv, 1 event, 0 s: a bounce
    sc    va      pageview +2h /blog/Post-1 load 200;            entry /blog/Post-1, exit /home,
                  pageview +2h30s /home                          2 pv, 2 events, 30 s
    sd    vd      click Outbound +3h /docs props plan=free       0 pv, 1 event: a bounce
    se    ve      pageview +2d /home (outside the main range)    1 pv, 1 event

plus one pageview of site ``other`` at T. Sources: sa Twitter, sb Google, sc and sd none.
Countries: sa DE, sb FR, sc DE, sd US.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitstream.domain import rollups
from hitstream.domain.events import ProcessedEvent, Props, Session
from hitstream.domain.stats import (
    DEFAULT_METRICS,
    EVENT_PROPERTIES,
    METRICS,
    BreakdownRow,
    Filter,
    Range,
    StatsQuery,
    bucket_starts,
    previous_period,
    resolve_period,
)
from hitstream.errors import PositionConflict, QueryError, StoreRefused, StoreUnavailable
from hitstream.stores.base import Store, WriteBatch
from hitstream.stores.memory import MemoryStore

SECOND, MINUTE, HOUR, DAY = 1000, 60_000, 3_600_000, 86_400_000


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Epoch ms of a UTC wall-clock moment."""
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp() * 1000)


T = utc(2026, 3, 10, 10)
R = Range(T - HOUR, T + DAY)
SITE = "shop"


class StoreAdapter(Protocol):
    """What the suite needs of ``conftest.StoreAdapter``."""

    name: str
    durable: bool

    def open(self, folder: Path) -> Store: ...


def event(
    event_id: str,
    ts: int,
    visitor: str,
    session: str,
    path: str = "/",
    *,
    type: str = "pageview",
    name: str = "",
    site: str = SITE,
    source: str = "",
    country: str = "",
    browser: str = "",
    load: int | None = None,
    props: Props | None = None,
    title: str = "",
    engaged: int | None = None,
    scroll: int | None = None,
    duration: int | None = None,
    user_id: str = "",
) -> ProcessedEvent:
    return ProcessedEvent(
        event_id=event_id,
        site_id=site,
        type=type,
        name=name,
        timestamp=ts,
        received_at=ts + 5,
        visitor_id=visitor,
        session_id=session,
        user_id=user_id,
        hostname="shop.example",
        path=path,
        url=f"https://shop.example{path}",
        title=title,
        referrer_domain=source.lower(),
        source=source,
        browser=browser,
        device="desktop",
        country=country,
        screen_width=1280,
        load_time_ms=load,
        engaged_ms=engaged,
        scroll_depth=scroll,
        duration_ms=duration,
        props=props or {},
    )


def visit(
    session_id: str,
    visitor: str,
    started: int,
    last: int,
    entry: str,
    exit: str,
    pageviews: int,
    events: int,
    site: str = SITE,
) -> Session:
    return Session(session_id, site, visitor, started, last, entry, exit, pageviews, events)


EVENTS = [
    event("a1", T, "va", "sa", "/home", source="Twitter", country="DE", browser="Firefox"),
    event("a2", T + MINUTE, "va", "sa", "/pricing", source="Twitter", country="DE", load=100),
    event(
        "a3",
        T + 2 * MINUTE,
        "va",
        "sa",
        "/pricing",
        type="custom",
        name="Signup",
        source="Twitter",
        country="DE",
        props={"plan": "pro", "seats": 3},
    ),
    event("b1", T + HOUR, "vb", "sb", "/home", source="Google", country="FR", load=300),
    event("c1", T + 2 * HOUR, "va", "sc", "/blog/Post-1", country="DE", load=200),
    event("c2", T + 2 * HOUR + 30 * SECOND, "va", "sc", "/home", country="DE"),
    event(
        "d1",
        T + 3 * HOUR,
        "vd",
        "sd",
        "/docs",
        type="click",
        name="Outbound",
        country="US",
        props={"plan": "free"},
    ),
    event("e1", T + 2 * DAY, "ve", "se", "/home"),
    event("o1", T, "vo", "so", "/home", site="other"),
]
SESSIONS = [
    visit("sa", "va", T, T + 2 * MINUTE, "/home", "/pricing", 2, 3),
    visit("sb", "vb", T + HOUR, T + HOUR, "/home", "/home", 1, 1),
    visit("sc", "va", T + 2 * HOUR, T + 2 * HOUR + 30 * SECOND, "/blog/Post-1", "/home", 2, 2),
    visit("sd", "vd", T + 3 * HOUR, T + 3 * HOUR, "", "", 0, 1),
    visit("se", "ve", T + 2 * DAY, T + 2 * DAY, "/home", "/home", 1, 1),
    visit("so", "vo", T, T, "/home", "/home", 1, 1, site="other"),
]


@pytest.fixture
async def shop(store: Store) -> Store:
    await store.write(WriteBatch("events", {0: len(EVENTS)}, list(EVENTS), list(SESSIONS)))
    return store


def q(
    metrics: tuple[str, ...] = METRICS,
    filters: tuple[Filter, ...] = (),
    prop: str = "",
    rng: Range = R,
    **kwargs: object,
) -> StatsQuery:
    return StatsQuery(SITE, rng, metrics=metrics, filters=filters, property=prop, **kwargs)  # type: ignore[arg-type]


# -- writes, dedupe, atomicity ---------------------------------------------------------------


async def test_migrate_is_idempotent_after_start(store: Store) -> None:
    assert await store.migrate() == []
    await store.check()


async def test_a_closed_store_refuses_with_store_unavailable(
    store_adapter: StoreAdapter, tmp_path: Path
) -> None:
    closed = store_adapter.open(tmp_path)
    await closed.start()
    await closed.close()
    with pytest.raises(StoreUnavailable):
        await closed.count_events()


async def test_event_ids_are_stored_once_within_and_across_batches(store: Store) -> None:
    first = event("dup", T, "v1", "s1", "/first")
    twin = replace(first, path="/twin")
    await store.write(WriteBatch("events", {0: 3}, [first, twin, event("x", T, "v1", "s1")]))
    await store.write(WriteBatch("events", {0: 4}, [replace(first, path="/late")]))
    assert await store.count_events() == 2
    assert await store.known_event_ids(["dup", "x", "nope"]) == {"dup", "x"}
    rows = await store.breakdown(q(("events",), prop="page"))
    assert [(r.value, r.results["events"]) for r in rows] == [("/", 1.0), ("/first", 1.0)]


async def test_known_event_ids_of_nothing_is_empty(store: Store) -> None:
    assert await store.known_event_ids([]) == set()


@pytest.mark.parametrize("where", ["session", "event", "positions", "drops"])
async def test_a_failing_write_changes_nothing(store: Store, where: str) -> None:
    await store.write(WriteBatch("events", {0: 1}, [EVENTS[0]], [SESSIONS[0]], {(SITE, "bot"): 1}))
    too_big = 2**70
    events = [event("n1", T, "v9", "s9"), event("n2", T + 1, "v9", "s9")]
    sessions = [visit("s9", "v9", T, T + 1, "/", "/", 2, 2)]
    positions = {0: 9, 1: 4}
    drops = {(SITE, "bot"): 5}
    if where == "session":
        sessions.append(visit("s10", "v9", T, T, "/", "/", too_big, 1))
    elif where == "event":
        events.insert(1, replace(events[0], event_id="n3", timestamp=too_big))
    elif where == "positions":
        positions[2] = too_big
    else:
        drops[("other", "bot")] = too_big
    # a value no column holds is a refusal of the data, not an outage: the processor
    # dead-letters that message instead of retrying the batch forever
    with pytest.raises(StoreRefused):
        await store.write(WriteBatch("events", positions, events, sessions, drops))

    assert await store.positions("events") == {0: 1}
    assert await store.count_events() == 1
    assert await store.known_event_ids(["n1", "n2", "n3"]) == set()
    assert [s.session_id for s in await store.open_sessions(0)] == ["sa"]
    assert await store.drop_counts() == {"bot": 1}
    assert await store.data_version(SITE) == 1
    # and the store still works
    await store.write(WriteBatch("events", {0: 3}, events[:1]))
    assert await store.positions("events") == {0: 3}
    assert await store.count_events() == 2


async def test_a_batch_behind_the_stored_position_is_fenced_off(store: Store) -> None:
    """Another processor stored past this batch's start: nothing of it may land."""
    await store.write(WriteBatch("events", {0: 10, 1: 5}, [EVENTS[0]], starts={0: 0, 1: 0}))
    late = WriteBatch("events", {0: 12}, [event("late", T, "v8", "s8")], starts={0: 7})
    with pytest.raises(PositionConflict):
        await store.write(late)
    assert await store.positions("events") == {0: 10, 1: 5}
    assert await store.known_event_ids(["late"]) == set()
    assert await store.data_version(SITE) == 1
    # at the stored position, or past it (offsets may have gaps), is fine; so is a new stream
    await store.write(WriteBatch("events", {0: 11}, [], starts={0: 10}))
    await store.write(WriteBatch("events", {1: 9}, [], starts={1: 8}))
    await store.write(WriteBatch("other", {0: 3}, [], starts={0: 0}))
    assert await store.positions("events") == {0: 11, 1: 9}


async def test_positions_round_trip_per_stream(store: Store) -> None:
    assert await store.positions("a") == {}
    await store.write(WriteBatch("a", {0: 5, 1: 7}))
    await store.write(WriteBatch("b", {0: 3}))
    await store.write(WriteBatch("a", {1: 9}))
    assert await store.positions("a") == {0: 5, 1: 9}
    assert await store.positions("b") == {0: 3}
    assert await store.sites() == []  # positions alone touch no site


async def test_durable_adapters_keep_everything_across_reopen(
    store_adapter: StoreAdapter, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if not store_adapter.durable:
        pytest.skip(f"{store_adapter.name} keeps nothing after close")
    folder = tmp_path_factory.mktemp("durable")
    first = store_adapter.open(folder)
    await first.start()
    await first.write(WriteBatch("events", {0: 9}, list(EVENTS), list(SESSIONS)))
    await first.close()
    second = store_adapter.open(folder)
    await second.start()
    try:
        assert await second.migrate() == []
        assert await second.positions("events") == {0: 9}
        assert await second.count_events() == len(EVENTS)
        assert len(await second.open_sessions(0)) == len(SESSIONS)
        assert (await second.aggregate(q(("visitors",))))["visitors"] == 3.0
    finally:
        await second.close()


async def test_sessions_are_upserted_and_resumable(store: Store) -> None:
    early = visit("s1", "v1", T, T, "/a", "/a", 1, 1)
    later = replace(early, last_seen=T + 10 * MINUTE, exit_page="/b", pageviews=3, events=4)
    other = visit("s2", "v2", T - HOUR, T - HOUR, "/", "/", 1, 1)
    assert await store.newest_visit_ms() is None
    await store.write(WriteBatch("events", {0: 1}, sessions=[early, other]))
    assert await store.newest_visit_ms() == T
    await store.write(WriteBatch("events", {0: 2}, sessions=[later]))
    assert await store.newest_visit_ms() == T + 10 * MINUTE
    assert await store.open_sessions(T) == [later]
    assert await store.open_sessions(T + 10 * MINUTE + 1) == []
    assert [s.session_id for s in await store.open_sessions(0)] == ["s1", "s2"]
    # the last copy of a session in one batch wins
    await store.write(WriteBatch("events", {0: 3}, sessions=[early, later, early]))
    assert await store.open_sessions(T) == [early]
    assert await store.newest_visit_ms() == T  # the stored rows', not the newest ever sent


async def test_a_visitors_stored_visits_are_found_by_visitor_and_time(store: Store) -> None:
    """``visits_of``: what a late event's visit is loaded from (decision 0057)."""
    old = visit("s1", "v1", T - 3 * HOUR, T - 2 * HOUR, "/a", "/b", 2, 2)
    recent = visit("s2", "v1", T, T + MINUTE, "/c", "/c", 1, 1)
    others = [
        visit("s3", "v2", T, T, "/", "/", 1, 1),  # another visitor
        visit("s4", "v1", T, T, "/", "/", 1, 1, site="other"),  # v1's hash on another site
        visit("s5", "v3", T, T, "/", "/", 1, 1, site="other"),
    ]
    await store.write(WriteBatch("events", {0: 1}, sessions=[old, recent, *others]))
    assert await store.visits_of([(SITE, "v1")], T - 3 * HOUR) == [old, recent]
    assert await store.visits_of([(SITE, "v1")], T - 2 * HOUR) == [old, recent]  # at since
    assert await store.visits_of([(SITE, "v1")], T - 2 * HOUR + 1) == [recent]
    both = await store.visits_of([(SITE, "v2"), ("other", "v3"), ("other", "v2")], 0)
    assert [s.session_id for s in both] == ["s5", "s3"]  # by site, then id
    assert await store.visits_of([], 0) == []
    assert await store.visits_of([(SITE, "nobody")], 0) == []


async def test_data_version_grows_with_every_write_that_touches_the_site(store: Store) -> None:
    assert await store.data_version(SITE) == 0
    await store.write(WriteBatch("events", {0: 1}, [EVENTS[0]]))
    assert await store.data_version(SITE) == 1
    await store.write(WriteBatch("events", {0: 2}, sessions=[SESSIONS[0]]))
    assert await store.data_version(SITE) == 2
    await store.write(WriteBatch("events", {0: 3}, drops={(SITE, "bot"): 1}))
    assert await store.data_version(SITE) == 3
    await store.write(WriteBatch("events", {0: 4}, [EVENTS[-1]]))  # site "other"
    await store.write(WriteBatch("events", {0: 5}))
    assert await store.data_version(SITE) == 3
    assert await store.sites() == ["other", SITE]


async def test_drop_counts_add_up_per_site_and_overall(store: Store) -> None:
    await store.write(WriteBatch("events", {0: 1}, drops={(SITE, "bot"): 2, ("other", "bot"): 1}))
    await store.write(WriteBatch("events", {0: 2}, drops={(SITE, "bot"): 3, (SITE, "dup"): 1}))
    assert await store.drop_counts(SITE) == {"bot": 5, "dup": 1}
    assert await store.drop_counts("other") == {"bot": 1}
    assert await store.drop_counts() == {"bot": 6, "dup": 1}
    assert await store.drop_counts("nobody") == {}


async def test_fields_with_control_characters_round_trip(store: Store) -> None:
    odd = "/a\x1fb\x1ec"
    await store.write(
        WriteBatch(
            "events",
            {0: 2},
            [event("odd", T, "v", "s", odd, title="x\x1ey"), event("plain", T, "v", "s", "/p")],
        )
    )
    rows = await store.breakdown(q(("events",), prop="page"))
    assert sorted(r.value for r in rows) == [odd, "/p"]
    assert await store.count_events() == 2


async def test_retention_deletes_old_events_and_sessions(shop: Store) -> None:
    before = await shop.data_version(SITE)
    other_before = await shop.data_version("other")
    # a1 a2 a3 (sa), b1 (sb) and the other site's o1 are older than T + 90 min
    assert await shop.delete_before(T + 90 * MINUTE) == 5
    assert await shop.count_events() == len(EVENTS) - 5
    assert await shop.count_events("other") == 0
    assert {s.session_id for s in await shop.open_sessions(0)} == {"sc", "sd", "se"}
    assert await shop.data_version(SITE) == before + 1
    assert await shop.data_version("other") == other_before + 1
    assert (await shop.aggregate(q(("visits",))))["visits"] == 2.0
    assert await shop.delete_before(0) == 0


# -- stats: aggregate ------------------------------------------------------------------------


async def test_aggregate_every_metric(shop: Store) -> None:
    got = await shop.aggregate(q())
    assert got == {
        "visitors": 3.0,  # va vb vd
        "visits": 4.0,  # sa sb sc sd
        "pageviews": 5.0,
        "events": 7.0,
        "bounce_rate": 50.0,  # sb sd
        "visit_duration": 37.5,  # (120 + 0 + 30 + 0) / 4
        "views_per_visit": 1.25,
        "load_time_p50": 200.0,  # of 100 200 300
        "load_time_p95": pytest.approx(290.0),  # 200 + 0.9 * 100
        "time_on_page": 0.0,  # no engagement event, no duration: nothing to measure
        "scroll_depth": 0.0,
        "avg_duration": 0.0,
    }
    assert list(got) == list(METRICS)


async def test_aggregate_of_nothing_is_zero(shop: Store) -> None:
    assert await shop.aggregate(q(rng=Range(0, 1000))) == dict.fromkeys(METRICS, 0.0)
    empty = StatsQuery("nobody", R, metrics=METRICS)
    assert await shop.aggregate(empty) == dict.fromkeys(METRICS, 0.0)


async def test_range_is_half_open(shop: Store) -> None:
    got = await shop.aggregate(q(("events", "pageviews"), rng=Range(T, T + MINUTE)))
    assert got == {"events": 1.0, "pageviews": 1.0}  # a1 at T in, a2 at T + 1 min out


async def test_other_sites_never_count(shop: Store) -> None:
    got = await shop.aggregate(StatsQuery("other", R, metrics=("visitors", "pageviews")))
    assert got == {"visitors": 1.0, "pageviews": 1.0}


async def test_default_metrics_come_back_in_order(shop: Store) -> None:
    got = await shop.aggregate(StatsQuery(SITE, R))
    assert list(got) == list(DEFAULT_METRICS)


FILTER_CASES = [
    # (filters, visitors, visits, pageviews, events, bounce_rate, visit_duration)
    ((Filter("page", "==", ("/home",)),), 2, 3, 3, 3, 100 / 3, 50.0),
    ((Filter("page", "!=", ("/home",)),), 2, 3, 2, 4, 100 / 3, 50.0),
    ((Filter("page", "==", ("/home", "/docs")),), 3, 4, 3, 4, 50.0, 37.5),
    ((Filter("page", "~", ("post",)),), 1, 1, 1, 1, 0.0, 30.0),
    ((Filter("page", "~", ("PRIC", "DOC")),), 2, 2, 1, 3, 50.0, 60.0),
    ((Filter("country", "!=", ("DE", "FR")),), 1, 1, 0, 1, 100.0, 0.0),
    ((Filter("source", "==", ("",)),), 2, 2, 2, 3, 50.0, 15.0),
    ((Filter("event_name", "==", ("Outbound",)),), 1, 1, 0, 1, 100.0, 0.0),
    ((Filter("event_type", "==", ("pageview",)),), 2, 3, 5, 5, 100 / 3, 50.0),
    ((Filter("referrer", "==", ("google",)),), 1, 1, 1, 1, 100.0, 0.0),
    ((Filter("entry_page", "==", ("/home",)),), 2, 2, 3, 4, 50.0, 60.0),
    ((Filter("exit_page", "==", ("/home",)),), 2, 2, 3, 3, 50.0, 15.0),
    ((Filter("entry_page", "!=", ("/home",)),), 2, 2, 2, 3, 50.0, 15.0),
    ((Filter("entry_page", "~", ("BLOG",)),), 1, 1, 2, 2, 0.0, 30.0),
    ((Filter("prop:plan", "==", ("pro",)),), 1, 1, 0, 1, 0.0, 120.0),
    ((Filter("prop:plan", "!=", ("pro",)),), 3, 4, 5, 6, 50.0, 37.5),
    ((Filter("prop:seats", "==", ("3",)),), 1, 1, 0, 1, 0.0, 120.0),
    ((Filter("prop:plan", "==", ("",)),), 2, 3, 5, 5, 100 / 3, 50.0),
    ((Filter("page", "==", ("/home",)), Filter("country", "==", ("DE",))), 1, 2, 2, 2, 0.0, 75.0),
    ((Filter("page", "==", ("/nowhere",)),), 0, 0, 0, 0, 0.0, 0.0),
]


@pytest.mark.parametrize(
    ("filters", "visitors", "visits", "pageviews", "events", "bounce_rate", "duration"),
    FILTER_CASES,
    ids=[";".join(f"{f.property}{f.op}{'|'.join(f.values)}" for f in c[0]) for c in FILTER_CASES],
)
async def test_filters(
    shop: Store,
    filters: tuple[Filter, ...],
    visitors: int,
    visits: int,
    pageviews: int,
    events: int,
    bounce_rate: float,
    duration: float,
) -> None:
    got = await shop.aggregate(q(filters=filters))
    assert got["visitors"] == visitors
    assert got["visits"] == visits
    assert got["pageviews"] == pageviews
    assert got["events"] == events
    assert got["bounce_rate"] == pytest.approx(bounce_rate)
    assert got["visit_duration"] == pytest.approx(duration)


async def test_filter_on_load_time_percentiles(shop: Store) -> None:
    got = await shop.aggregate(
        q(("load_time_p50", "load_time_p95"), (Filter("country", "==", ("DE",)),))
    )
    assert got == {"load_time_p50": 150.0, "load_time_p95": pytest.approx(195.0)}  # 100, 200


async def test_compare_range_is_just_another_range(shop: Store) -> None:
    current = Range(T + DAY, T + 3 * DAY)
    query = q(("visitors", "pageviews"), rng=current, compare=previous_period(current))
    assert await shop.aggregate(query) == {"visitors": 1.0, "pageviews": 1.0}  # e1
    assert query.compare is not None
    previous = await shop.aggregate(query.for_range(query.compare))
    assert previous == {"visitors": 3.0, "pageviews": 5.0}


# -- stats: breakdown ------------------------------------------------------------------------


def table(rows: list[BreakdownRow]) -> list[tuple[object, ...]]:
    return [(r.value, *r.results.values()) for r in rows]


async def test_breakdown_by_page_orders_by_first_metric_then_second_then_value(
    shop: Store,
) -> None:
    """Among pages of one visitor each, the viewed ones come first (/docs had a visitor but
    no pageview), and the cut at ``limit`` follows the same order."""
    rows = await shop.breakdown(q(("visitors", "pageviews"), prop="page", limit=3))
    assert table(rows) == [("/home", 2.0, 3.0), ("/blog/Post-1", 1.0, 1.0), ("/pricing", 1.0, 1.0)]
    every = table(await shop.breakdown(q(("visitors", "pageviews"), prop="page", limit=100)))
    assert every[:3] == table(rows)
    assert every == sorted(every, key=lambda r: (-float(r[1]), -float(r[2]), str(r[0])))  # type: ignore[arg-type]
    assert ("/docs", 1.0, 0.0) in every[3:]


async def test_breakdown_by_source_counts_direct_as_the_empty_value(shop: Store) -> None:
    rows = await shop.breakdown(q(("visits", "bounce_rate"), prop="source"))
    assert table(rows) == [("", 2.0, 50.0), ("Google", 1.0, 100.0), ("Twitter", 1.0, 0.0)]


async def test_breakdown_by_bounce_rate_first(shop: Store) -> None:
    rows = await shop.breakdown(q(("bounce_rate", "visit_duration"), prop="country"))
    assert table(rows) == [("FR", 100.0, 0.0), ("US", 100.0, 0.0), ("DE", 0.0, 75.0)]


async def test_breakdown_by_views_per_visit_and_percentile(shop: Store) -> None:
    rows = await shop.breakdown(q(("views_per_visit",), prop="browser"))
    # Firefox: a1 only (sa) -> 1/1; "" : a2 a3 b1 c1 c2 d1 -> 4 pageviews / 4 visits
    assert table(rows) == [("", 1.0), ("Firefox", 1.0)]
    rows = await shop.breakdown(q(("load_time_p95", "pageviews"), prop="country"))
    assert table(rows) == [("FR", 300.0, 1.0), ("DE", pytest.approx(195.0), 4.0), ("US", 0.0, 0.0)]


async def test_breakdown_by_entry_and_exit_page_groups_visits(shop: Store) -> None:
    metrics = ("visitors", "visits", "pageviews", "events", "bounce_rate")
    rows = await shop.breakdown(q(metrics, prop="entry_page"))
    assert table(rows) == [
        ("/home", 2.0, 2.0, 3.0, 4.0, 50.0),  # sa + sb
        ("", 1.0, 1.0, 0.0, 1.0, 100.0),  # sd
        ("/blog/Post-1", 1.0, 1.0, 2.0, 2.0, 0.0),  # sc
    ]
    rows = await shop.breakdown(q(("visits", "visit_duration"), prop="exit_page"))
    assert table(rows) == [("/home", 2.0, 15.0), ("/pricing", 1.0, 120.0), ("", 1.0, 0.0)]


async def test_breakdown_by_custom_property(shop: Store) -> None:
    rows = await shop.breakdown(q(("events", "visitors"), prop="prop:plan"))
    assert table(rows) == [("", 5.0, 2.0), ("free", 1.0, 1.0), ("pro", 1.0, 1.0)]
    rows = await shop.breakdown(q(("events",), prop="prop:seats"))
    assert table(rows) == [("", 6.0), ("3", 1.0)]


async def test_a_visitor_seen_only_through_engagement_events_is_not_counted(
    store: Store,
) -> None:
    """Engagement events are measurements: with time_on_page asked they are in the set, yet a
    visitor whose only event on a page is one does not count on that page, with or without
    visits asked (the two shapes of the SQL stores' visitor count)."""
    events = [
        event("p1", T, "va", "sa", "/a"),
        event("p2", T + SECOND, "va", "sa", "/a", type="engagement", engaged=4000, scroll=50),
        event("p3", T + MINUTE, "vb", "sb", "/b"),
        event("p4", T + 2 * MINUTE, "vb", "sb", "/a", type="engagement", engaged=2000),
        event("p5", T + 3 * MINUTE, "vc", "sc", "/a", type="engagement", engaged=6000),
    ]
    sessions = [
        visit("sa", "va", T, T + SECOND, "/a", "/a", 1, 1),
        visit("sb", "vb", T + MINUTE, T + 2 * MINUTE, "/b", "/b", 1, 1),
        visit("sc", "vc", T + 3 * MINUTE, T + 3 * MINUTE, "", "", 0, 0),
    ]
    await store.write(WriteBatch("events", {0: len(events)}, events, sessions))
    # /a: va's pageview; vb and vc only engaged there. time_on_page: (4+2+6) s over 3
    rows = await store.breakdown(q(("visitors", "pageviews", "time_on_page"), prop="page"))
    assert table(rows) == [("/a", 1.0, 1.0, 4.0), ("/b", 1.0, 1.0, 0.0)]
    rows = await store.breakdown(q(("visitors", "visits", "time_on_page"), prop="page"))
    assert table(rows) == [("/a", 1.0, 1.0, 4.0), ("/b", 1.0, 1.0, 0.0)]
    got = await store.aggregate(q(("visitors", "scroll_depth")))
    assert got == {"visitors": 2.0, "scroll_depth": 50.0}


async def test_a_follow_up_report_adds_time_to_its_pageview_not_a_report(store: Store) -> None:
    """A page hidden, shown again and hidden again sends a second engagement event named
    ``follow_up`` with the time it was visible since (decision 0063): that time counts, the
    report does not, so time_on_page stays a mean per reported pageview."""
    events = [
        event("p1", T, "va", "sa", "/a"),
        event("p2", T + SECOND, "va", "sa", "/a", type="engagement", engaged=4000, scroll=50),
        event(
            "p3", T + MINUTE, "va", "sa", "/a", type="engagement", name="follow_up", engaged=3000
        ),
        event("p4", T + 2 * MINUTE, "vb", "sb", "/a"),
        event("p5", T + 3 * MINUTE, "vb", "sb", "/a", type="engagement", engaged=1000, scroll=90),
        event("p6", T + 4 * MINUTE, "vb", "sb", "/b"),
        event(
            "p7",
            T + 5 * MINUTE,
            "vb",
            "sb",
            "/b",
            type="engagement",
            name="follow_up",
            engaged=5000,
        ),
    ]
    sessions = [
        visit("sa", "va", T, T + MINUTE, "/a", "/a", 1, 1),
        visit("sb", "vb", T + 2 * MINUTE, T + 5 * MINUTE, "/a", "/b", 2, 2),
    ]
    await store.write(WriteBatch("events", {0: len(events)}, events, sessions))
    # /a: two reported views, 4 + 3 s and 1 s; /b: no first report reached us, 5 s of time
    rows = await store.breakdown(q(("pageviews", "time_on_page", "scroll_depth"), prop="page"))
    assert table(rows) == [("/a", 2.0, 4.0, 70.0), ("/b", 1.0, 0.0, 0.0)]
    got = await store.aggregate(q(("time_on_page", "scroll_depth")))
    assert got == {"time_on_page": (4 + 3 + 1 + 5) / 2, "scroll_depth": 70.0}


async def test_breakdown_with_filter_and_limit(shop: Store) -> None:
    query = q(("pageviews",), (Filter("country", "==", ("DE",)),), prop="page", limit=2)
    rows = await shop.breakdown(query)
    assert table(rows) == [("/home", 2.0), ("/blog/Post-1", 1.0)]


async def test_breakdown_by_event_name_and_type(shop: Store) -> None:
    rows = await shop.breakdown(q(("events",), prop="event_type"))
    assert table(rows) == [("pageview", 5.0), ("click", 1.0), ("custom", 1.0)]
    rows = await shop.breakdown(q(("events",), (Filter("event_name", "!=", ("",)),), "event_name"))
    assert table(rows) == [("Outbound", 1.0), ("Signup", 1.0)]


async def test_clicks_per_identified_user_and_page(store: Store) -> None:
    """The seeds' "clicks per user and page": ``property=user_id`` with ``event_type``/``page``
    filters; anonymous events (no ``user_id``) form the ``""`` row, as any missing value."""
    plan = [  # (user, page, type) in time order
        ("ann", "/a", "click"),
        ("ann", "/a", "click"),
        ("ann", "/b", "click"),
        ("bob", "/a", "click"),
        ("bob", "/a", "pageview"),
        ("", "/a", "click"),
        ("cy", "/b", "click"),
        ("ann", "/a", "pageview"),
    ]
    events = [
        event(
            f"u{i}",
            T + i * MINUTE,
            f"v-{u or 'anon'}",
            f"s-{u or 'anon'}",
            page,
            type=kind,
            user_id=u,
        )
        for i, (u, page, kind) in enumerate(plan)
    ]
    await store.write(WriteBatch("events", {0: len(events)}, events, []))
    for page in ("/a", "/b"):
        expected = Counter(u for u, p, kind in plan if p == page and kind == "click")
        clicks = (Filter("event_type", "==", ("click",)), Filter("page", "==", (page,)))
        rows = await store.breakdown(q(("events",), clicks, "user_id"))
        assert {r.value: r.results["events"] for r in rows} == {
            u: float(n) for u, n in expected.items()
        }
    only_ann = (Filter("user_id", "==", ("ann",)),)
    total = await store.aggregate(q(("events", "pageviews"), only_ann))
    assert total == {
        "events": float(sum(u == "ann" for u, _, _ in plan)),
        "pageviews": float(sum(u == "ann" and k == "pageview" for u, _, k in plan)),
    }


@pytest.mark.parametrize("prop", sorted(EVENT_PROPERTIES))
async def test_breakdown_works_for_every_event_property(shop: Store, prop: str) -> None:
    rows = await shop.breakdown(q(("events",), prop=prop))
    assert sum(r.results["events"] for r in rows) == 7.0
    assert len({r.value for r in rows}) == len(rows)


async def test_unknown_property_or_metric_is_a_query_error(shop: Store) -> None:
    with pytest.raises(QueryError):
        await shop.breakdown(q(("events",), prop="nope"))
    with pytest.raises(QueryError):
        await shop.breakdown(q(("events",), prop="prop:"))
    with pytest.raises(QueryError):
        await shop.aggregate(q(("nope",)))
    with pytest.raises(QueryError):
        await shop.aggregate(q(filters=(Filter("path; DROP TABLE events", "==", ("x",)),)))


# -- stats: timeseries -----------------------------------------------------------------------


async def test_timeseries_by_day_includes_empty_buckets(shop: Store) -> None:
    points = await shop.timeseries(q(("pageviews", "visitors"), interval="day"))
    day = T - 10 * HOUR  # 2026-03-10 00:00 UTC
    assert [(p.bucket, p.results) for p in points] == [
        (day, {"pageviews": 5.0, "visitors": 3.0}),
        (day + DAY, {"pageviews": 0.0, "visitors": 0.0}),
    ]


async def test_timeseries_by_hour(shop: Store) -> None:
    points = await shop.timeseries(
        q(("pageviews", "events", "bounce_rate"), rng=Range(T, T + 4 * HOUR), interval="hour")
    )
    assert [p.bucket for p in points] == [T, T + HOUR, T + 2 * HOUR, T + 3 * HOUR]
    assert [tuple(p.results.values()) for p in points] == [
        (2.0, 3.0, 0.0),
        (1.0, 1.0, 100.0),
        (2.0, 2.0, 0.0),
        (0.0, 1.0, 100.0),
    ]


async def test_timeseries_in_berlin_across_the_spring_dst_change(store: Store) -> None:
    events = [
        event("k1", utc(2026, 3, 28, 22, 30), "v1", "s1"),  # Mar 28 23:30 CET
        event("k2", utc(2026, 3, 28, 23, 30), "v2", "s2"),  # Mar 29 00:30 CET
        event("k3", utc(2026, 3, 29, 21, 30), "v3", "s3"),  # Mar 29 23:30 CEST
        event("k4", utc(2026, 3, 29, 22, 30), "v4", "s4"),  # Mar 30 00:30 CEST
    ]
    await store.write(WriteBatch("events", {0: 4}, events))
    days = resolve_period("custom", 0, "Europe/Berlin", "2026-03-28", "2026-03-30")
    points = await store.timeseries(q(("pageviews",), rng=days, interval="day", tz="Europe/Berlin"))
    assert [p.bucket for p in points] == [
        utc(2026, 3, 27, 23),  # 24 h
        utc(2026, 3, 28, 23),  # 23 h: the clocks jump at 02:00
        utc(2026, 3, 29, 22),
    ]
    assert [p.results["pageviews"] for p in points] == [1.0, 2.0, 1.0]
    night = Range(utc(2026, 3, 28, 23), utc(2026, 3, 29, 3))  # 00:00 to 05:00 local
    points = await store.timeseries(
        q(("pageviews",), rng=night, interval="hour", tz="Europe/Berlin")
    )
    assert [p.bucket for p in points] == [utc(2026, 3, 28, 23) + i * HOUR for i in range(4)]
    assert [p.results["pageviews"] for p in points] == [1.0, 0.0, 0.0, 0.0]


async def test_a_day_that_starts_inside_a_half_hour_keeps_its_first_minutes(
    store: Store,
) -> None:
    """Kathmandu is UTC+5:45: its days start at :15 past a half hour. A one-day series
    from the rollups dropped the half hour holding the day's start, so the events of the
    first 15 minutes were missing (the aggregate had them)."""
    events = [
        event("n1", utc(2026, 3, 9, 18, 22), "v1", "s1"),  # Mar 10 00:07 local
        event("n2", utc(2026, 3, 9, 18, 40), "v2", "s2"),  # 00:25
        event("n3", utc(2026, 3, 10, 6), "v1", "s3"),  # 11:45
    ]
    await store.write(WriteBatch("events", {0: 3}, events))
    day = resolve_period("custom", 0, "Asia/Kathmandu", "2026-03-10", "2026-03-10")
    query = q(("pageviews", "visitors", "visits"), rng=day, interval="day", tz="Asia/Kathmandu")
    [point] = await store.timeseries(query)
    assert point.bucket == utc(2026, 3, 9, 18, 15)
    assert point.results == {"pageviews": 3.0, "visitors": 2.0, "visits": 3.0}
    assert await store.aggregate(replace(query, interval="")) == point.results


async def test_timeseries_across_a_skipped_calendar_day(store: Store) -> None:
    """Samoa skipped 2011-12-30 (UTC-10 to UTC+14): day buckets are 24 h apart in UTC but
    one local day is missing, which no fixed step can describe."""
    events = [
        event("w1", utc(2011, 12, 29, 22), "v1", "s1"),  # Dec 29 12:00 local
        event("w2", utc(2011, 12, 30, 22), "v2", "s2"),  # Dec 31 12:00 local
        event("w3", utc(2011, 12, 31, 12), "v3", "s3"),  # Jan 1 02:00 local
    ]
    await store.write(WriteBatch("events", {0: 3}, events))
    days = resolve_period("custom", 0, "Pacific/Apia", "2011-12-28", "2012-01-01")
    query = q(("pageviews",), rng=days, interval="day", tz="Pacific/Apia")
    points = await store.timeseries(query)
    assert [p.bucket for p in points] == bucket_starts(query)
    assert {p.bucket: p.results["pageviews"] for p in points} == {
        utc(2011, 12, 28, 10): 0.0,  # Dec 28 00:00 local
        utc(2011, 12, 29, 10): 1.0,  # Dec 29
        utc(2011, 12, 30, 10): 1.0,  # Dec 31
        utc(2011, 12, 31, 10): 1.0,  # Jan 1, now UTC+14
    }


# -- the SQL adapters agree with the reference on random data ------------------------------

H = utc(2026, 3, 28, 12)  # random data lives around here: Berlin switches to DST at +13 h
PAGES = ["/", "/a", "/A", "/a/b", "/Ä/ü", "/blog/x", "", "/a b", "/a.1\n", "/2026/a_b"]
WORDS = ["", "x", "X", "Google", "google", "é", "DE", "FR"]
_site_numbers = itertools.count()


Batches = list[tuple[list[ProcessedEvent], list[Session]]]


@st.composite
def datasets(draw: st.DrawFn) -> Batches:
    """Events and sessions spread over 1-3 batches, with duplicate event ids (other content)
    and stale session copies written before the final ones."""
    sessions = []
    for number in range(draw(st.integers(2, 6))):
        started = H + draw(st.integers(-HOUR, DAY))
        sessions.append(
            visit(
                f"s{number}",
                draw(st.sampled_from(["v0", "v1", "v2", "v3"])),
                started,
                started + draw(st.integers(0, 2 * HOUR)),
                draw(st.sampled_from(PAGES)),
                draw(st.sampled_from(PAGES)),
                draw(st.integers(0, 3)),
                draw(st.integers(0, 3)),
            )
        )
    prop_values = st.one_of(
        st.sampled_from(WORDS), st.integers(-3, 3), st.booleans(), st.sampled_from([0.5, 1.0])
    )
    events = []
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["pageview", "pageview", "custom", "click", "engagement"]))
        engagement = kind == "engagement"
        names = ["", "Signup", "signup", "follow_up"] if engagement else ["", "Signup", "signup"]
        name = draw(st.sampled_from(names))
        events.append(
            event(
                f"e{draw(st.integers(0, 40))}",
                H + draw(st.integers(-2 * HOUR, DAY + 2 * HOUR)),
                draw(st.sampled_from(["v0", "v1", "v2", "v3", "v4", "v5"])),
                draw(st.sampled_from(["", "s0", "s1", "s2", "s3", "s4", "s5", "s9"])),
                draw(st.sampled_from(PAGES)),
                type=kind,
                name=name,
                source=draw(st.sampled_from(WORDS)),
                country=draw(st.sampled_from(["", "DE", "FR", "de"])),
                load=draw(st.one_of(st.none(), st.integers(0, 5000))),
                props=draw(st.dictionaries(st.sampled_from(["plan", "n", "Plan"]), prop_values)),
                engaged=draw(st.integers(0, 600_000)) if engagement else None,
                scroll=(
                    draw(st.one_of(st.none(), st.integers(0, 100)))
                    if engagement and name != "follow_up"
                    else None
                ),
                duration=None if engagement else draw(st.one_of(st.none(), st.integers(0, 9999))),
            )
        )
    cuts = draw(st.integers(1, 3))
    batches: Batches = [(events[i::cuts], sessions[i::cuts]) for i in range(cuts)]
    for session in draw(st.lists(st.sampled_from(sessions), max_size=3)) if sessions else []:
        stale = replace(session, last_seen=session.started_at, pageviews=1, events=1)
        if draw(st.booleans()):  # first written when it had seen no page yet (decision 0054)
            stale = replace(stale, entry_page="", exit_page="")
        batches[0][1].insert(0, stale)
    return batches


PROPERTIES = [*sorted(EVENT_PROPERTIES), "entry_page", "exit_page", "prop:plan", "prop:n"]


ATOMS = ["a", "A", "/", "\\.", ".", "[a-c]", "[^/]", "\\d", "\\w", "\\s", "Ä", "g", "[/_]", "1"]


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    """A random pattern of the filter syntax (``domain.patterns``); ``$`` only as an anchor."""
    parts = []
    if draw(st.integers(0, 3)) == 0:
        parts.append("^")
    for _ in range(draw(st.integers(1, 3))):
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            options = draw(st.lists(patterns(depth + 1), min_size=1, max_size=3))
            atom = "(" + "|".join(options) + ")"
        else:
            atom = draw(st.sampled_from(ATOMS))
        parts.append(atom + draw(st.sampled_from(["", "", "*", "+", "?", "{1,2}", "{2}"])))
    if draw(st.integers(0, 3)) == 0:
        parts.append("$")
    return "".join(parts)


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    op = draw(st.sampled_from(["==", "!=", "~", "!~", "=~", "!=~"]))
    values = [*PAGES, *WORDS, "pageview", "1", "true", "0.5"]
    if op in ("~", "!~"):  # short needles in both cases, so that contains() has something to find
        values = ["a", "A", "/a", "ä", "Ä", "O", "g", "e", "1", "Up", "x"]
    chosen = draw(st.lists(st.sampled_from(values), min_size=1, max_size=3))
    if op in ("=~", "!=~"):
        chosen = [draw(patterns())]
    # the properties that vary most in the data come up more often
    prop = draw(st.sampled_from([*PROPERTIES, *["page", "source", "entry_page", "prop:plan"] * 3]))
    return Filter(prop, op, tuple(chosen))


@st.composite
def queries(draw: st.DrawFn) -> StatsQuery:
    # whole half hours half of the time: what stores with rollups answer from them
    whole = st.integers(-6, 24).map(lambda n: n * HOUR // 2)
    start = H + draw(whole | st.integers(-3 * HOUR, 12 * HOUR))
    length = (
        st.sampled_from([DAY, 2 * DAY])
        | st.integers(0, DAY)
        | st.integers(1, 60).map(lambda n: n * HOUR // 2)
    )
    return StatsQuery(
        site_id="",
        range=Range(start, start + draw(length)),
        metrics=tuple(draw(st.permutations(METRICS))[: draw(st.integers(1, len(METRICS)))]),
        filters=tuple(draw(st.lists(filters(), max_size=2))),
        interval=draw(st.sampled_from(["hour", "day"])),
        property=draw(st.sampled_from(PROPERTIES)),
        limit=draw(st.integers(1, 8)),
        tz=draw(st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kathmandu"])),
    )


@st.composite
def segment_queries(draw: st.DrawFn) -> StatsQuery:
    """A breakdown under one ``property == value`` filter on an event property, over whole
    half hours, without load-time percentiles: what a store with rollups answers from the
    filter's segment."""
    start = H + draw(st.integers(-6, 24)) * HOUR // 2
    length = draw(st.integers(1, 96)) * HOUR // 2
    # values the data has, mostly (``datasets``): a filter that matches nothing tests little
    pools = {
        "page": PAGES,
        "source": WORDS,
        "referrer": [w.lower() for w in WORDS],
        "country": ["", "DE", "FR", "de", "XX"],
        "event_name": ["", "Signup", "signup"],
        "event_type": ["pageview", "custom", "click"],
        "browser": ["", "Chrome"],
    }
    prop = draw(st.sampled_from([*sorted(EVENT_PROPERTIES), *pools, *pools]))
    value = draw(st.sampled_from(pools.get(prop, [*PAGES, *WORDS, "1", "true"])))
    plain = [m for m in METRICS if not m.startswith("load_time")]
    return StatsQuery(
        site_id="",
        range=Range(start, start + length),
        metrics=tuple(draw(st.permutations(plain))[: draw(st.integers(1, len(plain)))]),
        filters=(Filter(prop, "==", (value,)),),
        property=draw(st.sampled_from([p for p in PROPERTIES if p != prop])),
        limit=draw(st.integers(1, 8)),
    )


def same(left: dict[str, float], right: dict[str, float]) -> bool:
    return left.keys() == right.keys() and all(
        math.isclose(left[k], right[k], rel_tol=1e-12, abs_tol=1e-9) for k in left
    )


class Reference:
    """The stats definitions (README, ``hitstream.domain.stats``) computed here from the raw
    batches in plain Python, sharing no code with the stores: no metric, percentile, filter or
    property-text helper of hitstream's, so a slip in those fails the comparison."""

    def __init__(self, batches: Batches) -> None:
        self.events: dict[str, ProcessedEvent] = {}
        self.visits: dict[str, Session] = {}
        for events, sessions in batches:
            for e in events:
                self.events.setdefault(e.event_id, e)  # the first copy of an id wins
            for v in sessions:
                self.visits[v.session_id] = v  # the last copy of a visit wins

    @staticmethod
    def _text(value: object) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else repr(value)

    def value(self, prop: str, e: ProcessedEvent) -> str | None:
        if prop.startswith("prop:"):
            key = prop[5:]
            return self._text(e.props[key]) if key in e.props else ""
        if prop in ("entry_page", "exit_page"):
            row = self.visits.get(e.session_id)
            if row is None:
                return None
            return row.entry_page if prop == "entry_page" else row.exit_page
        return str(getattr(e, EVENT_PROPERTIES[prop]))

    def passes(self, f: Filter, e: ProcessedEvent) -> bool:
        value = self.value(f.property, e)
        if value is None:
            return False
        if f.op == "==":
            return value in f.values
        if f.op == "!=":
            return value not in f.values
        if f.op in ("=~", "!=~"):
            # Python's backtracking engine on the same text: ASCII classes, '.' takes
            # newlines, and '$' is the end of the value (Python's '$' also matches before
            # a final newline, '\Z' does not)
            regex = f.values[0].replace("$", "\\Z")
            found = re.search(regex, value, re.ASCII | re.DOTALL) is not None
            return found if f.op == "=~" else not found
        contains = any(needle.lower() in value.lower() for needle in f.values)
        return contains if f.op == "~" else not contains

    def matching(self, query: StatsQuery) -> list[ProcessedEvent]:
        """Engagement events are measurements: only a query asking time on page or scroll
        depth sees them at all."""
        sees_engagement = bool({"time_on_page", "scroll_depth"} & set(query.metrics))
        return [
            e
            for e in self.events.values()
            if query.range.start <= e.timestamp < query.range.end
            and all(self.passes(f, e) for f in query.filters)
            and (sees_engagement or e.type != "engagement")
        ]

    @staticmethod
    def percentile(values: list[int], fraction: float) -> float:
        if not values:
            return 0.0
        ordered = sorted(values)
        position = (len(ordered) - 1) * fraction
        low = int(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    def metrics(self, seen: list[ProcessedEvent], names: tuple[str, ...]) -> dict[str, float]:
        engaged = [e for e in seen if e.type == "engagement"]
        events = [e for e in seen if e.type != "engagement"]
        times = [e.engaged_ms for e in engaged if e.engaged_ms is not None]
        reports = [e for e in engaged if e.engaged_ms is not None and e.name != "follow_up"]
        depths = [e.scroll_depth for e in engaged if e.scroll_depth is not None]
        durations = [e.duration_ms for e in events if e.duration_ms is not None]
        visit_ids = {e.session_id for e in events if e.session_id}
        rows = [self.visits[v] for v in visit_ids if v in self.visits]
        pageviews = [e for e in events if e.type == "pageview"]
        loads = [e.load_time_ms for e in pageviews if e.load_time_ms is not None]
        bounces = sum(1 for r in rows if r.pageviews <= 1 and r.events <= 1)
        seconds = sum(r.last_seen - r.started_at for r in rows) / 1000
        values = {
            "visitors": len({e.visitor_id for e in events}),
            "visits": len(visit_ids),
            "pageviews": len(pageviews),
            "events": len(events),
            "bounce_rate": 100 * bounces / len(rows) if rows else 0,
            "visit_duration": seconds / len(rows) if rows else 0,
            "views_per_visit": len(pageviews) / len(visit_ids) if visit_ids else 0,
            "load_time_p50": self.percentile(loads, 0.5),
            "load_time_p95": self.percentile(loads, 0.95),
            "time_on_page": sum(times) / len(reports) / 1000 if reports else 0,
            "scroll_depth": sum(depths) / len(depths) if depths else 0,
            "avg_duration": sum(durations) / len(durations) / 1000 if durations else 0,
        }
        return {name: float(values[name]) for name in names}

    def aggregate(self, query: StatsQuery) -> dict[str, float]:
        return self.metrics(self.matching(query), query.metrics)

    def breakdown(self, query: StatsQuery) -> list[tuple[str, dict[str, float]]]:
        groups: dict[str, list[ProcessedEvent]] = {}
        for e in self.matching(query):
            value = self.value(query.property, e)
            if value is not None:
                groups.setdefault(value, []).append(e)
        rows = [(v, self.metrics(evs, query.metrics)) for v, evs in groups.items()]
        first, second = query.metrics[0], query.metrics[1:2]
        # the first metric descending, then the second, then the value
        rows.sort(key=lambda row: (-row[1][first], -row[1][second[0]] if second else 0.0, row[0]))
        return rows[: query.limit]

    def timeseries(self, query: StatsQuery) -> list[tuple[int, dict[str, float]]]:
        starts = bucket_starts(query)
        ends = [*starts[1:], query.range.end][: len(starts)]
        found = self.matching(query)
        return [
            (lo, self.metrics([e for e in found if lo <= e.timestamp < hi], query.metrics))
            for lo, hi in zip(starts, ends, strict=True)
        ]


async def write_site(
    stores: list[Store], site: str, batches: Batches, asked: list[StatsQuery]
) -> Batches:
    """``batches`` as the site's own (ids prefixed), written to each store, after the segment
    of every breakdown in ``asked`` under one ``==`` filter is registered where a store has
    segments: from the beginning (no event stored yet), so they answer from rollups. Not a
    custom property's (its key is not rolled up yet: the stores' integration tests have
    those). Returns the batches written."""
    for store in stores:
        register = getattr(store, "register_segment", None)
        for query in asked:
            segment = rollups.segment_of(query, query.property or None)
            if register is not None and segment is not None:
                await register(site, *segment)
    mine: Batches = []
    for number, (events, sessions) in enumerate(batches):
        events = [replace(e, site_id=site, event_id=f"{site}-{e.event_id}") for e in events]
        sessions = [replace(v, site_id=site) for v in sessions]
        mine.append((events, sessions))
        for store in stores:
            await store.write(WriteBatch(site, {0: number}, events, sessions))
    return mine


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=datasets(), asked=st.lists(queries(), min_size=1, max_size=4))
async def test_stores_agree_with_an_independent_reference(
    sql_store: Store, batches: Batches, asked: list[StatsQuery]
) -> None:
    """Random data and queries: the SQL store under test and the memory store both give
    exactly what ``Reference`` computes from the same rows."""
    # every example gets its own site (and event ids), so one store serves them all
    site = f"site{next(_site_numbers)}"
    memory = MemoryStore()
    reference = Reference(await write_site([sql_store, memory], site, batches, asked))
    for query in asked:
        query = replace(query, site_id=site)
        want = reference.breakdown(query)
        want_ts = reference.timeseries(query)
        for store in (sql_store, memory):
            assert same(await store.aggregate(query), reference.aggregate(query)), query
            got = await store.breakdown(query)
            assert [r.value for r in got] == [value for value, _ in want], query
            pairs = zip(got, want, strict=True)
            assert all(same(g.results, results) for g, (_, results) in pairs), query
            got_ts = await store.timeseries(query)
            assert [p.bucket for p in got_ts] == [bucket for bucket, _ in want_ts], query
            points = zip(got_ts, want_ts, strict=True)
            assert all(same(g.results, results) for g, (_, results) in points), query


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=datasets(), asked=st.lists(segment_queries(), min_size=1, max_size=4))
async def test_segment_breakdowns_agree_with_an_independent_reference(
    sql_store: Store, batches: Batches, asked: list[StatsQuery]
) -> None:
    """Breakdowns under one ``==`` filter whose segment the store rolls up from the
    beginning (registered before any write, where the store has segments), and the filtered
    aggregate and graph with load-time percentiles: exactly what ``Reference`` computes, late
    events, duplicates and changed visit rows included."""
    site = f"site{next(_site_numbers)}"
    assert all(rollups.segment_of(query, query.property) for query in asked)
    reference = Reference(await write_site([sql_store], site, batches, asked))
    for query in asked:
        query = replace(query, site_id=site)
        want = reference.breakdown(query)
        got = await sql_store.breakdown(query)
        assert [r.value for r in got] == [value for value, _ in want], query
        pairs = zip(got, want, strict=True)
        assert all(same(g.results, results) for g, (_, results) in pairs), query
        # the aggregate and graph under the filter, load-time percentiles included (counts
        # from the value's rollup rows, percentiles from a scan)
        timed = replace(query, metrics=(*query.metrics, "load_time_p50", "load_time_p95"))
        assert same(await sql_store.aggregate(timed), reference.aggregate(timed)), timed
        points = await sql_store.timeseries(timed)
        want_ts = reference.timeseries(timed)
        assert [p.bucket for p in points] == [bucket for bucket, _ in want_ts], timed
        assert all(same(p.results, r) for p, (_, r) in zip(points, want_ts, strict=True))
