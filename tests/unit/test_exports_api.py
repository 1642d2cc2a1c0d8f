"""CSV answers, the dashboard ZIP, the new filter operators and comparisons through the Stats
API (in process, memory adapters); every expected number is counted here from the events."""

from __future__ import annotations

import csv
import io
import random
import re
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from hitstream.bootstrap import Runtime, build
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.goals import Goal
from hitstream.domain.sessions import Sessionizer
from hitstream.services.accounts import Accounts
from hitstream.settings import Settings
from hitstream.stores.base import WriteBatch
from hitstream.web.app import create_app
from tests.access import bearer

SITE = "shop.example"
OTHER = "other.example"
DAY = 86_400_000
PATHS = ["/", "/blog/1", "/blog/22", "/pricing", "=HYPERLINK(1)", "/a,b", '/q"x', "/Blog/3"]


def utc(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


MARCH = utc(2026, 3, 1)
MARCH_2025 = utc(2025, 3, 1)


def generated(seed: int, start: int, count: int, prefix: str) -> list[ProcessedEvent]:
    """Events of a few visitors over ten days, put into visits by the real sessionizer."""
    rng = random.Random(seed)
    sessionizer = Sessionizer()
    events = []
    stamps = sorted(start + rng.randrange(10 * DAY) for _ in range(count))
    for number, ts in enumerate(stamps):
        event = ProcessedEvent(
            event_id=f"{prefix}{number}",
            site_id=SITE,
            type=rng.choice(["pageview", "pageview", "pageview", "custom"]),
            name=rng.choice(["", "Signup"]),
            timestamp=ts,
            received_at=ts + 5,
            visitor_id=f"v{rng.randrange(6)}",
            path=rng.choice(PATHS),
            source=rng.choice(["", "Google", "-2+3"]),
            country=rng.choice(["DE", "FR", ""]),
            browser=rng.choice(["Firefox", "Chrome"]),
        )
        sessionizer.assign(event)
        events.append(event)
    return events


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path,
        log_url="memory://",
        store_url="memory://",
        cache_url="memory://",
        sites=f"{SITE},{OTHER}",
    )
    runtime = build(settings)
    runtime.announce = lambda _line: None
    await runtime.start(run_processor=False)
    yield runtime
    await runtime.stop()


@pytest.fixture
async def events(runtime: Runtime) -> list[ProcessedEvent]:
    stats = runtime.services.stats
    assert stats is not None
    store = stats.store
    now = generated(1, MARCH, 300, "n")
    before = generated(2, MARCH_2025, 200, "y")
    sessionizer = Sessionizer()
    for event in now + before:
        sessionizer.assign(event)  # one sessionizer for the visits of both years
    await store.write(WriteBatch("test", {}, now + before, sessionizer.drain_touched()))
    return now + before


@pytest.fixture
async def client(
    runtime: Runtime, events: list[ProcessedEvent]
) -> AsyncIterator[httpx.AsyncClient]:
    stats = runtime.services.stats
    assert stats is not None
    token, _ = await Accounts(stats.store).create_key(SITE, "read", "tests")
    transport = httpx.ASGITransport(app=create_app(runtime.services))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://hitstream.test", headers=bearer(token)
    ) as c:
        yield c


PERIOD = {"site_id": SITE, "period": "custom", "from": "2026-03-01", "to": "2026-03-10"}


def in_march(events: list[ProcessedEvent]) -> list[ProcessedEvent]:
    return [e for e in events if MARCH <= e.timestamp < MARCH + 10 * DAY]


def parsed(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def number(cell: str) -> float | None:
    return None if cell == "" else float(cell)


async def test_aggregate_csv_is_the_json_answer_with_comparison_columns(
    client: httpx.AsyncClient,
) -> None:
    params = {**PERIOD, "metrics": "visitors,pageviews,events", "compare": "year_over_year"}
    body = (await client.get("/api/v1/stats/aggregate", params=params)).json()
    answer = await client.get("/api/v1/stats/aggregate", params={**params, "format": "csv"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    assert answer.text.endswith("\r\n")
    (row,) = parsed(answer.text)
    for metric in ("visitors", "pageviews", "events"):
        results = body["results"][metric]
        assert number(row[metric]) == results["value"]
        assert number(row[f"{metric}_previous"]) == results["previous"]
        assert number(row[f"{metric}_change"]) == results["change"]


async def test_year_over_year_and_custom_comparisons_count_the_other_range(
    client: httpx.AsyncClient, events: list[ProcessedEvent]
) -> None:
    now = in_march(events)
    last_year = [e for e in events if MARCH_2025 <= e.timestamp < MARCH_2025 + 10 * DAY]
    assert now and last_year
    params = {**PERIOD, "metrics": "pageviews,events", "compare": "year_over_year"}
    body = (await client.get("/api/v1/stats/aggregate", params=params)).json()
    assert body["results"]["events"] == {
        "value": len(now),
        "previous": len(last_year),
        "change": round((len(now) - len(last_year)) / len(last_year) * 100, 1),
    }
    assert body["compare"] == {"from": MARCH_2025, "to": MARCH_2025 + 10 * DAY}
    custom = {
        **params,
        "compare": "custom",
        "compare_from": "2025-03-03",
        "compare_to": "2025-03-04",
    }
    body = (await client.get("/api/v1/stats/aggregate", params=custom)).json()
    window = [e for e in events if MARCH_2025 + 2 * DAY <= e.timestamp < MARCH_2025 + 4 * DAY]
    assert body["results"]["events"]["previous"] == len(window)
    for bad, field in (
        ({"compare": "custom", "compare_from": "2025-03-03"}, "compare_to"),
        ({"compare": "custom", "compare_from": "x", "compare_to": "2025-03-04"}, "compare_from"),
        ({"compare": "lastyear"}, "compare"),
        ({"compare_from": "2025-03-03", "compare_to": "2025-03-04"}, "compare"),
        ({"period": ""}, "period"),
    ):
        refused = await client.get("/api/v1/stats/aggregate", params={**PERIOD, **bad})
        assert refused.status_code == 400 and refused.json()["error"]["field"] == field


async def test_timeseries_csv_has_one_row_per_bucket(client: httpx.AsyncClient) -> None:
    params = {**PERIOD, "metrics": "visitors,pageviews", "interval": "day"}
    body = (await client.get("/api/v1/stats/timeseries", params=params)).json()
    answer = await client.get(
        "/api/v1/stats/timeseries", params=params, headers={"Accept": "text/csv"}
    )
    rows = parsed(answer.text)
    assert len(rows) == len(body["results"]) == 10
    for row, point in zip(rows, body["results"], strict=True):
        assert int(row["bucket"]) == point["bucket"]
        assert datetime.fromisoformat(row["time"]).timestamp() * 1000 == point["bucket"]
        assert (number(row["visitors"]), number(row["pageviews"])) == (
            point["visitors"],
            point["pageviews"],
        )


async def test_breakdown_csv_quotes_and_defuses_formulas(
    client: httpx.AsyncClient, events: list[ProcessedEvent]
) -> None:
    params = {**PERIOD, "metrics": "pageviews", "property": "page", "format": "csv"}
    answer = await client.get("/api/v1/stats/breakdown", params=params)
    rows = parsed(answer.text)
    views: dict[str, int] = {}
    for e in in_march(events):
        if e.type == "pageview":
            views[e.path] = views.get(e.path, 0) + 1
    defused = {("'" + p if p[0] in "=+-@" else p): n for p, n in views.items()}
    assert {r["value"]: number(r["pageviews"]) for r in rows} == defused
    assert "'=HYPERLINK(1)" in {r["value"] for r in rows}
    assert '"/a,b"' in answer.text and '"/q""x"' in answer.text  # RFC 4180 quoting
    sources = parsed(
        (
            await client.get(
                "/api/v1/stats/breakdown",
                params={**PERIOD, "property": "source", "metrics": "events", "format": "csv"},
            )
        ).text
    )
    assert "'-2+3" in {r["value"] for r in sources}
    bad = await client.get("/api/v1/stats/breakdown", params={**params, "format": "xml"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "format"


async def test_the_export_zip_holds_the_dashboards_tables(
    client: httpx.AsyncClient, events: list[ProcessedEvent], runtime: Runtime
) -> None:
    store = runtime.services.stats.store if runtime.services.stats else None
    assert store is not None
    await store.add_goal(SITE, Goal("Blog", page="/blog/*"))
    await store.add_goal(SITE, Goal("Signup", event_name="Signup"))
    answer = await client.get("/api/v1/stats/export", params=PERIOD)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/zip"
    disposition = answer.headers["content-disposition"]  # says which days it holds
    assert disposition == f'attachment; filename="{SITE}-2026-03-01_2026-03-10.zip"'
    one_day = await client.get("/api/v1/stats/export", params={**PERIOD, "to": "2026-03-01"})
    assert one_day.headers["content-disposition"].endswith(f'"{SITE}-2026-03-01.zip"')
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    names = set(archive.namelist())
    assert {
        "visitors.csv",
        "pages.csv",
        "entry_pages.csv",
        "exit_pages.csv",
        "sources.csv",
        "referrers.csv",
        "utm_campaigns.csv",
        "countries.csv",
        "browsers.csv",
        "operating_systems.csv",
        "devices.csv",
        "custom_events.csv",
    } <= names
    march = in_march(events)
    visitors = parsed(archive.read("visitors.csv").decode())
    assert len(visitors) == 10
    assert sum(number(r["pageviews"]) or 0 for r in visitors) == sum(
        1 for e in march if e.type == "pageview"
    )
    countries = {
        r["value"]: number(r["visitors"]) for r in parsed(archive.read("countries.csv").decode())
    }
    expected = {
        c or "(none)": float(len({e.visitor_id for e in march if e.country == c}))
        for c in {e.country for e in march}
    }
    assert countries == expected
    custom = {
        r["value"]: number(r["events"]) for r in parsed(archive.read("custom_events.csv").decode())
    }
    names_of_custom = [e.name for e in march if e.type == "custom"]
    assert custom == {n: float(names_of_custom.count(n)) for n in set(names_of_custom)}
    # the goals panel's table: converted visitors, completions, rate per goal
    goals = {
        r["value"]: (number(r["conversions"]), number(r["events"]), number(r["conversion_rate"]))
        for r in parsed(archive.read("goals.csv").decode())
    }
    everyone = len({e.visitor_id for e in march})
    blog = [e for e in march if e.type == "pageview" and re.fullmatch(r"/blog/[^/]+", e.path)]
    signup = [e for e in march if e.type == "custom" and e.name == "Signup"]
    want = {}
    for name, found in (("Blog", blog), ("Signup", signup)):
        converted = len({e.visitor_id for e in found})
        want[name] = (float(converted), float(len(found)), round(100 * converted / everyone, 2))
    assert goals == want
    # a blank first cell reads as a broken row: the dashboard's names for "none"
    sources = [r["value"] for r in parsed(archive.read("sources.csv").decode())]
    assert "Direct / none" in sources and "" not in sources


async def test_new_filter_operators_through_the_api(
    client: httpx.AsyncClient, events: list[ProcessedEvent]
) -> None:
    march = in_march(events)
    cases: dict[str, Callable[[str], bool]] = {
        "page=~^/blog/\\d+$": lambda p: re.search(r"^/blog/\d+\Z", p) is not None,
        "page!=~^/blog/": lambda p: re.search(r"^/blog/", p) is None,
        "page!~blog": lambda p: "blog" not in p.lower(),
        "page does not contain blog|pricing": lambda p: (
            not any(n in p.lower() for n in ("blog", "pricing"))
        ),
        "page matches (1|22)$": lambda p: re.search(r"(1|22)\Z", p) is not None,
    }
    for clause, passes in cases.items():
        params = {**PERIOD, "metrics": "events", "filters": clause}
        body = (await client.get("/api/v1/stats/aggregate", params=params)).json()
        assert body["results"]["events"]["value"] == sum(1 for e in march if passes(e.path)), clause
    for bad in ("page=~(", "page=~" + "a" * 257, "page=~a{500}", "page=~\\1"):
        refused = await client.get("/api/v1/stats/aggregate", params={**PERIOD, "filters": bad})
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "filters"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v1/stats/aggregate", {"format": "csv"}),
        ("/api/v1/stats/breakdown", {"property": "page", "format": "csv"}),
        ("/api/v1/stats/timeseries", {"format": "csv"}),
        ("/api/v1/stats/export", {}),
    ],
)
async def test_exports_obey_the_sites_access_rules(
    runtime: Runtime, client: httpx.AsyncClient, path: str, params: dict[str, Any]
) -> None:
    stats = runtime.services.stats
    assert stats is not None
    anonymous = await client.get(path, params={**PERIOD, **params}, headers={"Authorization": ""})
    assert anonymous.status_code in (401, 403, 404)
    other_key, _ = await Accounts(stats.store).create_key(OTHER, "read", "other")
    elsewhere = await client.get(path, params={**PERIOD, **params}, headers=bearer(other_key))
    assert elsewhere.status_code in (403, 404)
    assert "pageviews" not in elsewhere.text and not elsewhere.content.startswith(b"PK")
    mine = await client.get(path, params={**PERIOD, **params})
    assert mine.status_code == 200


async def test_the_pages_file_has_time_on_page_and_scroll_depth(
    client: httpx.AsyncClient, events: list[ProcessedEvent], runtime: Runtime
) -> None:
    """As the dashboard's pages table: a page's reports (first and follow-up, decision
    0063) give its time on page and scroll depth."""
    store = runtime.services.stats.store if runtime.services.stats else None
    assert store is not None
    day = next(e for e in in_march(events) if e.type == "pageview" and e.path == PATHS[0])
    reports = [
        replace(day, event_id="r1", type="engagement", engaged_ms=4_000, scroll_depth=60),
        replace(day, event_id="r2", type="engagement", engaged_ms=2_000, scroll_depth=90),
        replace(day, event_id="r3", type="engagement", name="follow_up", engaged_ms=3_000),
    ]
    await store.write(WriteBatch("test", {}, reports, []))
    answer = await client.get("/api/v1/stats/export", params=PERIOD)
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    pages = {r["value"]: r for r in parsed(archive.read("pages.csv").decode())}
    assert number(pages[PATHS[0]]["time_on_page"]) == (4 + 2 + 3) / 2
    assert number(pages[PATHS[0]]["scroll_depth"]) == (60 + 90) / 2
    others = [row for value, row in pages.items() if value != PATHS[0]]
    assert others and all(number(row["time_on_page"]) == 0 for row in others)


async def test_a_zone_given_in_a_query_must_be_a_place(client: httpx.AsyncClient) -> None:
    for name in ("localtime", "right/UTC", "Mars/Olympus"):
        answer = await client.get(
            "/api/v1/stats/aggregate", params={"site_id": SITE, "period": "day", "tz": name}
        )
        assert answer.status_code == 400, name
        assert answer.json()["error"]["field"] == "tz"
    ok = await client.get(
        "/api/v1/stats/aggregate", params={"site_id": SITE, "period": "day", "tz": "Asia/Kolkata"}
    )
    assert ok.status_code == 200
