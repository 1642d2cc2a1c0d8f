"""Sessions: 30 minutes of inactivity ends a visit; entry/exit, bounces, midnight."""

from __future__ import annotations

from hitstream.domain.events import AcceptedEvent, ProcessedEvent
from hitstream.domain.pipeline import start
from hitstream.domain.sessions import (
    HELD_PER_VISITOR,
    SESSION_TIMEOUT_MS,
    Sessionizer,
    session_id_for,
)

T0 = 1_790_000_000_000
MIN = 60_000


def event(
    ts: int, path: str = "/", visitor: str = "v1", kind: str = "pageview", **kw: object
) -> ProcessedEvent:
    accepted = AcceptedEvent(
        event_id=f"e{ts}{path}",
        site_id="s",
        type=kind,
        timestamp=ts,
        received_at=ts,
        visitor_id=visitor,
        visitor_id_prev=visitor,
        path=path,
        **kw,  # type: ignore[arg-type]
    )
    return start(accepted).out


def test_events_within_timeout_share_a_visit() -> None:
    s = Sessionizer()
    a = s.assign(event(T0, "/"))
    b = s.assign(event(T0 + 29 * MIN, "/pricing"))
    assert a is b
    assert (a.entry_page, a.exit_page, a.pageviews, a.events) == ("/", "/pricing", 2, 2)
    assert a.duration_ms == 29 * MIN
    assert not a.is_bounce


def test_a_visit_started_on_no_page_enters_on_the_first_page_seen() -> None:
    """A server-side event (no page) may start a visit; its entry page is the page of its
    first event that has one, not "" (nor "/", where page-less events were put before)."""
    s = Sessionizer()
    visit = s.assign(event(T0, "", kind="custom", name="login"))
    assert visit.entry_page == ""  # nothing viewed yet
    s.assign(event(T0 + MIN, "/pricing"))
    s.assign(event(T0 + 2 * MIN, "/buy"))
    s.assign(event(T0 + 3 * MIN, "", kind="custom", name="paid"))
    assert (visit.entry_page, visit.exit_page, visit.pageviews, visit.events) == (
        "/pricing",
        "/buy",
        2,
        4,
    )
    clicked = s.assign(event(T0 + 4 * 60 * MIN, "/a", kind="click"))
    s.assign(event(T0 + 4 * 60 * MIN + MIN, "/b"))
    assert clicked.entry_page == "/a"  # a click is on a page: the visit entered there
    earlier = s.assign(event(T0 + 8 * 60 * MIN, "", kind="custom", name="x"))
    s.assign(event(T0 + 8 * 60 * MIN - MIN, "/first"))  # arrives late, was first
    assert earlier.entry_page == "/first"


def test_a_gap_longer_than_the_timeout_starts_a_new_visit() -> None:
    s = Sessionizer()
    a = s.assign(event(T0))
    b = s.assign(event(T0 + SESSION_TIMEOUT_MS + 1, "/again"))
    assert a.session_id != b.session_id
    assert a.is_bounce and b.is_bounce
    assert len(s.drain_touched()) == 2
    assert s.drain_touched() == []


def test_visitors_and_session_ids_are_separate_and_set_on_events() -> None:
    s = Sessionizer()
    e1, e2 = event(T0, visitor="v1"), event(T0, visitor="v2")
    assert s.assign(e1).session_id != s.assign(e2).session_id
    assert e1.session_id and e2.session_id and e1.session_id != e2.session_id


def test_visit_ids_start_with_their_start_and_sort_by_it() -> None:
    """A visit's id is its start in milliseconds (12 hex digits), then a hash: the same
    visit gets the same id on a replay, and ids sort by start whatever the visitor."""
    s = Sessionizer()
    starts = [T0 + n * 7_919 for n in range(50)]
    visits = [s.assign(event(ts, visitor=f"v{n % 7}-{n}")) for n, ts in enumerate(starts)]
    ids = [v.session_id for v in visits]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [int(i[:12], 16) for i in ids] == starts
    assert ids[3] == session_id_for("s", "v3-3", starts[3])  # a replay names it alike
    same_start = {session_id_for("s", f"v{n}", T0) for n in range(100)}
    assert len(same_start) == 100  # visitors starting in the same millisecond differ


def test_duration_ping_does_not_unbounce_but_extends_the_visit() -> None:
    s = Sessionizer()
    visit = s.assign(event(T0))
    s.assign(event(T0 + MIN, kind="session", duration_ms=5 * MIN))
    assert visit.is_bounce
    assert visit.duration_ms == 5 * MIN
    s.assign(event(T0 + 2 * MIN, kind="custom", name="signup"))
    assert not visit.is_bounce


def test_visit_over_midnight_continues_under_yesterdays_hash() -> None:
    s = Sessionizer()
    visit = s.assign(event(T0, visitor="yesterday"))
    late = event(T0 + 5 * MIN, "/next", visitor="today")
    assert s.assign(late, visitor_id_prev="yesterday") is visit
    assert late.visitor_id == "yesterday"
    assert visit.pageviews == 2


def test_resume_from_stored_sessions() -> None:
    first = Sessionizer()
    visit = first.assign(event(T0))
    second = Sessionizer()
    second.load([visit])
    assert second.assign(event(T0 + MIN, "/b")).session_id == visit.session_id


def test_evict_forgets_idle_visits() -> None:
    s = Sessionizer()
    s.assign(event(T0, visitor="a"))
    s.assign(event(T0 + 50 * MIN, visitor="b"))
    assert s.evict(T0 + 10 * MIN) == 1
    assert len(s) == 1


def test_later_events_carry_the_visits_acquisition() -> None:
    s = Sessionizer()
    first = event(T0, "/")
    first.source, first.channel, first.utm_campaign = "Google", "Organic Search", "spring"
    s.assign(first)
    second = event(T0 + MIN, "/pricing")  # its own referrer was the site itself: direct
    s.assign(second)
    assert (second.source, second.channel, second.utm_campaign) == (
        "Google",
        "Organic Search",
        "spring",
    )


def test_an_engagement_event_joins_the_open_visit_without_changing_it() -> None:
    s = Sessionizer()
    visit = s.assign(event(T0, "/"))
    s.drain_touched()
    before = (visit.last_seen, visit.pageviews, visit.events, visit.exit_page)
    measured = event(T0 + 20 * MIN, "/", kind="engagement", engaged_ms=60_000)
    assert s.attach(measured) is visit
    assert measured.session_id == visit.session_id
    assert (visit.last_seen, visit.pageviews, visit.events, visit.exit_page) == before
    assert visit.is_bounce  # a measurement is no interaction
    assert s.drain_touched() == []  # nothing of the visit to write again


def test_an_engagement_event_never_starts_a_visit() -> None:
    s = Sessionizer()
    s.assign(event(T0, "/"))
    late = event(T0 + SESSION_TIMEOUT_MS + MIN, "/", kind="engagement", engaged_ms=1)
    assert s.attach(late) is None
    assert late.session_id == ""
    assert len(s) == 1
    assert s.attach(event(T0, "/", visitor="v2", kind="engagement", engaged_ms=1)) is None
    assert len(s) == 1


def test_a_late_event_does_not_take_the_place_of_the_visitors_current_visit() -> None:
    """An event sent three hours late opens (or continues) a visit of its own beside the
    visitor's current one: it replaced it, so the next event of the current visit started
    a third visit (one visit counted as two)."""
    s = Sessionizer()
    now = T0 + 10 * 60 * MIN
    current = s.assign(event(now, "/now"))
    late = s.assign(event(now - 3 * 60 * MIN, "/then"))
    also_late = s.assign(event(now - 3 * 60 * MIN + MIN, "/then/more"))
    after = s.assign(event(now + MIN, "/next"))
    assert late is also_late and late is not current
    assert after is current
    assert (current.pageviews, late.pageviews) == (2, 2)
    assert len(s) == 2
    assert s.evict(now - 60 * MIN) == 1  # the late visit goes first
    assert s.assign(event(now + 2 * MIN, "/last")) is current
    assert len(s) == 1


def test_visits_held_per_visitor_are_bounded() -> None:
    s = Sessionizer()
    for hour in range(10):  # late events of ten visits of one visitor, hours apart
        s.assign(event(T0 + hour * 60 * MIN))
    assert len(s) == HELD_PER_VISITOR
    newest = s.assign(event(T0 + 9 * 60 * MIN + MIN))
    assert newest.pageviews == 2  # the newest is among those held
