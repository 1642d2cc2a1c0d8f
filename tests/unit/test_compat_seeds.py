"""The seeds' clients against one in-process hitstream (every role, memory adapters, the real
processor): each example request of the five seed documents (and other values), the answer's
shape, and the Stats API numbers that result, counted here from what the test sent."""

from __future__ import annotations

import json
import statistics
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocketDisconnect

from hitstream.bootstrap import Runtime, build
from hitstream.log.memory import MemoryLog
from hitstream.services import wire
from hitstream.services.accounts import Accounts
from hitstream.settings import Settings
from hitstream.web.app import create_app
from tests.access import admin_key, bearer
from tests.midnight import clear_of_midnight

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
S000 = "example.com"  # seed 000's POST /event, GET /analytics, /ws
S004 = "actions.example"  # seed 004's POST /event, JSON /metrics
S001 = "site-abc-123"  # seed 001 names its site in the body
S001_DEFAULT = "events.example"
S002 = "ingest.example"  # seed 002's page_url is on example.com
S003 = "portfolio.example"
PUBLIC = "public.example"
SITES = [
    {"site_id": S000},
    {"site_id": S004},
    {"site_id": S001},
    {"site_id": S001_DEFAULT},
    {"site_id": S002, "allowed_hosts": ["example.com"]},
    {"site_id": S003},
    {"site_id": PUBLIC, "public": True},
]


def now_iso(minutes_ago: float = 0) -> str:
    moment = datetime.now(tz=UTC) - timedelta(minutes=minutes_ago)
    return moment.isoformat().replace("+00:00", "Z")


class Seeds:
    """The client, its runtime and the credentials a test needs."""

    def __init__(self, client: TestClient, runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime
        portal = client.portal
        assert portal is not None
        self.admin = bearer(portal.call(admin_key, runtime.store))
        accounts = Accounts(runtime.store)
        self.keys = {
            (site, scope): portal.call(accounts.create_key, site, scope)[0]
            for site in (S000, S004, S002)
            for scope in ("read", "write")
        }

    def key(self, site: str, scope: str) -> dict[str, str]:
        return bearer(self.keys[(site, scope)])

    def post(self, path: str, body: Any, ua: str = CHROME, **headers: str) -> Any:
        return self.client.post(path, json=body, headers={"user-agent": ua, **headers})

    def stats(self, kind: str, **params: Any) -> dict[str, Any]:
        answer = self.client.get(f"/api/v1/stats/{kind}", params=params, headers=self.admin)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def events(self, site: str, **params: Any) -> int:
        body = self.stats("aggregate", site_id=site, period="day", metrics="events", **params)
        return int(body["results"]["events"]["value"])

    def wait(self, site: str, events: int) -> None:
        """Until the processor has stored ``events`` events of the site (or fail)."""
        deadline = time.monotonic() + 20
        while self.events(site) < events:
            assert time.monotonic() < deadline, f"{site}: fewer than {events} events stored"
            time.sleep(0.02)
        assert self.events(site) == events


@pytest.fixture
def seeds(tmp_path: Path) -> Iterator[Seeds]:
    clear_of_midnight()
    settings = Settings(
        data_dir=tmp_path,
        log_url="memory://",
        store_url="memory://",
        cache_url="memory://",
        metrics_token="m-token",
        sites=json.dumps(SITES),
        compat_site=S001_DEFAULT,
        compat_site_event=S000,
        compat_site_action=S004,
        compat_site_ingest=S002,
        compat_site_api_analytics=S003,
        batch_max_wait_ms=5,
    )
    runtime = build(settings)
    with TestClient(create_app(runtime.services, lifecycle=runtime)) as client:
        yield Seeds(started(client), runtime)


def started(client: TestClient) -> TestClient:
    """The app once its start-up (in the background: its port opens first) is done."""
    for _ in range(1000):
        if client.get("/readyz").json().get("status") != "starting":
            return client
        time.sleep(0.01)
    raise AssertionError("the app did not finish starting in 10 s")


# -- seed 000: POST /event, GET /analytics, GET /health, /ws -----------------------------------

PAGE_VIEW = {  # the request body of seed 000's "POST /event", verbatim
    "type": "page_view",
    "user_id": "user123",
    "session_id": "session456",
    "url": "https://example.com/home",
    "path": "/home",
    "referrer": "https://google.com",
    "user_agent": "Mozilla/5.0",
    "ip_address": "192.168.1.1",
    "metadata": {"page_title": "Home Page", "load_time": 1200},
}
CLICK = {
    "type": "click",
    "user_id": "user123",
    "session_id": "session456",
    "url": "https://example.com/products",
    "path": "/products",
    "metadata": {"element_id": "buy-button", "element_type": "button", "element_text": "Buy Now"},
}
SESSION = {
    "type": "session",
    "user_id": "user123",
    "session_id": "session456",
    "url": "https://example.com",
    "path": "/",
    "metadata": {"duration": 300, "page_count": 5, "device": "desktop", "browser": "Chrome"},
}
PAGE_VIEW_EVENT = {  # "Event Types: Page View Event"
    "type": "page_view",
    "user_id": "user123",
    "session_id": "session456",
    "url": "https://example.com/home",
    "path": "/home",
    "metadata": {"page_title": "Home Page", "load_time": 1200},
}
TESTING = {  # the README's curl example
    "type": "page_view",
    "user_id": "user123",
    "session_id": "session456",
    "url": "https://example.com/home",
    "path": "/home",
}


def p50(values: list[float]) -> float:
    return float(statistics.quantiles(values, n=100, method="inclusive")[49])


def test_seed000_events_give_the_analytics_snapshot_and_the_stats_api_numbers(
    seeds: Seeds,
) -> None:
    sent: list[tuple[dict[str, Any], str]] = [
        (PAGE_VIEW, CHROME),
        (PAGE_VIEW_EVENT, CHROME),
        (CLICK, CHROME),
        (SESSION, CHROME),
        (TESTING, CHROME),
        (
            {
                "type": "page_view",
                "user_id": "user9",
                "session_id": "s9",
                "url": "https://example.com/pricing",
                "path": "/pricing",
                "referrer": "https://www.bing.com/search?q=x",
                "metadata": {"page_title": "Pricing", "load_time": 400},
            },
            IPHONE,
        ),
        (
            {"type": "page_view", "user_id": "user9", "session_id": "s9", "path": "/home"},
            IPHONE,
        ),
        (
            {
                "type": "signup",
                "user_id": "user9",
                "session_id": "s9",
                "path": "/pricing",
                "metadata": {"plan": "pro"},
            },
            IPHONE,
        ),
        (
            {"type": "page_view", "user_id": "user7", "session_id": "s7", "path": "/home"},
            CHROME,
        ),
    ]
    for body, ua in sent:
        answer = seeds.post("/event", body, ua=ua)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted" and len(answer.json()["id"]) == 36
    seeds.wait(S000, len(sent))

    bodies = [body for body, _ in sent]
    types = Counter(
        {"page_view": "page_view", "click": "click", "session": "session"}.get(b["type"], b["type"])
        for b in bodies
    )
    users = {b["user_id"] for b in bodies}
    views = [b for b in bodies if b["type"] == "page_view"]
    by_page = Counter(b["path"] for b in views)
    user_device = {b["user_id"]: {CHROME: "desktop", IPHONE: "mobile"}[ua] for b, ua in sent}
    devices = Counter(user_device.values())
    load_times = [b["metadata"]["load_time"] for b in views if "load_time" in b.get("metadata", {})]

    answer = seeds.client.get("/analytics", headers=seeds.admin)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert set(got) == {
        "timestamp",
        "total_events",
        "unique_users",
        "active_sessions",
        "events_by_type",
        "top_pages",
        "traffic_sources",
        "device_stats",
        "browser_stats",
        "hourly_page_views",
        "performance_metrics",
    }
    assert got["total_events"] == len(sent)
    assert got["unique_users"] == len(users)
    assert got["active_sessions"] == len({b["session_id"] for b in bodies})
    assert got["events_by_type"] == dict(types)
    assert {p["path"]: p["views"] for p in got["top_pages"]} == dict(by_page)
    assert got["device_stats"] == dict(devices)
    assert sum(got["browser_stats"].values()) == len(users)
    assert sum(h["views"] for h in got["hourly_page_views"]) == len(views)
    sources = {s["source"]: s["users"] for s in got["traffic_sources"]}
    assert sources["Google"] == 1 and sources["Bing"] == 1
    assert got["performance_metrics"]["load_time_p50_ms"] == p50(load_times)
    assert got["performance_metrics"]["page_views"] == len(views) > len(load_times)
    datetime.fromisoformat(got["timestamp"].replace("Z", "+00:00"))

    # the same numbers from the Stats API, and the seed's fields where they were kept
    totals = seeds.stats(
        "aggregate", site_id=S000, period="day", metrics="events,visitors,pageviews"
    )["results"]
    assert (totals["events"]["value"], totals["visitors"]["value"]) == (len(sent), len(users))
    assert totals["pageviews"]["value"] == len(views)
    elements = seeds.stats(
        "breakdown", site_id=S000, period="day", property="prop:element_text", metrics="events"
    )["results"]
    assert {"value": "Buy Now", "events": 1} in elements
    per_user = seeds.stats(
        "breakdown", site_id=S000, period="day", property="user_id", metrics="events"
    )["results"]
    assert {r["value"]: r["events"] for r in per_user} == dict(
        Counter(b["user_id"] for b in bodies)
    )
    durations = seeds.stats(
        "breakdown", site_id=S000, period="day", property="prop:duration", metrics="events"
    )["results"]
    assert {"value": "300000", "events": 1} in durations  # seconds, kept in ms


def test_seed000_ip_and_user_agent_are_believed_from_a_write_key_only(seeds: Seeds) -> None:
    """Without a key the connection's User-Agent counts (desktop); with the site's write key
    the one in the body does (mobile). Neither is stored: the device is what is kept."""
    body = {"type": "page_view", "path": "/", "user_agent": IPHONE, "ip_address": "81.2.69.142"}
    assert seeds.post("/event", body).status_code == 202
    keyed = seeds.post("/event", body, **seeds.key(S000, "write"))
    assert keyed.status_code == 202, keyed.text
    read_key = seeds.post("/event", body, **seeds.key(S000, "read"))  # may not send
    assert read_key.status_code == 422 and read_key.json()["error"]["field"] == "site_id"
    seeds.wait(S000, 2)
    devices = seeds.stats(
        "breakdown", site_id=S000, period="day", property="device", metrics="events"
    )["results"]
    assert {r["value"]: r["events"] for r in devices} == {"desktop": 1, "mobile": 1}
    countries = seeds.stats(
        "breakdown", site_id=S000, period="day", property="country", metrics="events"
    )["results"]
    assert {"value": "GB", "events": 1} in countries  # 81.2.69.142, from the key's body
    # never kept as props either, whatever the body calls them
    extra = {"event_type": "click", "page": "/", "ip": "81.2.69.142", "user_agent": IPHONE}
    assert seeds.post("/api/analytics", extra).status_code == 202
    seeds.wait(S003, 1)
    for prop in ("ip", "user_agent"):
        values = seeds.stats(
            "breakdown", site_id=S003, period="day", property=f"prop:{prop}", metrics="events"
        )["results"]
        assert values == [{"value": "", "events": 1}], prop
    bad = seeds.post("/event", {**body, "ip_address": "not-an-ip"}, **seeds.key(S000, "write"))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "ip_address"


def test_seed000_and_seed003_health(seeds: Seeds) -> None:
    answer = seeds.client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {"status": "healthy", "service": "analytics-producer"}
    log = seeds.runtime.log
    assert isinstance(log, MemoryLog)
    log.available = False  # the event log stops taking appends
    try:
        down = seeds.client.get("/health")
        assert down.status_code == 503 and down.json()["status"] == "unhealthy"
        api = seeds.client.get("/api/health")
        assert api.status_code == 503
        assert api.json() == {"status": "unhealthy", "database": "connected"}  # the store is up
    finally:
        log.available = True


def test_seed000_websocket_sends_snapshot_update_and_real_time_events(seeds: Seeds) -> None:
    with seeds.client.websocket_connect("/ws", headers=seeds.key(S000, "read")) as socket:
        first = socket.receive_json()
        assert first["type"] == "analytics_snapshot"
        assert first["data"]["total_events"] == 0
        assert seeds.post("/event", CLICK).status_code == 202
        seen: dict[str, Any] = {}
        while "real_time_event" not in seen or "analytics_update" not in seen:
            message = socket.receive_json()
            if message["type"] == "analytics_update" and message["data"]["total_events"] == 0:
                continue  # an update computed before the click was stored
            seen.setdefault(message["type"], message["data"])
        assert seen["real_time_event"]["type"] == "click"
        assert seen["real_time_event"]["path"] == "/products"
        assert seen["real_time_event"]["metadata"]["element_id"] == "buy-button"
        assert seen["analytics_update"]["total_events"] == 1
        assert seen["analytics_update"]["events_by_type"] == {"click": 1}


def test_seed000_websocket_is_refused_without_a_credential_that_reads_the_site(
    seeds: Seeds,
) -> None:
    for headers, code in [({}, 4401), (seeds.key(S004, "read"), 4403)]:
        with seeds.client.websocket_connect("/ws", headers=headers) as socket:
            assert socket.receive_json()["type"] == "error"
            with pytest.raises(WebSocketDisconnect) as closed:
                socket.receive_json()
        assert closed.value.code == code


# -- seed 004: POST /event (user actions), JSON GET /metrics -----------------------------------


def test_seed004_actions_give_the_json_metrics(seeds: Seeds) -> None:
    example = {  # seed 004's body; its timestamp (2024) is older than the collector takes
        "user_id": "user_123",
        "action": "play",
        "element": "video_player",
        "duration": 12.5,
        "timestamp": "2024-01-15T10:30:00Z",
    }
    old = seeds.post("/event", example)
    assert old.status_code == 422 and old.json()["error"]["field"] == "timestamp"
    sent: list[dict[str, Any]] = [
        {**example, "timestamp": now_iso(1)},
        {"user_id": "user_123", "action": "pause", "element": "video_player", "duration": 3},
        {"user_id": "user_456", "action": "like", "element": "like_button", "duration": 0.5},
        {"user_id": "user_789", "action": "like", "element": "like_button"},
        {"user_id": "user_789", "action": "play", "element": "video_player", "duration": 40.25},
    ]
    for body in sent:
        answer = seeds.post("/event", body)
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "accepted"
    seeds.wait(S004, len(sent))
    durations = [b["duration"] for b in sent if "duration" in b]
    elements = Counter(b["element"] for b in sent)

    today = datetime.now(UTC).date().isoformat()
    asks: list[tuple[dict[str, str], dict[str, str]]] = [
        ({"format": "json"}, {}),
        ({}, {"accept": "application/json"}),
        ({"format": "json", "period": "custom", "from": today, "to": today}, {}),  # days read
    ]
    for params, accept in asks:
        headers = {**accept, **seeds.key(S004, "read")}
        answer = seeds.client.get("/metrics", params=params, headers=headers)
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert got["active_users"] == len({b["user_id"] for b in sent})
        assert got["events_per_min"] == round(len(sent) / 5, 2)
        assert got["avg_duration"] == round(statistics.mean(durations), 3)
        assert got["top_elements"] == [
            {"element": e, "count": n} for e, n in elements.most_common()
        ]
    # the Stats API's own numbers for the same events
    names = seeds.stats(
        "breakdown", site_id=S004, period="day", property="event_name", metrics="events"
    )["results"]
    assert {r["value"]: r["events"] for r in names} == dict(Counter(b["action"] for b in sent))
    # Prometheus scrapers keep the text exposition and its token
    assert seeds.client.get("/metrics").status_code == 401
    text = seeds.client.get("/metrics", headers=bearer("m-token"))
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert "hitstream_events_accepted_total" in text.text
    prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3"
    scraped = seeds.client.get("/metrics", headers={"accept": prometheus, **bearer("m-token")})
    assert scraped.headers["content-type"].startswith("text/plain")
    # the JSON reads the site: a credential that cannot is refused
    assert seeds.client.get("/metrics?format=json").status_code == 401
    assert seeds.client.get("/metrics?format=json", headers=bearer("m-token")).status_code == 403


# -- seed 001: POST /events, GET /stats --------------------------------------------------------


def test_seed001_events_and_daily_stats(seeds: Seeds) -> None:
    example = {
        "site_id": "site-abc-123",
        "event_type": "page_view",
        "path": "/home",
        "user_id": "user-001",
        "timestamp": "2025-11-15T05:00:00Z",
    }
    old = seeds.post("/events", example)
    assert old.status_code == 422 and old.json()["error"]["field"] == "timestamp"
    recent = {**example, "timestamp": now_iso()}
    sent = [
        recent,
        {**recent, "user_id": "user-002"},
        {**recent, "path": "/products", "user_id": "user-003"},
        {**recent, "event_type": "click", "path": "/products"},
        {k: v for k, v in recent.items() if k != "timestamp"},  # receipt time
        {**recent, "site_id": S001.upper(), "user_id": "user-004"},  # the site in capitals
    ]
    for body in sent:
        answer = seeds.post("/events", body)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"message": "Event accepted"}
    seeds.wait(S001, len(sent))
    views = [b for b in sent if b["event_type"] == "page_view"]
    today = datetime.now(tz=UTC).date().isoformat()
    answer = seeds.client.get(
        "/stats", params={"site_id": S001, "date": today}, headers=seeds.admin
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "site_id": S001,
        "date": today,
        "total_views": len(views),
        "unique_users": len({b["user_id"] for b in sent}),
        "top_paths": [
            {"path": path, "views": n}
            for path, n in sorted(Counter(b["path"] for b in views).items(), key=lambda x: -x[1])
        ],
    }
    verbatim = seeds.client.get("/stats?site_id=site-abc-123&date=2025-11-15", headers=seeds.admin)
    assert verbatim.json() == {
        "site_id": "site-abc-123",
        "date": "2025-11-15",
        "total_views": 0,  # that day's example event was refused as too old
        "unique_users": 0,
        "top_paths": [],
    }
    yesterday = (datetime.now(tz=UTC).date() - timedelta(days=1)).isoformat()
    empty = seeds.client.get(
        "/stats", params={"site_id": S001, "date": yesterday}, headers=seeds.admin
    ).json()
    assert (empty["total_views"], empty["top_paths"]) == (0, [])
    # without a site_id: the configured one
    no_site = {k: v for k, v in sent[0].items() if k != "site_id"}
    assert seeds.post("/events", no_site).status_code == 202
    seeds.wait(S001_DEFAULT, 1)
    default = seeds.client.get("/stats", params={"date": today}, headers=seeds.admin).json()
    assert (default["site_id"], default["total_views"]) == (S001_DEFAULT, 1)
    # named refusals
    missing = seeds.client.get("/stats", params={"site_id": S001}, headers=seeds.admin)
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "date"
    bad = seeds.client.get(
        "/stats", params={"site_id": S001, "date": "15/11/2025"}, headers=seeds.admin
    )
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "date"
    for day in ("9999-12-31", "0001-01-01"):  # no day after it, no year before it: a 500
        edge = seeds.client.get(
            "/stats", params={"site_id": S001, "date": day}, headers=seeds.admin
        )
        assert (edge.status_code, edge.json()["error"]["field"]) == (400, "date"), day
    unknown = seeds.post("/events", {**sent[0], "site_id": "nope.example"})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "site_id"


# -- seed 002: POST /ingest, GET /analytics/events ---------------------------------------------


def test_seed002_ingest_and_per_user_page_counts(seeds: Seeds) -> None:
    quick_start = {
        "event_id": "test_123",
        "user_id": "user_1",
        "event_type": "click",
        "page_url": "https://example.com",
        "time_stamp": "2025-11-05T20:00:00Z",
    }
    old = seeds.post("/ingest", quick_start)
    assert old.status_code == 422 and old.json()["error"]["field"] == "time_stamp"
    demo = {"event_id": "demo_1", "user_id": "user_123", "event_type": "click", "page_url": "/docs"}
    sent = [
        {**quick_start, "time_stamp": now_iso()},
        demo,
        {**demo, "event_id": "demo_2"},
        {**demo, "event_id": "demo_3", "user_id": "user_1"},
        {"event_id": "v1", "user_id": "user_1", "event_type": "page_view", "page_url": "/docs"},
        {"event_id": "c9", "user_id": "user_1", "event_type": "click", "page_url": "/docs"},
    ]
    for body in sent:
        answer = seeds.post("/ingest", body)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"status": "accepted", "event_id": body["event_id"]}
    assert seeds.post("/ingest", demo).status_code == 202  # the same event_id: stored once
    seeds.wait(S002, len(sent))

    def count(user: str | None, page: str | None) -> tuple[int, int]:
        """Events and clicks of ``sent`` for a user and page (None: any)."""
        mine = [
            b
            for b in sent
            if (user is None or b["user_id"] == user)
            and (page is None or (b["page_url"].removeprefix("https://example.com") or "/") == page)
        ]
        return len(mine), sum(1 for b in mine if b["event_type"] == "click")

    cases = [("user_1", "https://example.com"), ("user_123", "/docs"), ("user_1", "/docs")]
    for user, page in cases:
        expected = count(user, page if page.startswith("/") else "/")
        as_body = seeds.client.request(
            "GET",
            "/analytics/events",
            json={"user_id": user, "page_url": page},
            headers=seeds.admin,
        )
        as_query = seeds.client.get(
            "/analytics/events", params={"user_id": user, "page_url": page}, headers=seeds.admin
        )
        for answer in (as_body, as_query):
            assert answer.status_code == 200, answer.text
            got = answer.json()
            assert (got["user_id"], got["page_url"]) == (user, page)
            assert (got["event_count"], got["click_count"]) == expected, (user, page)
    only_user = seeds.client.get(
        "/analytics/events", params={"user_id": "user_1"}, headers=seeds.admin
    ).json()
    assert only_user["event_count"] == count("user_1", None)[0]
    neither = seeds.client.get("/analytics/events", headers=seeds.admin)
    assert neither.status_code == 400 and neither.json()["error"]["field"] == "user_id"
    broken = seeds.client.request("GET", "/analytics/events", content=b"{nope", headers=seeds.admin)
    assert broken.status_code == 400 and broken.json()["error"]["field"] == "body"
    nul = seeds.client.request(
        "GET", "/analytics/events", json={"user_id": "u\u0000"}, headers=seeds.admin
    )  # it named "filters", which the client never sent
    assert (nul.status_code, nul.json()["error"]["field"]) == (400, "user_id")
    padded = {"user_id": "user_1", "pad": "x" * 4096}  # the body's limit is 4096 bytes
    big = seeds.client.request("GET", "/analytics/events", json=padded, headers=seeds.admin)
    assert (big.status_code, big.json()["error"]["field"]) == (413, "body")
    empty = json.dumps({"user_id": "user_1", "pad": ""}, separators=(",", ":"))
    at_limit = json.dumps(
        {"user_id": "user_1", "pad": "x" * (4096 - len(empty))}, separators=(",", ":")
    )
    assert len(at_limit) == 4096
    fits = seeds.client.request("GET", "/analytics/events", content=at_limit, headers=seeds.admin)
    assert fits.status_code == 200 and fits.json()["event_count"] == count("user_1", None)[0]


# -- seed 003: POST /api/analytics, GET /api/stats, GET /api/health ----------------------------


def test_seed003_events_stats_and_health(seeds: Seeds) -> None:
    example = {
        "event_type": "page_view",
        "page": "/",
        "session_id": "session-123",
        "timestamp": "2025-11-16T05:38:00Z",
        "screen_width": 1920,
        "screen_height": 1080,
    }
    old = seeds.post("/api/analytics", example)
    assert old.status_code == 422 and old.json()["error"]["field"] == "timestamp"
    sent: list[dict[str, Any]] = [
        {**example, "timestamp": now_iso()},
        {**example, "page": "/projects", "timestamp": now_iso()},
        {"event_type": "click", "page": "/projects", "session_id": "session-123", "button": "gh"},
        {"event_type": "time_spent", "page": "/", "session_id": "session-9", "seconds": 42},
        {"event_type": "navigation", "page": "/about", "session_id": "session-9"},
        {"event_type": "time_spent", "page": "/about", "session_id": "session-9", "seconds": 7},
    ]
    told: dict[str, tuple[int, int]] = {}
    for body in sent:
        answer = seeds.post("/api/analytics", body)
        assert answer.status_code == 202, answer.text
        got = answer.json()
        assert (got["status"], got["message"]) == ("success", "Event queued")
        told[got["id"]] = (got["partition"], got["offset"])
    seeds.wait(S003, len(sent))
    # partition and offset are where the log holds each event (read back from the log)

    async def read_log() -> dict[str, tuple[int, int]]:
        async def from_start(_: int) -> int:
            return 0

        consumer = seeds.runtime.log.consumer("compat-test", from_start)
        found: dict[str, tuple[int, int]] = {}
        try:
            while batch := await consumer.poll(1000, 0.2):
                for message in batch:
                    event_id = wire.decode(message.value).event_id
                    found[event_id] = (message.partition, message.offset)
        finally:
            await consumer.close()
        return found

    portal = seeds.client.portal
    assert portal is not None
    found = portal.call(read_log)
    assert {i: found[i] for i in told} == told
    answer = seeds.client.get("/api/stats", headers=seeds.admin)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "total_events": len(sent),
        "events_by_type": dict(Counter(b["event_type"] for b in sent)),
    }
    # its total and its rows are read together, at one data version (read apart, an event
    # stored between them once made them disagree: 16 events, 21 by type)
    stats = seeds.runtime.stats
    assert stats is not None
    calls: list[int] = []
    answer_all = stats.answer_all

    async def counted(site_id: str, asks: Any) -> Any:
        calls.append(len(asks))
        return await answer_all(site_id, asks)

    stats.answer_all = counted  # type: ignore[method-assign]
    again = seeds.client.get("/api/stats", params={"period": "7d"}, headers=seeds.admin)
    assert again.status_code == 200 and calls == [3], (again.text, calls)
    heights = seeds.stats(
        "breakdown", site_id=S003, period="day", property="prop:screen_height", metrics="events"
    )["results"]
    assert {"value": "1080", "events": 2} in heights
    health = seeds.client.get("/api/health")
    assert health.status_code == 200
    assert health.json() == {"status": "healthy", "database": "connected"}


# -- bad bodies, refusals counted, access ------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content", "status", "field"),
    [
        ("/event", b"{not json", 400, "body"),
        ("/event", b"[1, 2]", 422, "body"),
        (
            "/event",
            json.dumps({**PAGE_VIEW, "metadata": {"load_time": "slow"}}),
            422,
            "metadata.load_time",
        ),
        ("/event", json.dumps({**PAGE_VIEW, "metadata": [1]}), 422, "metadata"),
        ("/event", json.dumps({**PAGE_VIEW, "type": 5}), 422, "type"),
        ("/event", json.dumps({"action": "play", "duration": "long"}), 422, "duration"),
        ("/event", json.dumps({"action": None, "element": "x"}), 422, "action"),
        ("/events", json.dumps({"site_id": 7, "path": "/"}), 422, "site_id"),
        ("/ingest", json.dumps({"event_id": "a b", "page_url": "/"}), 422, "event_id"),
        ("/ingest", json.dumps({"page_url": "ftp://x"}), 422, "page_url"),
        ("/ingest", json.dumps({}), 422, "page_url"),  # was a click on no page
        ("/ingest", json.dumps({"user_id": "u", "event_type": "click"}), 422, "page_url"),
        ("/api/analytics", json.dumps({"page": "/", "screen_width": -1}), 422, "screen_width"),
        ("/api/analytics", json.dumps({"page": "/", "extra": {"a": 1}}), 422, "extra"),
    ],
)
def test_bad_bodies_are_named_4xx_and_counted(
    seeds: Seeds, path: str, content: str | bytes, status: int, field: str
) -> None:
    collector = seeds.runtime.collector
    assert collector is not None
    before = sum(collector.rejections.values())
    answer = seeds.client.post(
        path, content=content, headers={"content-type": "application/json", "user-agent": CHROME}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["field"] == field
    assert sum(collector.rejections.values()) == before + 1


def test_a_wrong_content_type_is_415(seeds: Seeds) -> None:
    answer = seeds.client.post("/event", content=b"<e/>", headers={"content-type": "text/xml"})
    assert answer.status_code == 415 and answer.json()["error"]["field"] == "content-type"


READS = ["/analytics", f"/stats?site_id={S001}&date=2026-01-01", "/analytics/events?user_id=u"]
READS += ["/api/stats", "/metrics?format=json"]


@pytest.mark.parametrize("path", READS)
def test_reads_of_a_private_site_need_a_credential_that_reads_it(seeds: Seeds, path: str) -> None:
    anonymous = seeds.client.get(path)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.json()["error"]["field"] == "authorization"
    other_site = S000 if path.startswith("/metrics") else S004  # a read key of another site
    other = seeds.client.get(path, headers=seeds.key(other_site, "read"))
    assert other.status_code == 403, other.text
    writer = seeds.client.get(path, headers=seeds.key(S002, "write"))
    assert writer.status_code == 403  # a write key sends; it does not read


def test_a_public_site_is_read_without_a_credential(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        log_url="memory://",
        store_url="memory://",
        cache_url="memory://",
        sites=json.dumps(SITES),
        compat_site=PUBLIC,
    )
    runtime = build(settings)
    with TestClient(create_app(runtime.services, lifecycle=runtime)) as client:
        started(client)
        for path in ("/analytics", "/api/stats", "/metrics?format=json"):
            assert client.get(path).status_code == 200, path


def test_without_a_configured_site_a_write_is_refused_by_name(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, log_url="memory://", store_url="memory://", cache_url="memory://"
    )
    runtime = build(settings)
    with TestClient(create_app(runtime.services, lifecycle=runtime)) as client:
        started(client)
        answer = client.post("/event", json=TESTING, headers={"user-agent": CHROME})
        assert answer.status_code == 422
        assert answer.json()["error"]["field"] == "site_id"
        assert "HITSTREAM_COMPAT_SITE" in answer.json()["error"]["reason"]


def test_browsers_on_a_sites_hosts_may_send_to_the_seed_endpoints(seeds: Seeds) -> None:
    """CORS answers the seeds' write paths like ``/api/v1/events``: an Origin that is an
    allowed host of a registered site may send, any other gets no CORS (preflight 403)."""
    ask = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type",
    }
    for path in ("/event", "/events", "/ingest", "/api/analytics"):
        ok = seeds.client.options(path, headers={"origin": "https://example.com", **ask})
        assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == (
            "https://example.com"
        )
        evil = seeds.client.options(path, headers={"origin": "https://evil.example", **ask})
        assert evil.status_code == 403
    sent = seeds.post("/event", TESTING, origin="https://example.com")
    assert sent.status_code == 202 and sent.headers["access-control-allow-origin"]
    foreign = seeds.post("/event", TESTING, origin="https://portfolio.example")  # another site's
    assert foreign.status_code == 422 and foreign.json()["error"]["field"] == "origin"


def test_a_body_or_a_read_may_name_its_site(seeds: Seeds) -> None:
    """A ``site_id`` in any seed body wins over the configured site; reads take ``site_id``
    (and check access to that site)."""
    bodies = [
        ("/event", {"type": "page_view", "path": "/home", "site_id": S003}),
        ("/event", {"action": "play", "element": "x", "site_id": S003}),
        ("/ingest", {"event_id": "e1", "page_url": "/a", "site_id": S003}),
        ("/api/analytics", {"event_type": "click", "page": "/b", "site_id": S003}),
    ]
    for path, body in bodies:
        assert seeds.post(path, body).status_code == 202, path
    seeds.wait(S003, len(bodies))
    assert seeds.events(S000) == 0 and seeds.events(S004) == 0 and seeds.events(S002) == 0
    snapshot = seeds.client.get("/analytics", params={"site_id": S003}, headers=seeds.admin)
    assert snapshot.json()["total_events"] == len(bodies)
    other = seeds.client.get(
        "/analytics", params={"site_id": S003}, headers=seeds.key(S000, "read")
    )
    assert other.status_code == 403
