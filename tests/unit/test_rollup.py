"""The rollup rule (``hitstream.domain.rollups``) against the memory store's definitions.

Batches of random events and visit rows are kept twice: by the memory store (the reference)
and as rollup counts changed batch by batch, the way the PostgreSQL store keeps them. Every
range of whole half hours is then answered from the counts alone (sum the periods in range,
chained fields only where ``prev`` is before the range or bucket start) and must equal the
reference: aggregates, breakdowns by every rolled-up property and hourly timeseries.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitstream.domain import rollups
from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.measures import metric_values
from hitstream.domain.stats import Range, StatsQuery
from hitstream.stores.base import WriteBatch
from hitstream.stores.memory import MemoryStore

HOUR = 3_600_000
HALF = rollups.SLOT
H0 = 1_774_699_200_000  # 2026-03-28 12:00 UTC, a whole hour
METRICS = ("visitors", "visits", "pageviews", "events", "bounce_rate", "visit_duration")
PAGES = ["/", "/a", "/b", "/Ä"]


class Kept:
    """Rollup counts kept batch by batch, with every slot and visit row in memory."""

    def __init__(
        self,
        *,
        whole: bool = False,
        keys: rollups.PropKeys | None = None,
        segments: rollups.Segments | None = None,
    ) -> None:
        self.whole = whole
        """Every chain walked from its start (``rollups.change(whole=True)``)."""
        self.keys, self.segments = keys, segments
        self.slots: dict[rollups.SlotKey, rollups.Slot] = {}
        self.facts: dict[tuple[str, str], rollups.VisitFacts] = {}
        self.ids: set[str] = set()
        self.counts: rollups.Counts = {}

    def write(self, events: list[ProcessedEvent], sessions: list[Session]) -> None:
        fresh: list[ProcessedEvent] = []
        for event in events:  # the first copy of an id wins, stored ids are skipped
            if event.event_id not in self.ids:
                self.ids.add(event.event_id)
                fresh.append(event)
        last = list({(s.site_id, s.session_id): s for s in sessions}.values())
        touched = rollups.touched(fresh, last)
        visitors = touched.visitors | rollups.affected_visitors(self.slots.values(), last)
        change = rollups.change(
            self.slots.values(),
            self.facts,
            fresh,
            last,
            visitors,
            self.keys,
            self.segments,
            whole=self.whole,
        )
        for slot in change.slots:
            self.slots[slot.key] = slot
        for session in last:
            self.facts[(session.site_id, session.session_id)] = rollups.VisitFacts.of(session)
        for key, row in change.counts.items():
            total = self.counts.setdefault(key, [0] * len(rollups.FIELDS))
            for i, number in enumerate(row):
                total[i] += number

    def sums(self, prop: str, lo: int, hi: int, firsts: dict[int, int]) -> dict[str, Sums]:
        """value -> sums over hours [lo, hi); ``firsts`` maps each hour to its bucket start."""
        found: dict[str, list[int]] = {}
        for (_, dim, value, hour, prev), row in self.counts.items():
            if dim != prop or not lo <= hour < hi:
                continue
            total = found.setdefault(f"{firsts[hour]}|{value}", [0] * len(rollups.FIELDS))
            chained = prev < firsts[hour]
            for i, name in enumerate(rollups.FIELDS):
                if chained or name in ("pageviews", "events"):
                    total[i] += row[i]
        return {k: Sums(*v) for k, v in found.items() if v[-1]}


class Sums(NamedTuple):
    visitors: int = 0
    visits: int = 0
    measured: int = 0
    bounces: int = 0
    duration: int = 0
    pageviews: int = 0
    events: int = 0


def metrics(vec: Sums | None) -> dict[str, float]:
    vec = vec or Sums()
    return metric_values(
        METRICS,
        visitors=vec.visitors,
        visits=vec.visits,
        pageviews=vec.pageviews,
        events=vec.events,
        measured=vec.measured,
        bounces=vec.bounces,
        duration_ms=vec.duration,
        p50=0.0,
        p95=0.0,
    )


def event(
    number: int, hour: int, minute: int, visitor: str, visit: str, **fields: Any
) -> ProcessedEvent:
    ts = H0 + hour * HOUR + minute * 60_000
    made = ProcessedEvent(
        event_id=f"e{number}",
        site_id="site",
        type=fields.pop("type", "pageview"),
        name="",
        timestamp=ts,
        received_at=ts,
        visitor_id=visitor,
        session_id=visit,
    )
    return replace(made, **fields)


@st.composite
def batches(draw: st.DrawFn) -> list[tuple[list[ProcessedEvent], list[Session]]]:
    events = [
        event(
            draw(st.integers(0, 40)),
            draw(st.integers(-2, 5)),
            draw(st.integers(0, 59)),
            draw(st.sampled_from(["v0", "v1", "v2"])),
            draw(st.sampled_from(["", "s0", "s1", "s2", "s3"])),
            path=draw(st.sampled_from(PAGES)),
            country=draw(st.sampled_from(["", "DE", "FR"])),
            type=draw(st.sampled_from(["pageview", "pageview", "custom"])),
            props=draw(st.sampled_from([{}, {"plan": "pro"}, {"plan": "free"}])),
        )
        for _ in range(draw(st.integers(1, 25)))
    ]
    sessions = [
        Session(
            f"s{draw(st.integers(0, 4))}",
            "site",
            draw(st.sampled_from(["v0", "v1", "v2"])),
            H0,
            H0 + draw(st.integers(0, 3 * HOUR)),
            draw(st.sampled_from(PAGES)),
            draw(st.sampled_from(PAGES)),
            draw(st.integers(0, 3)),
            draw(st.integers(0, 3)),
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    cuts = draw(st.integers(1, 4))
    return [(events[i::cuts], sessions[i::cuts]) for i in range(cuts)]


async def kept_and_reference(
    written: list[tuple[list[ProcessedEvent], list[Session]]],
) -> tuple[Kept, MemoryStore]:
    kept, reference = Kept(), MemoryStore()
    await reference.start()
    for number, (events, sessions) in enumerate(written):
        await reference.write(WriteBatch("log", {0: number}, list(events), list(sessions)))
        kept.write(events, sessions)
    return kept, reference


@settings(max_examples=150, deadline=None)
@given(
    written=batches(),
    lo=st.integers(-6, 10),
    width=st.integers(1, 16),
    prop=st.sampled_from(["", *sorted(rollups.DIMS)]),
)
async def test_whole_half_hour_ranges_from_the_counts_equal_the_reference(
    written: list[tuple[list[ProcessedEvent], list[Session]]], lo: int, width: int, prop: str
) -> None:
    kept, reference = await kept_and_reference(written)
    start, end = H0 + lo * HALF, H0 + (lo + width) * HALF  # any whole half hours
    query = StatsQuery(site_id="site", range=Range(start, end), metrics=METRICS, limit=1000)
    firsts = {h: start for h in range(start, end, HALF)}
    sums = kept.sums(prop, start, end, firsts)
    if not prop:
        assert metrics(sums.get(f"{start}|")) == await reference.aggregate(query)
        return
    want = {
        row.value: row.results for row in await reference.breakdown(replace(query, property=prop))
    }
    got = {key.split("|", 1)[1]: metrics(vec) for key, vec in sums.items()}
    assert got == want


@settings(max_examples=150, deadline=None)
@given(written=batches())
def test_chains_walked_from_the_first_changed_period_keep_the_same_counts(
    written: list[tuple[list[ProcessedEvent], list[Session]]],
) -> None:
    """A write walks a visitor's chains from the first period it changes for that visitor
    (late events and replaced visit rows included): every batch's change equals the one
    that walks every chain from its start, so the kept counts are equal row by row."""
    shortcut, whole = Kept(), Kept(whole=True)
    for events, sessions in written:
        shortcut.write(events, sessions)
        whole.write(events, sessions)
        assert shortcut.counts == whole.counts
        assert shortcut.slots == whole.slots


@settings(max_examples=200, deadline=None)
@given(written=batches())
def test_walking_only_the_members_a_write_touches_keeps_the_same_counts(
    written: list[tuple[list[ProcessedEvent], list[Session]]],
) -> None:
    """With a custom property key and segments (on an event property, a custom one and the
    country) the members a write walks, and the differences it adds to the others' chain
    rows when a visit row changes, give row for row what walking every chain gives."""
    keys = {"site": ("plan",)}
    segments = {
        "site": {
            "page": frozenset({"/a", "/Ä"}),
            "country": frozenset({"DE"}),
            "prop:plan": frozenset({"pro"}),
        }
    }
    shortcut = Kept(keys=keys, segments=segments)
    whole = Kept(whole=True, keys=keys, segments=segments)
    for events, sessions in written:
        shortcut.write(events, sessions)
        whole.write(events, sessions)
        assert shortcut.counts == whole.counts
        assert shortcut.slots == whole.slots


def test_a_long_visits_write_walks_the_pages_it_touches_only() -> None:
    """A visit of 200 pages gets one more page and a longer duration: the change walks the
    new page's chain and adds the new duration to the other pages' rows, the same counts as
    walking every chain, one row per page."""
    kept = Kept()
    pages = [event(n, 0, n % 60, "v0", "s0", path=f"/p{n}") for n in range(200)]
    kept.write(pages, [visit_row("s0", exit="/p199", pageviews=200)])
    stored = list(kept.slots.values())
    late = [event(500, 0, 59, "v0", "s0", path="/new")]
    row = replace(visit_row("s0", exit="/new", pageviews=201), last_seen=H0 + 2 * HOUR)
    visitors = rollups.touched(late, [row]).visitors
    quick = rollups.change(stored, kept.facts, late, [row], visitors)
    whole = rollups.change(stored, kept.facts, late, [row], visitors, whole=True)
    assert quick.counts == whole.counts
    page_rows = [key for key in quick.counts if key[1] == "page"]
    assert len(page_rows) == 201
    grew = row.duration_ms - kept.facts[("site", "s0")].duration_ms
    assert grew > 0
    assert quick.counts[("site", "page", "/p7", H0, rollups.NONE)][4] == grew


def test_a_long_seen_visitors_write_walks_its_recent_periods_only() -> None:
    """Thirty days of one visitor, then one event: the change holds the rows of the new
    period (and nothing of the thirty days before), the same as the whole walk's."""
    kept = Kept()
    for day in range(30):
        kept.write([event(day, 24 * day, 5, "v0", f"s{day}", path=f"/p{day % 3}")], [])
    stored = list(kept.slots.values())
    late = [event(99, 24 * 30, 10, "v0", "s99", path="/p1")]
    visitors = rollups.touched(late, []).visitors
    quick = rollups.change(stored, {}, late, [], visitors)
    whole = rollups.change(stored, {}, late, [], visitors, whole=True)
    assert quick.counts == whole.counts
    assert {key[3] for key in quick.counts} == {H0 + 24 * 30 * HOUR}
    assert rollups.changed_from(stored, late, []) == {("site", "v0"): H0 + 24 * 30 * HOUR}


@settings(max_examples=80, deadline=None)
@given(written=batches(), lo=st.integers(-3, 2), buckets=st.integers(1, 6))
async def test_hourly_buckets_chain_from_their_own_start(
    written: list[tuple[list[ProcessedEvent], list[Session]]], lo: int, buckets: int
) -> None:
    kept, reference = await kept_and_reference(written)
    start, end = H0 + lo * HOUR, H0 + (lo + buckets) * HOUR
    query = StatsQuery("site", Range(start, end), metrics=METRICS, interval="hour")
    hourly = {h: h - (h - start) % HOUR for h in range(start, end, HALF)}
    sums = kept.sums("", start, end, hourly)
    for point in await reference.timeseries(query):
        assert metrics(sums.get(f"{point.bucket}|")) == point.results, point.bucket


async def test_a_visit_whose_exit_page_changes_moves_between_values() -> None:
    first = visit_row("s0", exit="/a", pageviews=1)
    later = visit_row("s0", exit="/b", pageviews=2)
    kept, _ = await kept_and_reference(
        [
            ([event(1, 0, 1, "v0", "s0", path="/")], [first]),
            ([event(2, 1, 5, "v0", "s0", path="/b")], [later]),
        ]
    )
    whole = {h: H0 for h in range(H0, H0 + 2 * HOUR, HALF)}
    sums = kept.sums("exit_page", H0, H0 + 2 * HOUR, whole)
    assert {k: (v.visitors, v.visits, v.pageviews) for k, v in sums.items()} == {
        f"{H0}|/b": (1, 1, 2)
    }
    # the totals: one visitor, one visit across two hours, not a bounce any more
    total = kept.sums("", H0, H0 + 2 * HOUR, whole)[f"{H0}|"]
    assert (total.visitors, total.visits, total.measured, total.bounces) == (1, 1, 1, 0)


async def test_a_visit_row_alone_moves_its_visitors_to_the_new_exit_page() -> None:
    kept, _ = await kept_and_reference(
        [
            ([event(1, 0, 1, "v0", "s0", path="/")], [visit_row("s0", exit="/a", pageviews=1)]),
            ([], [visit_row("s0", exit="/b", pageviews=1)]),  # a late copy, no new events
        ]
    )
    sums = kept.sums("exit_page", H0, H0 + HOUR, {H0: H0, H0 + HALF: H0})
    assert {k: (v.visitors, v.visits) for k, v in sums.items()} == {f"{H0}|/b": (1, 1)}


def visit_row(visit: str, *, exit: str, pageviews: int) -> Session:
    return Session(visit, "site", "v0", H0, H0 + HOUR + 5 * 60_000, "/", exit, pageviews, pageviews)


@pytest.mark.parametrize("ts", [-1, 0, HALF - 1, HALF, -HALF - 1, HOUR + 1])
def test_periods_floor_also_before_1970(ts: int) -> None:
    assert rollups.slot_of(ts) <= ts < rollups.slot_of(ts) + HALF
    assert rollups.slot_of(ts) % HALF == 0
    assert rollups.slot_after(ts) - HALF < ts <= rollups.slot_after(ts)
    assert rollups.slot_after(ts) % HALF == 0


@settings(max_examples=100, deadline=None)
@given(written=batches())
def test_slots_round_trip_through_their_documents(
    written: list[tuple[list[ProcessedEvent], list[Session]]],
) -> None:
    kept = Kept()
    for events, sessions in written:
        kept.write(events, sessions)
    for key, slot in kept.slots.items():
        document = json.loads(json.dumps(rollups.slot_document(slot)))
        back = rollups.slot_from_document(key, document)
        assert (back.events, back.pageviews) == (slot.events, +slot.pageviews)


def test_a_slot_document_names_a_value_once_when_every_event_had_it() -> None:
    slot = rollups.Slot("site", "v0", "s0", H0)
    slot.add_event(event(1, 0, 1, "v0", "s0", path="/a", country="DE"))
    slot.add_event(event(2, 0, 2, "v0", "s0", path="/b", country="DE", type="custom"))
    document = rollups.slot_document(slot)
    assert document[""] == [1, 2]
    assert document["country"] == "DE"
    assert document["page"] == {"/a": [1, 1], "/b": [0, 1]}
    # the first format still reads
    first = {f"{p}:{v}": [slot.pageviews[(p, v)], n] for (p, v), n in slot.events.items()}
    for members in (document, first):
        back = rollups.slot_from_document(slot.key, members)
        assert back.events == slot.events and back.pageviews == slot.pageviews


DAY_MS = 86_400_000


def test_make_room_drops_idle_segments_least_recently_asked_first() -> None:
    now = 10 * DAY_MS
    idle, busy = now - rollups.SEGMENT_IDLE_MS, now - rollups.SEGMENT_IDLE_MS + 1
    a, b, c = ("country", "DE"), ("page", "/"), ("source", "x")
    # room in count and budget: nothing dropped
    assert rollups.make_room({a: idle}, {a: 0.5}, 0.5, now) == []
    # over the budget: idle ones go, the least recently asked first, until it fits
    asked, shares = {a: busy, b: idle, c: idle - 1}, {a: 1.0, b: 0.5, c: 0.5}
    assert rollups.make_room(asked, shares, 0.4, now) == [c]
    assert rollups.make_room(asked, shares, 0.6, now) == [c, b]
    assert rollups.make_room(asked, shares, 1.1, now) is None  # a busy one never goes
    assert rollups.make_room({a: busy, b: idle}, {a: 1.5, b: 0.2}, 0.6, now) is None
    assert rollups.make_room({a: idle, b: idle}, {a: 1.5, b: 0.2}, 0.6, now) == [a]
    # exactly the budget fits
    assert rollups.make_room({a: busy}, {a: 1.0}, 1.0, now) == []
    # full in count: one idle one goes whatever the shares
    full = {("country", str(n)): busy for n in range(rollups.SEGMENTS_PER_SITE)}
    assert rollups.make_room(full, {}, 0.0, now) is None
    full[("country", "0")] = idle
    assert rollups.make_room(full, {}, 0.0, now) == [("country", "0")]


def test_segment_members_are_the_events_other_members_under_the_segment() -> None:
    e = event(1, 0, 5, "v", "s", path="/pricing")
    segments = {"page": frozenset({"/pricing"}), "country": frozenset({"XX"})}
    members = rollups.event_members(e, (), segments)
    plain = rollups.event_members(e)
    extra = members[len(plain) :]
    assert members[: len(plain)] == plain
    assert extra == [
        (rollups.segment_dim("page", "/pricing", prop), value)
        for prop, value in plain
        if prop not in ("", "page")
    ]
    assert {json.loads(dim[len(rollups.SEGMENT_PREFIX) :])[2] for dim, _ in extra} == {
        prop for prop, _ in plain if prop not in ("", "page")
    }
    assert rollups.event_members(e, (), {"page": frozenset({"/"})}) == plain
