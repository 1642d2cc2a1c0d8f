"""Goals and funnels on every store: the registry keeps them; goal filters, goal metrics,
goal breakdowns and funnels give what this file computes itself from the generated events.

The expectations share no code with hitstream's: path patterns are matched by a recursive
matcher written here (no regular expression), funnel depth by trying every ordered choice of
events (not the greedy walk ``domain.funnels.reached`` takes), goal completion and filters
by the ``Reference`` of the store contract suite.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hitstream.domain.events import ProcessedEvent
from hitstream.domain.funnels import Funnel
from hitstream.domain.goals import Goal
from hitstream.domain.sites import Site
from hitstream.domain.stats import Filter, Range, StatsQuery
from hitstream.errors import Conflict, QueryError
from hitstream.services import conversions
from hitstream.stores.base import Store, WriteBatch
from hitstream.stores.memory import MemoryStore
from tests.contract.test_store_contract import (
    DAY,
    HOUR,
    MINUTE,
    Batches,
    Reference,
    datasets,
    event,
    filters,
    utc,
)

T = utc(2026, 4, 2, 9)
SITE = "shop"
WIDE = Range(T - DAY, T + 3 * DAY)

# -- the independent reference ---------------------------------------------------------------


def glob(pattern: str, path: str) -> bool:
    """``*``: any characters but ``/``; ``**``: any characters; the rest literal."""
    if not pattern:
        return not path
    if pattern.startswith("**"):
        return any(glob(pattern[2:], path[i:]) for i in range(len(path) + 1))
    if pattern[0] == "*":
        rest = pattern[1:]
        for i in range(len(path) + 1):
            if glob(rest, path[i:]):
                return True
            if i < len(path) and path[i] == "/":
                return False
        return False
    return bool(path) and path[0] == pattern[0] and glob(pattern[1:], path[1:])


def done(goal: Goal, e: ProcessedEvent) -> bool:
    if goal.page:
        return e.type == "pageview" and glob(goal.page, e.path)
    return (
        e.type != "pageview"
        and e.name == goal.event_name
        and all(Reference._text(e.props.get(k, "")) == v for k, v in goal.props)
    )


class GoalReference(Reference):
    def __init__(self, batches: Batches, goals: tuple[Goal, ...]) -> None:
        super().__init__(batches)
        self.goals = {g.name: g for g in goals}

    def passes(self, f: Filter, e: ProcessedEvent) -> bool:
        if f.property != "goal":
            return super().passes(f, e)
        hit = any(done(self.goals[n], e) for n in f.values)
        return hit if f.op == "==" else not hit

    def conversions(self, query: StatsQuery) -> tuple[float, float]:
        """(conversions, conversion_rate) of the aggregate."""
        names = [
            n for f in query.filters if f.property == "goal" and f.op == "==" for n in f.values
        ]
        plain = replace(query, filters=tuple(f for f in query.filters if f.property != "goal"))
        everyone = {e.visitor_id for e in self.matching(plain)}
        if any(f.property == "goal" and f.op == "==" for f in query.filters):
            converted = {e.visitor_id for e in self.matching(query)}
        else:
            converted = {
                e.visitor_id
                for e in self.matching(query)
                if any(done(g, e) for g in self.goals.values())
            }
        del names
        rate = 100 * len(converted) / len(everyone) if everyone else 0.0
        return float(len(converted)), rate

    def funnel(self, query: StatsQuery, steps: tuple[Filter, ...], window: int | None) -> list[int]:
        visits: dict[str, list[ProcessedEvent]] = {}
        for e in self.matching(query):
            if e.session_id:
                visits.setdefault(e.session_id, []).append(e)
        reached: list[set[str]] = [set() for _ in steps]
        for events in visits.values():
            events.sort(key=lambda e: (e.timestamp, e.event_id))
            hits = [[self.passes(s, e) for s in steps] for e in events]
            depth = 0
            for k in range(1, len(steps) + 1):  # is there any ordered choice of k events?
                if any(
                    all(hits[i][j] for j, i in enumerate(chosen))
                    and (
                        window is None
                        or events[chosen[-1]].timestamp - events[chosen[0]].timestamp <= window
                    )
                    for chosen in itertools.combinations(range(len(events)), k)
                ):
                    depth = k
                else:
                    break
            who = {e.visitor_id for e, h in zip(events, hits, strict=True) if any(h)}
            for k in range(depth):
                reached[k] |= who
        return [len(found) for found in reached]


# -- the registry ----------------------------------------------------------------------------


async def test_goals_and_funnels_round_trip_per_site(store: Store) -> None:
    await store.add_site(Site("a.io"))
    await store.add_site(Site("b.io"))
    signup = Goal("Signup", event_name="signup", props=(("plan", "pro"),))
    pricing = Goal("Pricing", page="/pricing*")
    await store.add_goal("a.io", signup)
    await store.add_goal("a.io", pricing)
    await store.add_goal("b.io", Goal("Signup", page="/welcome"))  # names are per site
    assert await store.goals("a.io") == [pricing, signup]
    with pytest.raises(Conflict) as caught:
        await store.add_goal("a.io", Goal("Signup", page="/other"))
    assert caught.value.field == "name"
    assert await store.goals("b.io") == [Goal("Signup", page="/welcome")]
    flow = Funnel("Flow", ("page==/", "goal==Signup"), 30)
    await store.add_funnel("a.io", flow)
    await store.add_funnel("a.io", Funnel("Open", ("page==/", "page==/pricing")))
    with pytest.raises(Conflict):
        await store.add_funnel("a.io", Funnel("Flow", ("page==/a", "page==/b")))
    assert await store.funnels("a.io") == [flow, Funnel("Open", ("page==/", "page==/pricing"))]
    assert await store.remove_goal("a.io", "Signup")
    assert not await store.remove_goal("a.io", "Signup")
    assert await store.goals("a.io") == [pricing]
    assert await store.remove_funnel("a.io", "Open")
    assert not await store.remove_funnel("a.io", "Open")
    assert await store.remove_site("a.io")
    assert await store.goals("a.io") == [] and await store.funnels("a.io") == []
    assert await store.goals("b.io") == [Goal("Signup", page="/welcome")]


# -- goal filters and funnels on a small visit, by hand ------------------------------------

GOALS = (
    Goal("Pricing", page="/pricing*"),
    Goal("Docs", page="/docs/**"),
    Goal("Signup", event_name="signup", props=(("plan", "pro"),)),
)
EVENTS = [
    event("a1", T, "va", "sa", "/", site=SITE),
    event("a2", T + MINUTE, "va", "sa", "/pricing", site=SITE),
    event(
        "a3",
        T + 2 * MINUTE,
        "va",
        "sa",
        "/pricing",
        type="custom",
        name="signup",
        site=SITE,
        props={"plan": "pro"},
    ),
    event("b1", T, "vb", "sb", "/", site=SITE),
    event("b2", T + 40 * MINUTE, "vb", "sb", "/pricing-plans", site=SITE),
    event(
        "b3",
        T + 41 * MINUTE,
        "vb",
        "sb",
        "/x",
        type="custom",
        name="signup",
        site=SITE,
        props={"plan": "free"},
    ),
    event("c1", T, "vc", "sc", "/pricing/faq", site=SITE),  # not /pricing*: a second segment
    event("c2", T + MINUTE, "vc", "sc", "/docs/a/b", site=SITE),
    event(
        "d1",
        T,
        "vd",
        "sd",
        "/signup",
        type="custom",
        name="signup",
        site=SITE,
        props={"plan": "pro"},
    ),
    event("d2", T + MINUTE, "vd", "sd", "/", site=SITE),  # out of order for the funnel
]


@pytest.fixture
async def shop(store: Store) -> Store:
    await store.write(WriteBatch("events", {0: len(EVENTS)}, list(EVENTS), []))
    return store


def gq(metrics: tuple[str, ...], filters: tuple[Filter, ...] = (), prop: str = "") -> StatsQuery:
    return StatsQuery(SITE, WIDE, metrics=metrics, filters=filters, property=prop, goals=GOALS)


async def test_goal_filters_count_completions(shop: Store) -> None:
    pricing = gq(("visitors", "events"), (Filter("goal", "==", ("Pricing",)),))
    assert await shop.aggregate(pricing) == {"visitors": 2.0, "events": 2.0}  # a2, b2
    either = gq(("visitors", "events"), (Filter("goal", "==", ("Signup", "Docs")),))
    assert await shop.aggregate(either) == {"visitors": 3.0, "events": 3.0}  # a3, c2, d1
    none = gq(("events",), (Filter("goal", "!=", ("Pricing", "Docs", "Signup")),))
    assert await shop.aggregate(none) == {"events": 5.0}


async def test_conversions_rate_and_goal_breakdown(shop: Store) -> None:
    everything = gq(("visitors", "conversions", "conversion_rate"))
    assert await conversions.aggregate(shop, everything) == {
        "visitors": 4.0,
        "conversions": 4.0,  # va, vb (Pricing), vc (Docs), vd (Signup)
        "conversion_rate": 100.0,
    }
    signup = gq(("conversions", "conversion_rate", "events"), (Filter("goal", "==", ("Signup",)),))
    assert await conversions.aggregate(shop, signup) == {
        "conversions": 2.0,
        "conversion_rate": 50.0,
        "events": 2.0,
    }
    rows = await conversions.breakdown(
        shop, gq(("conversions", "events", "conversion_rate"), prop="goal")
    )
    assert [(r.value, r.results) for r in rows] == [
        ("Pricing", {"conversions": 2.0, "events": 2.0, "conversion_rate": 50.0}),
        ("Signup", {"conversions": 2.0, "events": 2.0, "conversion_rate": 50.0}),
        ("Docs", {"conversions": 1.0, "events": 1.0, "conversion_rate": 25.0}),
    ]
    by_page = gq(("conversions", "conversion_rate"), (Filter("goal", "==", ("Signup",)),), "page")
    got = await conversions.breakdown(shop, by_page)
    # /pricing: va converted of va; /signup: vd of vd
    assert [(r.value, r.results["conversions"], r.results["conversion_rate"]) for r in got] == [
        ("/pricing", 1.0, 100.0),
        ("/signup", 1.0, 100.0),
    ]


async def test_conversions_per_bucket(shop: Store) -> None:
    query = replace(gq(("visitors", "conversions", "conversion_rate")), interval="hour")
    points = await conversions.timeseries(shop, query)
    busy = [p for p in points if p.results["visitors"]]
    # every visit starts at T; b2 comes 40 minutes later, in the same hour
    assert [p.bucket for p in busy] == [T]
    assert busy[0].results == {"visitors": 4.0, "conversions": 4.0, "conversion_rate": 100.0}
    signup = replace(query, filters=(Filter("goal", "==", ("Signup",)),), metrics=("conversions",))
    assert sum(p.results["conversions"] for p in await conversions.timeseries(shop, signup)) == 2


async def test_an_unknown_goal_is_a_query_error(shop: Store) -> None:
    with pytest.raises(QueryError) as caught:
        await shop.aggregate(gq(("visitors",), (Filter("goal", "==", ("Nope",)),)))
    assert caught.value.field == "filters"


async def test_funnel_in_order_within_a_visit_and_window(shop: Store) -> None:
    steps = (
        Filter("page", "==", ("/",)),
        Filter("goal", "==", ("Pricing",)),
        Filter("goal", "==", ("Signup",)),
    )
    query = gq(("visitors",))
    # sa: / -> /pricing -> signup(pro): 3; sb: / -> /pricing-plans -> signup(free): 2;
    # sc: no "/": 0; sd: signup before "/": 1
    assert await shop.funnel(query, steps, None) == [3, 2, 1]
    assert await shop.funnel(query, steps, 30 * MINUTE) == [3, 1, 1]  # b2 is 40 min after b1
    one_page = (Filter("page", "==", ("/",)), Filter("page", "==", ("/",)))
    assert await shop.funnel(query, one_page, None) == [3, 0]  # one event is one step


# -- random data: every store agrees with the reference ---------------------------------------

PATTERNS = ["/", "/a*", "/a/**", "/**", "/*", "/blog/*", "/Ä/*", "/a b", "/*/b", "/a.b", "/(a)"]


@st.composite
def goal_sets(draw: st.DrawFn) -> tuple[Goal, ...]:
    goals = []
    for number in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            goals.append(Goal(f"g{number}", page=draw(st.sampled_from(PATTERNS))))
        else:
            props = draw(st.sampled_from([(), (("plan", "x"),), (("n", "1"),), (("plan", ""),)]))
            name = draw(st.sampled_from(["Signup", "signup", ""]))
            goals.append(Goal(f"g{number}", event_name=name or "Signup", props=props))
    return tuple(goals)


@st.composite
def goal_queries(draw: st.DrawFn, goals: tuple[Goal, ...]) -> tuple[StatsQuery, tuple[Filter, ...]]:
    names = [g.name for g in goals]
    goal_clause = (
        st.builds(
            Filter,
            st.just("goal"),
            st.sampled_from(["==", "!="]),
            st.lists(st.sampled_from(names), min_size=1, max_size=2).map(tuple),
        )
        if names
        else st.nothing()
    )
    clause = filters() | goal_clause
    H = utc(2026, 3, 28, 12)
    start = H + draw(st.integers(-3 * HOUR, 12 * HOUR))
    query = StatsQuery(
        site_id="",
        range=Range(start, start + draw(st.sampled_from([DAY, 2 * DAY]) | st.integers(0, DAY))),
        metrics=("visitors", "events"),
        filters=tuple(draw(st.lists(clause, max_size=2))),
        property=draw(st.sampled_from(["page", "source", "prop:plan", "entry_page", "goal"])),
        limit=draw(st.integers(1, 8)),
        goals=goals,
    )
    steps = tuple(draw(st.lists(clause, min_size=2, max_size=4)))
    return query, steps


def close(left: float, right: float) -> bool:
    return math.isclose(left, right, rel_tol=1e-12, abs_tol=1e-9)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batches=datasets(), data=st.data())
async def test_goals_and_funnels_agree_with_an_independent_reference(
    sql_store: Store, batches: Batches, data: st.DataObject
) -> None:
    site = f"goalsite{next(_numbers)}"
    goals = data.draw(goal_sets())
    memory = MemoryStore()
    mine: Batches = []
    for number, (events, sessions) in enumerate(batches):
        events = [replace(e, site_id=site, event_id=f"{site}-{e.event_id}") for e in events]
        sessions = [replace(v, site_id=site) for v in sessions]
        mine.append((events, sessions))
        batch = WriteBatch(site, {0: number}, events, sessions)
        await memory.write(batch)
        await sql_store.write(batch)
    reference = GoalReference(mine, goals)
    for _ in range(2):
        query, steps = data.draw(goal_queries(goals))
        query = replace(query, site_id=site)
        window = data.draw(st.none() | st.sampled_from([0, MINUTE, 30 * MINUTE, 2 * HOUR]))
        want_funnel = reference.funnel(query, steps, window)
        conv, rate = reference.conversions(query)
        asked = replace(query, metrics=("conversions", "conversion_rate", "events"))
        for store in (sql_store, memory):
            assert await store.funnel(query, steps, window) == want_funnel, (query, steps)
            assert await store.aggregate(query) == reference.aggregate(query), query
            got = await conversions.aggregate(store, asked)
            assert close(got["conversions"], conv) and close(got["conversion_rate"], rate)
            if query.property == "goal":
                rows = await conversions.breakdown(store, asked)
                want = []
                plain = tuple(f for f in query.filters if f.property != "goal")
                total = len(
                    {e.visitor_id for e in reference.matching(replace(query, filters=plain))}
                )
                for goal in goals:  # the query's own goal clauses restrict the events too
                    one = replace(
                        query, filters=(*query.filters, Filter("goal", "==", (goal.name,)))
                    )
                    found = {e.visitor_id for e in reference.matching(one)}
                    if found:
                        want.append((goal.name, float(len(found)), 100 * len(found) / total))
                want.sort(key=lambda row: (-row[1], -row[2], row[0]))
                got_rows = [(r.value, r.results["conversions"]) for r in rows]
                assert got_rows == [(name, n) for name, n, _ in want[: query.limit]]
            else:
                rows = await conversions.breakdown(store, asked)
                for row in rows:  # each row is the aggregate of its value
                    one = replace(
                        asked, filters=(*asked.filters, Filter(query.property, "==", (row.value,)))
                    )
                    c, r = reference.conversions(one)
                    assert close(row.results["conversions"], c), (query, row)
                    assert close(row.results["conversion_rate"], r), (query, row)


_numbers = itertools.count()
