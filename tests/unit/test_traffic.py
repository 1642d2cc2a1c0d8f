"""The synthetic traffic model: deterministic, valid on the wire, and shaped like a real site."""

from __future__ import annotations

import random
import statistics
from collections import Counter, defaultdict
from itertools import pairwise
from urllib.parse import parse_qs, urlsplit

import crawleruseragents
import iptocc
import pytest

from hitstream.domain.events import AcceptedEvent
from hitstream.domain.validation import validate_event
from hitstream.synthetic.traffic import (
    BOT_USER_AGENTS,
    DAY_MS,
    HOUR_MS,
    USER_AGENTS,
    TrafficModel,
    WireEvent,
    build_pages,
    weekday,
)

NOW = 1_735_700_000_000  # 2025-01-01T02:53:20Z


def model(seed: int = 1, **options: object) -> TrafficModel:
    return TrafficModel("demo.example", random.Random(seed), **options)  # type: ignore[arg-type]


def visits(m: TrafficModel, n: int, now_ms: int = NOW) -> list[list[WireEvent]]:
    return [m.recent_visit(now_ms) for _ in range(n)]


def test_same_seed_same_events_and_other_seed_other_events() -> None:
    first = model(7).next_events(NOW, 2000)
    again = model(7).next_events(NOW, 2000)
    other = model(8).next_events(NOW, 2000)
    assert first == again
    assert [e.body for e in first] != [e.body for e in other]


def test_next_events_returns_exactly_count_and_continues_visits() -> None:
    m = model(3)
    chunks = [m.next_events(NOW, 7) for _ in range(50)]
    assert all(len(chunk) == 7 for chunk in chunks)
    reference = [event for visit in visits(model(3), 200) for event in visit]
    flat = [event for chunk in chunks for event in chunk]
    assert flat == reference[: len(flat)]


def test_every_event_passes_validation() -> None:
    m = model(11, bot_share=0.1, client_event_ids=True)
    events = m.next_events(NOW, 5000)
    for event in events:
        accepted = validate_event(event.body, now_ms=NOW)
        assert isinstance(accepted, AcceptedEvent), (accepted, event.body)
        assert accepted.timestamp == event.timestamp
    assert len({e.body["event_id"] for e in events}) == len(events)


def test_engagement_events_close_their_pages_and_leave_the_rest_as_it_was() -> None:
    """The demo's model sends the tracker's engagement event as a page is left: after the
    pageview (and its clicks), on its url, before the next page, visible at most that long;
    every other event is the same as the model's without them."""
    with_them = visits(model(12, engagement=True), 1500)
    without = visits(model(12), 1500)
    engaged = 0
    for visit, plain in zip(with_them, without, strict=True):
        assert [e for e in visit if e.body["type"] != "engagement"] == plain
        times = [e.timestamp for e in visit]
        assert times == sorted(times)
        views = [i for i, e in enumerate(visit) if e.body["type"] == "pageview"]
        for i, e in enumerate(visit):
            if e.body["type"] != "engagement":
                continue
            engaged += 1
            accepted = validate_event(e.body, now_ms=NOW)
            assert isinstance(accepted, AcceptedEvent), (accepted, e.body)
            view = visit[max(v for v in views if v < i)]
            assert e.body["url"] == str(view.body["url"]).split("?")[0]
            later = [visit[v].timestamp for v in views if v > i]
            assert e.timestamp < min(later, default=NOW + 1)
            assert 0 <= int(e.body["engaged_ms"]) <= e.timestamp - view.timestamp + 1  # type: ignore[call-overload]
            assert 0 <= int(e.body["scroll_depth"]) <= 100  # type: ignore[call-overload]
    pageviews = sum(1 for visit in with_them for e in visit if e.body["type"] == "pageview")
    assert 0.8 * pageviews <= engaged <= pageviews  # one per page left, now and then none
    # a history's volume is of the other events: the same history, engagement added
    history = list(model(13, engagement=True).history(2, 3000, NOW))
    assert [e for e in history if e.body["type"] != "engagement"] == list(
        model(13).history(2, 3000, NOW)
    )


def test_page_popularity_follows_a_zipf_law() -> None:
    events = model(5).next_events(NOW, 13_000)
    paths = Counter(
        urlsplit(str(e.body["url"])).path for e in events if e.body["type"] == "pageview"
    )
    assert sum(paths.values()) >= 10_000
    ranked = [count for _, count in paths.most_common()]
    assert paths.most_common(1)[0][0] == "/"
    assert ranked[0] > 5 * ranked[9]
    assert ranked[1] > 1.5 * ranked[4]


def test_visits_have_sane_think_times_and_order() -> None:
    gaps: list[int] = []
    pageviews_per_visit: list[int] = []
    for visit in visits(model(2), 3000):
        times = [e.timestamp for e in visit]
        assert times == sorted(times)
        assert len({(e.ip, e.user_agent) for e in visit}) == 1
        views = [e.timestamp for e in visit if e.body["type"] == "pageview"]
        pageviews_per_visit.append(len(views))
        gaps.extend(b - a for a, b in pairwise(views))
        if visit[-1].body["type"] == "session":
            assert visit[-1].body["duration_ms"] == visit[-1].timestamp - visit[0].timestamp
    assert min(gaps) >= 2_000
    assert max(gaps) <= 600_000
    assert 10_000 <= statistics.median(gaps) <= 60_000
    bounces = sum(1 for n in pageviews_per_visit if n == 1) / len(pageviews_per_visit)
    assert 0.3 <= bounces <= 0.55
    assert 2.0 <= statistics.mean(pageviews_per_visit) <= 4.5


def test_recent_visits_end_by_now_and_close_to_it() -> None:
    for visit in visits(model(4), 500):
        assert visit[-1].timestamp <= NOW
        assert visit[-1].timestamp >= NOW - 300_000
        assert visit[0].timestamp >= NOW - 3 * HOUR_MS


def test_event_kinds_sources_and_campaigns_are_all_present() -> None:
    all_visits = visits(model(9), 4000)
    events = [e for visit in all_visits for e in visit]
    kinds = Counter((e.body["type"], e.body.get("name", "")) for e in events)
    names = [("custom", "signup"), ("custom", "purchase"), ("custom", "download")]
    for kind in [*names, ("click", "outbound"), ("session", "")]:
        assert kinds[kind] > 0, kind
    for event in events:
        if event.body["type"] == "click":
            assert str(event.body["props"]["url"]).startswith("https://")  # type: ignore[index]
        if event.body.get("name") == "purchase":
            assert event.body["props"]["amount"] in (29.0, 99.0)  # type: ignore[index]
    landings = [visit[0].body for visit in all_visits]
    referrers = Counter(urlsplit(str(b.get("referrer", ""))).hostname or "" for b in landings)
    expected_hosts = "www.google.com www.bing.com duckduckgo.com t.co news.ycombinator.com"
    expected_hosts += " chatgpt.com www.perplexity.ai www.reddit.com l.facebook.com"
    for host in ["", *expected_hosts.split()]:
        assert referrers[host] > 0, host
    assert referrers[""] / len(landings) > 0.25
    queries = [parse_qs(urlsplit(str(b["url"])).query) for b in landings]
    tagged = [q for q in queries if "utm_source" in q]
    assert 0.03 < len(tagged) / len(landings) < 0.25
    assert any(q["utm_medium"] == ["cpc"] and "gclid" in q for q in tagged)
    assert any(q["utm_medium"] == ["email"] for q in tagged)
    later = [e.body for visit in all_visits for e in visit[1:] if e.body["type"] == "pageview"]
    assert all(str(b["referrer"]).startswith("https://demo.example/") for b in later)
    assert not any("utm_source" in str(b["url"]) for b in later)


def test_visitor_ips_come_from_the_country_they_claim() -> None:
    m = model(6)
    people = [m.new_visitor() for _ in range(3000)]
    looked_up = iptocc.country_code([p.ip for p in people])
    agree = sum(1 for p, cc in zip(people, looked_up, strict=True) if cc == p.country)
    assert agree / len(people) > 0.99
    countries = Counter(p.country for p in people)
    assert len(countries) >= 20
    assert countries.most_common(1)[0][0] == "US"
    assert countries["US"] / len(people) < 0.5


def test_user_agents_are_real_browsers_and_screens_fit_devices() -> None:
    assert not any(crawleruseragents.is_crawler(ua) for ua, _, _ in USER_AGENTS)
    assert all(crawleruseragents.is_crawler(ua) for ua in BOT_USER_AGENTS)
    m = model(8)
    people = [m.new_visitor() for _ in range(3000)]
    devices = Counter(p.device for p in people)
    assert 0.45 < devices["desktop"] / len(people) < 0.7
    assert 0.25 < devices["mobile"] / len(people) < 0.5
    assert devices["tablet"] > 0
    for person in people:
        assert person.screen_width is not None
        width = person.screen_width
        if person.device == "desktop":
            assert width >= 1280
        elif person.device == "mobile":
            assert 320 <= width < 500
            assert "Mobile" in person.user_agent
        else:
            assert 760 <= width <= 1300
            assert "iPad" in person.user_agent or "Mobile" not in person.user_agent


def test_load_times_are_log_normal_and_slower_on_phones() -> None:
    by_device: dict[bool, list[int]] = defaultdict(list)
    m = model(12)
    for visit in visits(m, 4000):
        for event in visit:
            if event.body["type"] == "pageview":
                desktop = int(str(event.body["screen_width"])) >= 1280
                by_device[desktop].append(int(str(event.body["load_time_ms"])))
    desktop_median = statistics.median(by_device[True])
    phone_median = statistics.median(by_device[False])
    assert 600 <= desktop_median <= 1000
    assert phone_median > 1.5 * desktop_median
    assert statistics.mean(by_device[True]) > desktop_median  # right-skewed


def test_bots_come_only_when_asked() -> None:
    plain = model(1).next_events(NOW, 3000)
    assert not any(e.user_agent in BOT_USER_AGENTS for e in plain)
    botty = model(1, bot_share=0.2).next_events(NOW, 3000)
    bot_events = [e for e in botty if e.user_agent in BOT_USER_AGENTS]
    assert len(bot_events) > 100
    assert all("screen_width" not in e.body for e in bot_events)


def test_returning_visitors_come_back_after_a_break() -> None:
    m = model(13, visitors=300, returning_share=0.4)
    seen: dict[tuple[str, str], list[list[WireEvent]]] = defaultdict(list)
    for hour in range(12):
        for _ in range(100):
            visit = m.visit(NOW - DAY_MS + hour * HOUR_MS + len(seen))
            seen[(visit[0].ip, visit[0].user_agent)].append(visit)
    returning = [vs for vs in seen.values() if len(vs) > 1]
    assert len(returning) > 50
    for person_visits in returning:
        for before, after in pairwise(person_visits):
            assert after[0].timestamp - before[-1].timestamp >= 30 * 60_000


def test_history_lies_in_the_window_with_daily_and_weekly_rhythm() -> None:
    days = 14
    events = list(model(21).history(days, 1500, NOW))
    start = NOW - days * DAY_MS
    assert all(start <= e.timestamp < NOW for e in events)
    assert abs(len(events) - days * 1500) < 0.05 * days * 1500
    by_hour = Counter(e.timestamp // HOUR_MS % 24 for e in events)
    peak = sum(by_hour[h] for h in (12, 13, 14, 15))
    trough = sum(by_hour[h] for h in (1, 2, 3, 4))
    assert peak > 3 * trough
    by_weekday = Counter(weekday(e.timestamp) for e in events)
    weekend = (by_weekday[5] + by_weekday[6]) / 2
    midweek = (by_weekday[1] + by_weekday[2]) / 2
    assert weekend < 0.85 * midweek
    stamps = [e.timestamp for e in events]
    backwards = sum(1 for a, b in pairwise(stamps) if a > b)
    assert 0 < backwards < len(stamps) / 50  # nearly ordered: sorted within each hour


def test_history_of_a_partial_day_and_bad_arguments() -> None:
    events = list(model(22).history(0.25, 4000, NOW))
    assert all(NOW - 6 * HOUR_MS <= e.timestamp < NOW for e in events)
    assert 200 < len(events) < 1000  # six night hours (21h-3h UTC) of a 4000/day site
    with pytest.raises(ValueError, match="positive number of days"):
        next(model(22).history(0, 100, NOW))


def test_weekday_knows_the_calendar() -> None:
    assert weekday(0) == 3  # 1970-01-01, a Thursday
    assert weekday(1_735_689_600_000) == 2  # 2025-01-01, a Wednesday


def test_pages_are_unique_and_fill_any_size() -> None:
    for count in (1, 15, 40, 500):
        pages = build_pages(count, random.Random(0))
        assert len(pages) == count
        assert len({p.path for p in pages}) == count
        assert pages[0].path == "/"
    with pytest.raises(ValueError, match="at least one page"):
        build_pages(0, random.Random(0))


def test_the_live_rate_goes_on_at_the_historys() -> None:
    """``rate`` (the demo's live traffic) is the history's own: over a week, its events an
    hour add up to what the history sent in each hour (the live visits ran at 170 times the
    history's, so "Today" read as a surge)."""
    traffic = model(5)
    week = list(traffic.history(7, 2000, NOW))
    counted = Counter(e.timestamp // HOUR_MS for e in week if e.body["type"] != "engagement")
    start = (NOW - 7 * DAY_MS) // HOUR_MS + 1
    hours = range(start, NOW // HOUR_MS)  # whole hours only
    expected = sum(traffic.rate(2000, h * HOUR_MS) * 3600 for h in hours)
    sent = sum(counted[h] for h in hours)
    assert abs(sent - expected) < 0.05 * expected
    busy = max(hours, key=lambda h: traffic.rate(2000, h * HOUR_MS))
    quiet = min(hours, key=lambda h: traffic.rate(2000, h * HOUR_MS))
    assert traffic.rate(2000, busy * HOUR_MS) > 3 * traffic.rate(2000, quiet * HOUR_MS)
    assert traffic.rate(4000, busy * HOUR_MS) == 2 * traffic.rate(2000, busy * HOUR_MS)
