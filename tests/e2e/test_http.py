"""A real ``hitstream serve`` over HTTP: ingest, stats, errors, CORS, health and metrics."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server import ServerProcess

pytestmark = pytest.mark.e2e

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"


SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


def register_sites_of(server: ServerProcess, body: Any) -> None:
    """Register the (valid) sites an event body names: these tests are about events and
    stats, not about registration, which has tests of its own (test_access_e2e.py)."""
    for item in body if isinstance(body, list) else [body]:
        site = item.get("site_id") if isinstance(item, dict) else None
        if isinstance(site, str) and SITE_ID.fullmatch(site):
            server.add_site(site)


def post(
    server: ServerProcess, body: Any, *, ua: str = CHROME, ip: str = "81.2.69.142", **kw: Any
) -> httpx.Response:
    register_sites_of(server, body)
    headers = {"user-agent": ua, "x-forwarded-for": ip, **kw.pop("headers", {})}
    return httpx.post(f"{server.url}/api/v1/events", json=body, headers=headers, **kw)


def stats(server: ServerProcess, kind: str, **params: Any) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/api/v1/stats/{kind}", params=params, headers=server.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for(
    server: ServerProcess, site: str, events: int, timeout: float = 15.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = stats(
            server,
            "aggregate",
            site_id=site,
            period="day",
            metrics="events,visitors,visits,pageviews,bounce_rate",
        )
        if body["results"]["events"]["value"] >= events or time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_events_in_stats_out(live_server: ServerProcess) -> None:
    site = f"s{uuid.uuid4().hex[:8]}.io"
    visitor_a = [
        {
            "site_id": site,
            "url": f"https://{site}/",
            "referrer": "https://www.google.com/",
            "load_time_ms": 300,
        },
        {
            "site_id": site,
            "url": f"https://{site}/pricing",
            "referrer": f"https://{site}/",
            "load_time_ms": 500,
        },
        {
            "site_id": site,
            "type": "custom",
            "name": "signup",
            "path": "/pricing",
            "props": {"plan": "pro"},
        },
    ]
    response = post(live_server, visitor_a)
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3
    one = {
        "site_id": site,
        "url": f"https://{site}/?utm_source=newsletter&utm_medium=email",
        "load_time_ms": 900,
    }
    assert post(live_server, one, ua=IPHONE, ip="203.0.113.50").status_code == 202

    body = wait_for(live_server, site, 4)
    results = {k: v["value"] for k, v in body["results"].items()}
    assert results == {"events": 4, "visitors": 2, "visits": 2, "pageviews": 3, "bounce_rate": 50}

    sources = stats(
        live_server, "breakdown", site_id=site, period="day", property="source", metrics="visitors"
    )
    assert {r["value"]: r["visitors"] for r in sources["results"]} == {"Google": 1, "Newsletter": 1}
    channels = stats(
        live_server, "breakdown", site_id=site, period="day", property="channel", metrics="visits"
    )
    assert {r["value"]: r["visits"] for r in channels["results"]} == {
        "Organic Search": 1,
        "Email": 1,
    }
    devices = stats(
        live_server, "breakdown", site_id=site, period="day", property="device", metrics="visitors"
    )
    assert {r["value"]: r["visitors"] for r in devices["results"]} == {"desktop": 1, "mobile": 1}
    countries = stats(
        live_server, "breakdown", site_id=site, period="day", property="country", metrics="visitors"
    )
    assert {r["value"]: r["visitors"] for r in countries["results"]}["GB"] == 1
    plans = stats(
        live_server, "breakdown", site_id=site, period="day", property="prop:plan", metrics="events"
    )
    # events without the prop are the "" row (shown as "(none)"), as in a prop:plan== filter
    assert plans["results"] == [{"value": "", "events": 3}, {"value": "pro", "events": 1}]
    filtered = stats(
        live_server,
        "aggregate",
        site_id=site,
        period="day",
        metrics="pageviews,load_time_p50",
        filters="page==/pricing|/",
    )
    assert filtered["results"]["pageviews"]["value"] == 3
    assert filtered["results"]["load_time_p50"]["value"] == 500
    series = stats(
        live_server, "timeseries", site_id=site, period="day", interval="hour", metrics="pageviews"
    )
    assert sum(p["pageviews"] for p in series["results"]) == 3
    assert len(series["results"]) >= 1
    realtime = httpx.get(
        f"{live_server.url}/api/v1/stats/realtime",
        params={"site_id": site},
        headers=live_server.headers,
    ).json()
    assert realtime["visitors"] == 2
    mobile = httpx.get(
        f"{live_server.url}/api/v1/stats/realtime",
        params={"site_id": site, "filters": "device==mobile"},
        headers=live_server.headers,
    ).json()
    assert mobile["visitors"] == 1  # the filters apply, as to every stats answer
    bogus = httpx.get(
        f"{live_server.url}/api/v1/stats/realtime",
        params={"site_id": site, "filters": "bogus==1"},
        headers=live_server.headers,
    )
    assert (bogus.status_code, bogus.json()["error"]["field"]) == (400, "filters")
    # a parameter the endpoint does not take (a typo) is refused by name, not ignored
    typo = httpx.get(
        f"{live_server.url}/api/v1/stats/aggregate",
        params={"site_id": site, "perod": "7d"},
        headers=live_server.headers,
    )
    assert (typo.status_code, typo.json()["error"]["field"]) == (400, "perod")
    assert "period" in typo.json()["error"]["reason"]  # it lists what the endpoint takes
    # nor are dates without a custom period, a parameter given twice, an empty metric list,
    # on the stats and the alerts endpoints alike
    for path, params, field in [
        ("stats/aggregate", {"from": "2026-12-01", "to": "2026-12-02"}, "period"),
        ("stats/breakdown", [("period", "day"), ("period", "7d")], "period"),
        ("stats/aggregate", {"metrics": ""}, "metrics"),
        ("stats/aggregate", {"metrics": "visitors,,pageviews"}, "metrics"),
        ("stats/breakdown", {"metrics": "visitors,", "property": "page"}, "metrics"),
        ("alerts", {"bogus": "1"}, "bogus"),
    ]:
        sent = [("site_id", site), *(params.items() if isinstance(params, dict) else params)]
        refused = httpx.get(
            f"{live_server.url}/api/v1/{path}", params=sent, headers=live_server.headers
        )
        assert (refused.status_code, refused.json()["error"]["field"]) == (400, field), path
    custom = httpx.get(
        f"{live_server.url}/api/v1/stats/aggregate",
        params={"site_id": site, "period": "custom", "from": "2026-12-01", "to": "2026-12-02"},
        headers=live_server.headers,
    )
    assert custom.status_code == 200, custom.text
    listed = httpx.get(f"{live_server.url}/api/v1/sites", headers=live_server.headers).json()
    assert site in [s["site_id"] for s in listed["sites"]]


def test_bots_are_dropped_and_shown_in_quality(live_server: ServerProcess) -> None:
    site = f"b{uuid.uuid4().hex[:8]}.io"
    assert (
        post(
            live_server,
            {"site_id": site, "path": "/"},
            ua="Googlebot/2.1 (+http://www.google.com/bot.html)",
        ).status_code
        == 202
    )
    assert post(live_server, {"site_id": site, "path": "/"}).status_code == 202
    wait_for(live_server, site, 1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        quality = httpx.get(
            f"{live_server.url}/api/v1/quality",
            params={"site_id": site},
            headers=live_server.headers,
        ).json()
        if quality["dropped"]:
            break
        time.sleep(0.05)
    assert quality["dropped"] == {"bot:ua_pattern": 1}


@pytest.mark.parametrize(
    ("content", "headers", "status", "field"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "body"),
        (b"<e/>", {"content-type": "application/xml"}, 415, "content-type"),
        (
            b'{"site_id": "x.io", "type": "bogus", "path": "/"}',
            {"content-type": "application/json"},
            422,
            "type",
        ),
        (
            b'{"site_id": "x.io", "path": "/", "props": {"a": [1]}}',
            {"content-type": "application/json"},
            422,
            "props.a",
        ),
        (b"[" + b",".join([b"{}"] * 501) + b"]", {"content-type": "application/json"}, 413, "body"),
        (b"x" * (1024 * 1024 + 1), {"content-type": "application/json"}, 413, "body"),
    ],
)
def test_bad_input_is_a_named_4xx_never_5xx(
    live_server: ServerProcess, content: bytes, headers: dict[str, str], status: int, field: str
) -> None:
    live_server.add_site("x.io")
    response = httpx.post(f"{live_server.url}/api/v1/events", content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field
    assert response.json()["error"]["reason"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "site_id"),
        ({"site_id": "a", "period": "year"}, "period"),
        ({"site_id": "a", "metrics": "visitors,money"}, "metrics"),
        ({"site_id": "a", "filters": "planet==mars"}, "filters"),
        ({"site_id": "a", "period": "custom", "from": "2026-01-05"}, "to"),
        ({"site_id": "a", "tz": "Mars/Olympus"}, "tz"),
        ({"site_id": "a", "compare": "yesterday"}, "compare"),
    ],
)
def test_bad_queries_are_named_400s(
    live_server: ServerProcess, params: dict[str, str], field: str
) -> None:
    live_server.add_site("a")
    response = httpx.get(
        f"{live_server.url}/api/v1/stats/aggregate", params=params, headers=live_server.headers
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["field"] == field


def test_a_nul_character_is_a_named_400_wherever_it_comes(live_server: ServerProcess) -> None:
    """No store holds or compares a NUL (PostgreSQL refuses the text): in an event's
    property, a query parameter, a path, a user's email or a goal's property it is refused
    by name, never accepted (an event blocked the processor) nor a 503."""
    site = "nul.e2e.test"
    live_server.add_site(site)
    event = {"site_id": site, "path": "/", "props": {"k": "a\x00b"}}
    sent = httpx.post(
        f"{live_server.url}/api/v1/events", json=event, headers={"User-Agent": CHROME}
    )
    assert sent.status_code == 422, sent.text
    assert sent.json()["rejected"][0]["errors"][0]["field"] == "props.k"
    h = live_server.headers
    asked: list[tuple[str, str, Any, str]] = [
        ("GET", "/api/v1/stats/aggregate", {"site_id": site, "filters": "page==\x00"}, "filters"),
        ("GET", "/api/v1/stats/breakdown", {"site_id": site, "property": "prop:a\x00"}, "property"),
        ("GET", "/api/v1/funnel", [("site_id", site), ("step", "page==/\x00"), ("step", "page==/")],
         "step"),
        ("DELETE", f"/api/v1/sites/{site}/users/%00", None, "path"),
    ]  # fmt: skip
    for method, path, params, field in asked:
        answer = httpx.request(method, f"{live_server.url}{path}", params=params, headers=h)
        assert (answer.status_code, answer.json()["error"]["field"]) == (400, field), path
    bodies = [
        ("/api/v1/users", {"email": "a\x00@b.c", "role": "viewer", "password": "x" * 12}, "email"),
        (f"/api/v1/sites/{site}/goals", {"name": "G", "event_name": "e", "props": {"k": "v\x00"}},
         "props"),
    ]  # fmt: skip
    for path, body, field in bodies:
        answer = httpx.post(f"{live_server.url}{path}", json=body, headers=h)
        assert (answer.status_code, answer.json()["error"]["field"]) == (400, field), path


def test_rejections_are_counted_by_reason_in_metrics(live_server: ServerProcess) -> None:
    live_server.add_site("m.io")
    httpx.post(
        f"{live_server.url}/api/v1/events", json={"site_id": "m.io", "path": "/", "title": 7}
    )
    text = httpx.get(f"{live_server.url}/metrics").text
    assert 'hitstream_events_rejected_total{field="title",reason="must be a string"}' in text
    assert "hitstream_events_accepted_total" in text


def test_cors_answers_the_hosts_of_registered_sites_only(live_server: ServerProcess) -> None:
    live_server.add_site("shop.example")

    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{live_server.url}/api/v1/events",
            headers={
                "origin": origin,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type",
            },
        )

    allowed = preflight("https://www.shop.example")  # a subdomain: allowed by default
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "https://www.shop.example"
    foreign = preflight("https://evil.example")
    assert foreign.status_code == 403
    assert "access-control-allow-origin" not in foreign.headers
    response = post(
        live_server,
        {"site_id": "shop.example", "path": "/"},
        headers={"origin": "https://shop.example"},
    )
    assert response.status_code == 202
    assert response.headers["access-control-allow-origin"] == "https://shop.example"
    read = httpx.options(  # the read API: the dashboard's own origin only
        f"{live_server.url}/api/v1/stats/aggregate",
        headers={"origin": "https://shop.example", "access-control-request-method": "GET"},
    )
    assert read.status_code == 403


def test_health_readiness_docs(live_server: ServerProcess) -> None:
    assert httpx.get(f"{live_server.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live_server.url}/readyz").json()
    assert ready["status"] == "ready"
    assert {name: check["adapter"] for name, check in ready["checks"].items()} == {
        "log": "sqlite",
        "store": "socket",  # the DuckDB file held by serve's processor process, over its socket
        "fanout": "memory",
        "cache": "memory",
        "disk": "disk",
    }
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    assert {
        "/api/v1/events",
        "/api/v1/stats/aggregate",
        "/api/v1/stats/breakdown",
        "/api/v1/stats/timeseries",
        "/api/v1/stats/realtime",
    } <= set(spec["paths"])
    assert httpx.get(f"{live_server.url}/docs").status_code == 200
    missing = httpx.get(f"{live_server.url}/nope")
    assert missing.status_code == 404
    assert missing.json()["error"]["field"] == "path"


def test_a_body_in_chunks_is_read_whole_and_a_cut_one_refused(
    live_server: ServerProcess,
) -> None:
    """A body without a declared length (chunked) is read chunk by chunk, as a declared
    one is read at once; one that exceeds the cap while arriving is refused, never cut."""
    site = f"chunked-{uuid.uuid4().hex[:8]}.example"
    live_server.add_site(site)
    events = [
        {"site_id": site, "type": "pageview", "url": f"https://{site}/p{n}"} for n in range(3)
    ]
    payload = json.dumps(events).encode()

    def pieces(data: bytes, size: int) -> Iterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    url = f"{live_server.url}/api/v1/events"
    headers = {"content-type": "application/json", "user-agent": CHROME}
    sent = httpx.post(url, content=pieces(payload, 7), headers=headers)
    assert "content-length" not in sent.request.headers  # chunked, as meant
    assert sent.status_code == 202, sent.text
    assert sent.json()["accepted"] == 3
    too_big = httpx.post(url, content=pieces(b" " * (1024 * 1024 + 1), 65536), headers=headers)
    assert too_big.status_code == 413, too_big.text
    assert too_big.json()["error"]["field"] == "body"
    assert wait_for(live_server, site, 3)["results"]["pageviews"]["value"] == 3


def test_replay_works_while_serve_holds_the_store(live_server: ServerProcess) -> None:
    """``hitstream replay`` beside a running ``serve`` goes through its control socket, as
    ``sites`` and ``forget`` do (it waited for the embedded file's lock until stopped)."""
    import os
    import subprocess
    import sys

    site = f"r{uuid.uuid4().hex[:8]}.io"
    for n in range(3):
        assert post(live_server, {"site_id": site, "path": f"/p{n}"}).status_code == 202
    assert wait_for(live_server, site, 3)["results"]["events"]["value"] == 3
    env = {**os.environ, "HITSTREAM_DATA_DIR": str(live_server.data_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "hitstream.cli", "replay", "--from-offset", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    replayed = re.search(r"replayed (\d+) message\(s\); (\d+) event\(s\) were new", done.stdout)
    assert replayed is not None, done.stdout
    assert int(replayed.group(1)) >= 3 and replayed.group(2) == "0"  # every one stored already
    assert wait_for(live_server, site, 3)["results"]["events"]["value"] == 3
