"""The goals and funnels API in process (memory adapters): access, bad input, and the numbers
of goal metrics, goal breakdowns and funnels on generated visits, worked out here from the
generated events (a pattern matcher and a brute-force funnel of the contract tests, no code
of hitstream's)."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hitstream.bootstrap import Runtime, build
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.goals import Goal
from hitstream.domain.stats import Filter, Range, StatsQuery
from hitstream.services.accounts import Accounts
from hitstream.settings import Settings
from hitstream.stores.base import WriteBatch
from hitstream.web.app import create_app
from tests.access import admin_key, bearer
from tests.contract.test_goals_contract import GoalReference, done

SITE = "shop.example"
DAY0 = int(datetime(2026, 2, 3, 8, tzinfo=UTC).timestamp() * 1000)
PERIOD = {"site_id": SITE, "period": "custom", "from": "2026-02-03", "to": "2026-02-04"}
PAGES = ["/", "/pricing", "/pricing-plans", "/pricing/faq", "/docs/a", "/docs/a/b", "/blog"]


def generated(seed: int) -> list[ProcessedEvent]:
    rng = random.Random(seed)
    events = []
    for number in range(200):
        visitor, visit = f"v{rng.randrange(80)}", f"s{number}"
        ts = DAY0 + rng.randrange(20 * 3_600_000)
        for i in range(rng.randrange(1, 9)):
            ts += rng.randrange(0, 20 * 60_000)
            custom = rng.random() < 0.2
            events.append(
                ProcessedEvent(
                    event_id=f"e{number:03d}-{i}",
                    site_id=SITE,
                    type="custom" if custom else "pageview",
                    name="signup" if custom else "pageview",
                    timestamp=ts,
                    received_at=ts,
                    visitor_id=visitor,
                    session_id=visit,
                    path=rng.choice(PAGES),
                    source=rng.choice(["", "Google", "Twitter"]),
                    props={"plan": rng.choice(["pro", "free"])} if custom else {},
                )
            )
    return events


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path,
        log_url="memory://",
        store_url="memory://",
        cache_url="memory://",
        sites=SITE,
    )
    runtime = build(settings)
    runtime.announce = lambda line: None
    await runtime.start(run_processor=False)
    yield runtime
    await runtime.stop()


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime.services))
    async with httpx.AsyncClient(transport=transport, base_url="http://hitstream.test") as c:
        yield c


async def keys(runtime: Runtime) -> tuple[dict[str, str], dict[str, str]]:
    admin = bearer(await admin_key(runtime.store))
    reader, _ = await Accounts(runtime.store).create_key(SITE, "read", "reader")
    return admin, bearer(reader)


GOALS = [
    {"name": "Pricing", "page": "/pricing*"},
    {"name": "Docs", "page": "/docs/**"},
    {"name": "Signup", "event_name": "signup", "props": {"plan": "pro"}},
]
AS_GOALS = (
    Goal("Pricing", page="/pricing*"),
    Goal("Docs", page="/docs/**"),
    Goal("Signup", event_name="signup", props=(("plan", "pro"),)),
)


async def goal_rows(
    client: httpx.AsyncClient, reader: dict[str, str], metrics: str
) -> list[dict[str, Any]]:
    """The goal breakdown of ``PERIOD``, read with ``reader``."""
    answer = await client.get(
        "/api/v1/stats/breakdown",
        params={**PERIOD, "property": "goal", "metrics": metrics},
        headers=reader,
    )
    rows: list[dict[str, Any]] = answer.json()["results"]
    return rows


async def test_goal_access_and_bad_input(runtime: Runtime, client: httpx.AsyncClient) -> None:
    admin, reader = await keys(runtime)
    url = f"/api/v1/sites/{SITE}/goals"
    assert (await client.get(url)).status_code == 401
    assert (await client.post(url, json=GOALS[0])).status_code == 401
    refused = await client.post(url, json=GOALS[0], headers=reader)
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "field": "site_id",
        "reason": f"this credential may not manage site ({SITE})",
    }
    made = await client.post(url, json=GOALS[2], headers=admin)
    assert made.status_code == 201 and made.json() == GOALS[2]
    assert (await client.post(url, json=GOALS[2], headers=admin)).status_code == 409
    # a name that differs by case only reads as a typo in goal==...: refused too
    cased = {"name": "sIGNUP", "event_name": "signup", "props": {"plan": "pro"}}  # GOALS[2]
    twin = await client.post(url, json=cased, headers=admin)
    assert (twin.status_code, twin.json()["error"]["field"]) == (409, "name"), twin.text
    assert (await client.get(url, headers=reader)).json() == {"goals": [GOALS[2]]}
    assert (await client.delete(f"{url}/Signup", headers=reader)).status_code == 403
    for body, field in [
        ({"name": "X", "page": "pricing"}, "page"),
        ({"name": "X", "page": "/a***"}, "page"),
        ({"name": "X"}, "page"),
        ({"name": "X", "page": "/a", "event_name": "e"}, "page"),
        ({"name": "a|b", "page": "/a"}, "name"),
        ({"name": "X", "page": "/a", "props": {"k": "v"}}, "props"),
        ({"name": "X", "event_name": "pageview"}, "event_name"),  # never completed: page goals
        ({"name": "X", "event_name": "e", "props": {"plan": ["a"]}}, "props.plan"),
    ]:
        bad = await client.post(url, json=body, headers=admin)
        assert (bad.status_code, bad.json()["error"]["field"]) == (400, field), body
        if field == "props.plan":  # pydantic's per-member failures, told as one
            want = "must be a boolean or an integer or a number or a string"
            assert bad.json()["error"]["reason"] == want
    # a body that is not JSON names the body and where it broke; another media type is a 415
    torn = await client.post(
        url, content=b'{"name": ', headers={**admin, "Content-Type": "application/json"}
    )
    assert (torn.status_code, torn.json()["error"]["field"]) == (400, "body")
    assert "character 9" in torn.json()["error"]["reason"]
    plain = await client.post(
        url, content=b'{"name": "X", "page": "/a"}', headers={**admin, "Content-Type": "text/plain"}
    )
    assert (plain.status_code, plain.json()["error"]["field"]) == (415, "content-type")
    gone = await client.delete(f"{url}/Signup", headers=admin)
    assert gone.status_code == 200
    assert (await client.delete(f"{url}/Signup", headers=admin)).status_code == 404
    # funnels: same rules
    furl = f"/api/v1/sites/{SITE}/funnels"
    flow = {"name": "Flow", "steps": ["page==/", "page==/pricing"], "window": 30}
    assert (await client.post(furl, json=flow, headers=reader)).status_code == 403
    assert (await client.post(furl, json=flow, headers=admin)).status_code == 201
    assert (await client.get(furl, headers=reader)).json() == {"funnels": [flow]}
    few = await client.post(furl, json={**flow, "name": "F", "steps": ["page==/"]}, headers=admin)
    assert (few.status_code, few.json()["error"]["field"]) == (400, "steps")
    for window in (True, "30", 1.5):  # not read as 1 or 30 minutes: a named refusal
        typed = await client.post(furl, json={**flow, "name": "W", "window": window}, headers=admin)
        assert (typed.status_code, typed.json()["error"]["field"]) == (400, "window"), window
    # a saved funnel names goals of the site only, and keeps the goals it names
    nope = {"name": "G", "steps": ["page==/", "goal==Nope"]}
    refused_steps = await client.post(furl, json=nope, headers=admin)
    assert (refused_steps.status_code, refused_steps.json()["error"]["field"]) == (400, "steps")
    assert "Nope" in refused_steps.json()["error"]["reason"]
    assert (await client.post(url, json=GOALS[2], headers=admin)).status_code == 201
    goal = "Signup"  # GOALS[2]
    with_goal = {"name": "G", "steps": ["page==/", f"goal=={goal}"]}
    assert (await client.post(furl, json=with_goal, headers=admin)).status_code == 201
    in_use = await client.delete(f"{url}/{goal}", headers=admin)
    assert (in_use.status_code, in_use.json()["error"]["field"]) == (409, "name")
    assert "'G'" in in_use.json()["error"]["reason"]
    assert (await client.delete(f"{furl}/G", headers=admin)).status_code == 200
    assert (await client.delete(f"{url}/{goal}", headers=admin)).status_code == 200
    # stats
    stats = "/api/v1/stats"
    assert (await client.get(f"{stats}/funnel", params=PERIOD)).status_code == 401
    cases: list[tuple[dict[str, Any], str]] = [
        ({"step": ["page==/"]}, "step"),
        ({"step": ["page==/", "nonsense"]}, "step"),
        ({"step": ["page==/", "goal==Nope"]}, "step"),
        ({"step": ["page==/", "page==/a"], "window": 0}, "window"),
        ({"funnel": "Nope"}, "funnel"),
    ]
    for params, field in cases:
        bad = await client.get(f"{stats}/funnel", params={**PERIOD, **params}, headers=reader)
        assert (bad.status_code, bad.json()["error"]["field"]) == (400, field), params
    unknown = await client.get(
        f"{stats}/aggregate", params={**PERIOD, "filters": "goal==Nope"}, headers=reader
    )
    assert (unknown.status_code, unknown.json()["error"]["field"]) == (400, "filters")


async def test_goal_metrics_and_funnels_on_generated_visits(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    admin, reader = await keys(runtime)
    events = generated(7)
    await runtime.store.write(WriteBatch("events", {0: len(events)}, events, []))
    for goal in GOALS:
        made = await client.post(f"/api/v1/sites/{SITE}/goals", json=goal, headers=admin)
        assert made.status_code == 201
    everyone = {e.visitor_id for e in events}
    by_goal = {g.name: [e for e in events if done(g, e)] for g in AS_GOALS}  # completions, per goal
    converted = {e.visitor_id for found in by_goal.values() for e in found}

    got = await client.get(
        "/api/v1/stats/aggregate",
        params={**PERIOD, "metrics": "visitors,conversions,conversion_rate"},
        headers=reader,
    )
    results = got.json()["results"]
    assert results["visitors"]["value"] == len(everyone)
    assert results["conversions"]["value"] == len(converted)
    assert results["conversion_rate"]["value"] == round(100 * len(converted) / len(everyone), 2)

    rows = await goal_rows(client, reader, "conversions,events,conversion_rate")
    want = sorted(
        (
            (name, len({e.visitor_id for e in found}), len(found))
            for name, found in by_goal.items()
            if found
        ),
        key=lambda row: (-row[1], -row[2], row[0]),  # ties by the second metric (events)
    )
    assert [(r["value"], r["conversions"], r["events"]) for r in rows] == want
    for row in rows:
        assert row["conversion_rate"] == round(100 * row["conversions"] / len(everyone), 2)

    # a breakdown by page filtered by a goal: the pages of the Pricing completions
    pages = (
        await client.get(
            "/api/v1/stats/breakdown",
            params={**PERIOD, "property": "page", "filters": "goal==Pricing", "metrics": "events"},
            headers=reader,
        )
    ).json()["results"]
    counts: dict[str, int] = {}
    for e in by_goal["Pricing"]:
        counts[e.path] = counts.get(e.path, 0) + 1
    assert {r["value"]: r["events"] for r in pages} == counts
    assert set(counts) <= {"/pricing", "/pricing-plans"}  # never /pricing/faq

    # funnels, typed and saved, with a window
    reference = GoalReference([(events, [])], AS_GOALS)
    steps = ("page==/", "goal==Pricing", "goal==Signup")
    filters = tuple(Filter(p, "==", (v,)) for p, _, v in (s.partition("==") for s in steps))
    query = StatsQuery(SITE, Range(DAY0 - 8 * 3_600_000, DAY0 + 40 * 3_600_000))
    seen = {}
    for window in (None, 15):
        want_visitors = reference.funnel(
            query, filters, None if window is None else window * 60_000
        )
        params: dict[str, Any] = {**PERIOD, "step": list(steps)}
        if window is not None:
            params["window"] = window
        answer = (await client.get("/api/v1/stats/funnel", params=params, headers=reader)).json()
        assert [s["visitors"] for s in answer["steps"]] == want_visitors
        assert [s["label"] for s in answer["steps"]] == list(steps)
        first = want_visitors[0]
        assert [s["conversion_rate"] for s in answer["steps"]] == [
            round(100 * v / first, 2) if first else 0 for v in want_visitors
        ]
        assert [s["dropoff"] for s in answer["steps"]] == [
            0,
            *(a - b for a, b in itertools.pairwise(want_visitors)),
        ]
        seen[window] = want_visitors
    assert seen[None][0] > seen[None][-1] > 0  # the generated data exercises every part
    assert seen[15] != seen[None]  # and the window
    saved = {"name": "Flow", "steps": list(steps), "window": 15}
    assert (
        await client.post(f"/api/v1/sites/{SITE}/funnels", json=saved, headers=admin)
    ).status_code == 201
    by_name = await client.get(
        "/api/v1/stats/funnel", params={**PERIOD, "funnel": "Flow"}, headers=reader
    )
    assert [s["visitors"] for s in by_name.json()["steps"]] == want_visitors
    assert by_name.json()["window"] == 15


async def test_a_goal_may_name_props_as_numbers_and_booleans(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Events send props as numbers and booleans; a goal may name them so too (it was a 400:
    "input should be a valid string"), and counts the events with those values."""
    admin, reader = await keys(runtime)
    sent = [(3, True), (3, False), (4, True), (3.5, True)]
    events = [
        ProcessedEvent(
            event_id=f"n{i}",
            site_id=SITE,
            type="custom",
            name="buy",
            timestamp=DAY0 + i * 60_000,
            received_at=DAY0,
            visitor_id=f"v{i}",
            session_id=f"s{i}",
            path="/",
            props={"seats": seats, "annual": annual},
        )
        for i, (seats, annual) in enumerate(sent)
    ]
    await runtime.store.write(WriteBatch("events", {0: len(events)}, events, []))
    url = f"/api/v1/sites/{SITE}/goals"
    goal = {"name": "Team", "event_name": "buy", "props": {"seats": 3, "annual": True}}
    made = await client.post(url, json=goal, headers=admin)
    assert made.status_code == 201, made.text
    assert made.json()["props"] == {"seats": "3", "annual": "true"}  # kept as text
    half = {"name": "Half", "event_name": "buy", "props": {"seats": 3.5}}
    assert (await client.post(url, json=half, headers=admin)).status_code == 201
    for bad in ({"seats": None}, {"seats": [3]}, {"seats": {"n": 3}}):
        refused = await client.post(url, json={**goal, "name": "X", "props": bad}, headers=admin)
        assert refused.status_code == 400, bad
    rows = await goal_rows(client, reader, "conversions")
    want = {"Team": sum(1 for s, a in sent if s == 3 and a), "Half": 1}
    assert {r["value"]: r["conversions"] for r in rows} == want


async def test_goal_rows_break_ties_by_the_second_metric_and_keep_goal_filters(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """Rows of ``property=goal`` are ordered as every breakdown (first metric, then the
    second): ``limit`` cuts the right one. A ``goal==`` filter restricts the events as in any
    breakdown: another goal those same events complete keeps its row (it was left out)."""
    admin, reader = await keys(runtime)

    def event(n: int, visitor: str, name: str, path: str) -> ProcessedEvent:
        kind = "pageview" if name == "pageview" else "custom"
        return ProcessedEvent(
            event_id=f"t{n}",
            site_id=SITE,
            type=kind,
            name=name,
            timestamp=DAY0 + n * 60_000,
            received_at=DAY0,
            visitor_id=visitor,
            session_id=f"s-{visitor}",
            path=path,
        )

    events = [
        *(event(n, f"v{n}", "signup", "/") for n in range(3)),  # Any: 3 visitors, 3 events
        *(event(10 + n, f"v{n}", "pageview", "/blog/a") for n in range(3)),  # Blog: 3, 4
        event(20, "v0", "pageview", "/blog/b"),
    ]
    await runtime.store.write(WriteBatch("events", {0: len(events)}, events, []))
    for goal in (
        {"name": "Any", "event_name": "signup"},
        {"name": "AlsoAny", "event_name": "signup"},
        {"name": "Blog", "page": "/blog/**"},
    ):
        made = await client.post(f"/api/v1/sites/{SITE}/goals", json=goal, headers=admin)
        assert made.status_code == 201, made.text

    async def rows(**params: str) -> list[tuple[str, int, int]]:
        answer = await client.get(
            "/api/v1/stats/breakdown",
            params={**PERIOD, "property": "goal", "metrics": "conversions,events", **params},
            headers=reader,
        )
        assert answer.status_code == 200, answer.text
        return [(r["value"], r["conversions"], r["events"]) for r in answer.json()["results"]]

    assert await rows() == [("Blog", 3, 4), ("AlsoAny", 3, 3), ("Any", 3, 3)]
    assert await rows(limit="1") == [("Blog", 3, 4)]
    assert await rows(filters="goal==Any") == [("AlsoAny", 3, 3), ("Any", 3, 3)]
    assert await rows(filters="goal!=Any") == [("Blog", 3, 4)]


async def test_dates_at_the_calendars_ends_and_a_bug_answer_named_json(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """A day with no day after it (9999-12-31) or no year before it was a 500 in plain text;
    now a 400 naming the parameter. And whatever a bug raises is answered as JSON with the
    security headers (the server's own error page had none)."""
    _, reader = await keys(runtime)
    cases = [
        ({"period": "custom", "from": "9999-12-31", "to": "9999-12-31"}, "from"),
        ({"period": "custom", "from": "2026-01-01", "to": "9999-12-31"}, "to"),
        ({"period": "custom", "from": "0001-01-01", "to": "0001-01-05"}, "from"),
        ({"period": "day", "compare": "custom", "compare_from": "9999-12-31",
          "compare_to": "9999-12-31"}, "compare_from"),
    ]  # fmt: skip
    for params, field in cases:
        got = await client.get(
            "/api/v1/stats/aggregate", params={"site_id": SITE, **params}, headers=reader
        )
        assert (got.status_code, got.json()["error"]["field"]) == (400, field), params
    app = create_app(runtime.services)

    @app.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hitstream.test") as c:
        answer = await c.get("/api/v1/boom")
    assert answer.status_code == 500
    assert answer.json() == {"error": {"field": "server", "reason": "internal error"}}
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
