"""``hitstream export`` and ``hitstream import`` on DuckDB and PostgreSQL: an export imported
into a fresh data folder gives the very same answers through the Stats API; re-importing
changes nothing; CSV and parquet hold the same events as NDJSON; refusals are errors."""

from __future__ import annotations

import asyncio
import csv
import json
import random
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from typer.testing import CliRunner

from hitstream.bootstrap import build
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.sessions import Sessionizer
from hitstream.services.accounts import Accounts
from hitstream.settings import Settings
from hitstream.stores.base import WriteBatch
from hitstream.web.app import create_app
from tests.access import bearer
from tests.contract.conftest import POSTGRES
from tests.contract.test_store_contract import DAY, T

SITE = "shop.example"
runner = CliRunner()
PAGES = ["/", "/blog/1", "/blog/2", "/pricing", "/signup", "=cmd()"]


def generated(count: int) -> tuple[list[ProcessedEvent], list[Any]]:
    """Events of a dozen visitors over three days, into visits by the real sessionizer (in
    time order, as the processor sees them), with duration pings and props."""
    rng = random.Random(11)
    sessionizer = Sessionizer()
    events = []
    for number, ts in enumerate(sorted(T + rng.randrange(3 * DAY) for _ in range(count))):
        kind = rng.choice(["pageview", "pageview", "pageview", "custom", "click", "session"])
        event = ProcessedEvent(
            event_id=f"ev{number:04d}",
            site_id=SITE,
            type=kind,
            name="Signup" if kind == "custom" else "",
            timestamp=ts,
            received_at=ts + 3,
            visitor_id=f"v{rng.randrange(12)}",
            path=rng.choice(PAGES),
            hostname="shop.example",
            source=rng.choice(["", "Google", "Newsletter"]),
            utm_campaign=rng.choice(["", "spring"]),
            country=rng.choice(["DE", "FR", "US"]),
            browser=rng.choice(["Firefox", "Chrome", "Safari"]),
            os=rng.choice(["Linux", "macOS"]),
            device=rng.choice(["desktop", "mobile"]),
            screen_width=rng.choice([None, 1280]),
            duration_ms=rng.randrange(1, 400_000) if kind == "session" else None,
            load_time_ms=rng.choice([None, 80, 300]) if kind == "pageview" else None,
            props=rng.choice([{}, {"plan": "pro", "seats": 3}, {"plan": "free", "trial": True}]),
            title=rng.choice(["Home", 'a "quoted", title\nwith a break']),
        )
        sessionizer.assign(event)
        events.append(event)
    return events, sessionizer.drain_touched()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.integration)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def url_of(kind: str, folder: Path) -> str:
    if kind == "duckdb":
        return f"duckdb:///{(folder / 'hitstream.duckdb').resolve()}"
    pytest.importorskip("psycopg")
    return POSTGRES.url_for(folder)


def cli(url: str, folder: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(
        app_command(), [*args, "--data-dir", str(folder)], env={"HITSTREAM_STORE_URL": url}
    )
    return result.exit_code, result.stdout, result.stderr


def app_command() -> Any:
    from hitstream.cli import app

    return app


async def _seed(url: str, folder: Path, events: list[ProcessedEvent], visits: list[Any]) -> None:
    from hitstream.bootstrap.adapters import open_store

    settings = Settings(data_dir=folder, store_url=url)
    async with open_store(settings) as store:
        await store.write(WriteBatch("events", {0: len(events)}, events, visits))


QUERIES: list[tuple[str, dict[str, str]]] = [
    ("aggregate", {"metrics": ",".join(["visitors", "visits", "pageviews", "events",
                                        "bounce_rate", "visit_duration", "views_per_visit",
                                        "load_time_p50", "load_time_p95"])}),
    ("aggregate", {"metrics": "visitors,events", "filters": "page=~^/blog/"}),
    ("timeseries", {"metrics": "visitors,pageviews,bounce_rate,visit_duration", "interval": "day"}),
    ("timeseries", {"metrics": "events", "interval": "hour"}),
    ("breakdown", {"property": "page", "metrics": "visitors,pageviews,bounce_rate"}),
    ("breakdown", {"property": "entry_page", "metrics": "visits,bounce_rate,visit_duration"}),
    ("breakdown", {"property": "exit_page", "metrics": "visits,visit_duration"}),
    ("breakdown", {"property": "source", "metrics": "visitors,events"}),
    ("breakdown", {"property": "country", "metrics": "visitors,views_per_visit"}),
    ("breakdown", {"property": "prop:plan", "metrics": "events"}),
    ("breakdown", {"property": "event_name", "metrics": "events", "filters": "event_type==custom"}),
]  # fmt: skip


async def _answers(url: str, folder: Path, site: str = SITE) -> list[dict[str, Any]]:
    settings = Settings(
        data_dir=folder, store_url=url, log_url="memory://", cache_url="memory://", sites=site
    )
    runtime = build(settings)
    runtime.announce = lambda _line: None
    await runtime.start(run_processor=False)
    try:
        stats = runtime.services.stats
        assert stats is not None
        token, _ = await Accounts(stats.store).create_key(site, "read", "round trip")
        transport = httpx.ASGITransport(app=create_app(runtime.services))
        period = {"site_id": site, "period": "custom", "from": "2026-03-09", "to": "2026-03-14"}
        answers = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for kind, params in QUERIES:
                got = await client.get(
                    f"/api/v1/stats/{kind}", params={**period, **params}, headers=bearer(token)
                )
                assert got.status_code == 200, got.text
                answers.append(got.json())
        return answers
    finally:
        await runtime.stop()


def test_export_import_round_trip_gives_identical_stats(kind: str, tmp_path: Path) -> None:
    source, fresh = tmp_path / "source", tmp_path / "fresh"
    source.mkdir()
    fresh.mkdir()
    source_url, fresh_url = url_of(kind, source), url_of(kind, fresh)
    events, visits = generated(400)
    assert cli(source_url, source, "sites", "add", SITE)[0] == 0
    asyncio.run(_seed(source_url, source, events, visits))
    exported = tmp_path / "events.ndjson"
    code, _, err = cli(source_url, source, "export", "--site", SITE, "--output", str(exported))
    assert code == 0, err
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(events)
    assert [json.loads(line)["event_id"] for line in lines] == [e.event_id for e in events]

    assert cli(fresh_url, fresh, "sites", "add", SITE)[0] == 0
    code, out, err = cli(fresh_url, fresh, "import", "--site", SITE, str(exported))
    assert code == 0, err
    assert f"imported {len(events)} event(s)" in out
    want = asyncio.run(_answers(source_url, source))
    got = asyncio.run(_answers(fresh_url, fresh))
    assert got == want
    total = want[0]["results"]
    assert total["events"]["value"] == len(events)  # not two empty answers
    assert total["visitors"]["value"] == len({e.visitor_id for e in events})
    assert total["visits"]["value"] == len({e.session_id for e in events})

    code, out, err = cli(fresh_url, fresh, "import", "--site", SITE, str(exported))
    assert code == 0 and f"imported 0 event(s) into {SITE} ({len(events)} already stored)" in out
    assert asyncio.run(_answers(fresh_url, fresh)) == want

    # into another site of the same store: a copy beside it (its ids were "already stored")
    copy = "copy.example"
    assert cli(source_url, source, "sites", "add", copy)[0] == 0
    for _ in range(2):  # twice: the second time, nothing new
        code, out, err = cli(source_url, source, "import", "--site", copy, str(exported))
        assert code == 0, err
    assert f"imported 0 event(s) into {copy} ({len(events)} already stored)" in out
    copied = asyncio.run(_answers(source_url, source, copy))
    assert json.loads(json.dumps(copied).replace(copy, SITE)) == want
    assert asyncio.run(_answers(source_url, source)) == want  # the original is untouched


def test_csv_and_parquet_hold_the_same_events(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    url = url_of(kind, folder)
    events, visits = generated(60)
    assert cli(url, folder, "sites", "add", SITE)[0] == 0
    asyncio.run(_seed(url, folder, events, visits))
    day = ["--from", "2026-03-11", "--to", "2026-03-11"]
    one_day = [
        e for e in events if T + DAY - 10 * 3_600_000 <= e.timestamp < T + 2 * DAY - 10 * 3_600_000
    ]
    paths = {}
    for fmt in ("ndjson", "csv", "parquet"):
        paths[fmt] = tmp_path / f"events.{fmt}"
        code, _, err = cli(url, folder, "export", "--site", SITE, *day, "--format", fmt,
                           "--output", str(paths[fmt]))  # fmt: skip
        assert code == 0, err
    records = [json.loads(line) for line in paths["ndjson"].read_text("utf-8").splitlines()]
    assert [r["event_id"] for r in records] == [e.event_id for e in one_day]
    with paths["csv"].open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["event_id"] for r in rows] == [r["event_id"] for r in records]
    for row, record in zip(rows, records, strict=True):
        assert row["title"] == record["title"]  # a quote, a comma and a line break survive
        assert row["path"] == ("'" + record["path"] if record["path"][0] == "=" else record["path"])
        assert json.loads(row["props"]) == record["props"]
        assert row["load_time_ms"] == (
            "" if record["load_time_ms"] is None else str(record["load_time_ms"])
        )
    conn = duckdb.connect()
    table = conn.execute(
        "SELECT event_id, timestamp, props, load_time_ms FROM read_parquet($p)",
        {"p": str(paths["parquet"])},
    ).fetchall()
    assert [row[0] for row in table] == [r["event_id"] for r in records]
    assert [(row[1], dict(row[2]), row[3]) for row in table] == [
        (r["timestamp"], r["props"], r["load_time_ms"]) for r in records
    ]


def test_refusals(kind: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    url = url_of(kind, folder)
    code, _, err = cli(url, folder, "export", "--site", "nobody.example")
    assert code == 1 and "nobody.example is not a registered site" in err
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"event_id": "x"}\n', encoding="utf-8")
    code, _, err = cli(url, folder, "import", "--site", "nobody.example", str(bad))
    assert code == 1 and "not a registered site" in err
    assert cli(url, folder, "sites", "add", SITE)[0] == 0
    code, _, err = cli(url, folder, "import", "--site", SITE, str(bad))
    assert code == 1 and "line 1" in err
    code, _, err = cli(url, folder, "export", "--site", SITE, "--format", "xml")
    assert code == 1 and "format" in err
    code, _, err = cli(url, folder, "export", "--site", SITE, "--format", "parquet")
    assert code == 1 and "--output" in err
