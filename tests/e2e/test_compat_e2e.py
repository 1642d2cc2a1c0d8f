"""The seeds' clients against a real ``hitstream serve`` (SQLite log, DuckDB store) over HTTP
and WebSocket: their writes, the Stats API numbers they make, their reads and access."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.server import ServerProcess

pytestmark = pytest.mark.e2e

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/130.0 Safari/537.36"
)
EVENT, ACTION, INGEST, API = "example.com", "actions.example", "ingest.example", "folio.example"
EVENTS = "site-abc-123"
SITES = [
    {"site_id": EVENT},
    {"site_id": ACTION},
    {"site_id": INGEST, "allowed_hosts": ["example.com"]},
    {"site_id": API},
    {"site_id": EVENTS},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "HITSTREAM_SITES": json.dumps(SITES),
        "HITSTREAM_COMPAT_SITE": EVENTS,
        "HITSTREAM_COMPAT_SITE_EVENT": EVENT,
        "HITSTREAM_COMPAT_SITE_ACTION": ACTION,
        "HITSTREAM_COMPAT_SITE_INGEST": INGEST,
        "HITSTREAM_COMPAT_SITE_API_ANALYTICS": API,
    }
    server = ServerProcess(Path(tmp_path_factory.mktemp("compat")) / "data", env=env).start()
    yield server
    try:
        server.terminate(timeout=60)
    finally:
        server.kill()


def post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, headers={"user-agent": CHROME})


def read_key(server: ServerProcess, site: str) -> dict[str, str]:
    made = httpx.post(
        f"{server.url}/api/v1/sites/{site}/keys", json={"scope": "read"}, headers=server.headers
    )
    assert made.status_code == 201, made.text
    return {"Authorization": f"Bearer {made.json()['key']}"}


def events_of(server: ServerProcess, site: str) -> int:
    answer = httpx.get(
        f"{server.url}/api/v1/stats/aggregate",
        params={"site_id": site, "period": "day", "metrics": "events"},
        headers=server.headers,
    )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["results"]["events"]["value"])


def wait_for(server: ServerProcess, site: str, events: int) -> None:
    deadline = time.monotonic() + 30
    while events_of(server, site) < events:
        assert time.monotonic() < deadline, f"{site}: fewer than {events} events stored"
        time.sleep(0.05)
    assert events_of(server, site) == events


def get(server: ServerProcess, path: str, **kw: Any) -> dict[str, Any]:
    answer = httpx.request("GET", f"{server.url}{path}", headers=server.headers, **kw)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def test_every_seed_client_writes_and_reads_over_http(server: ServerProcess) -> None:
    page_views: list[dict[str, Any]] = [
        {"type": "page_view", "user_id": "user123", "session_id": "session456",
         "url": "https://example.com/home", "path": "/home", "referrer": "https://google.com",
         "metadata": {"page_title": "Home Page", "load_time": 1200}},
        {"type": "page_view", "user_id": "user7", "path": "/home"},
        {"type": "click", "user_id": "user123", "session_id": "session456",
         "url": "https://example.com/products", "path": "/products",
         "metadata": {"element_id": "buy-button", "element_text": "Buy Now"}},
    ]  # fmt: skip
    for body in page_views:
        assert post(server, "/event", body).json()["status"] == "accepted"
    actions: list[dict[str, Any]] = [
        {"user_id": "user_123", "action": "play", "element": "video_player", "duration": 12.5},
        {"user_id": "user_9", "action": "like", "element": "like_button", "duration": 2},
    ]
    for body in actions:
        assert post(server, "/event", body).status_code == 202
    visits = [
        {"site_id": EVENTS, "event_type": "page_view", "path": "/home", "user_id": "user-001"},
        {"event_type": "page_view", "path": "/products", "user_id": "user-002"},  # default site
    ]
    for body in visits:
        assert post(server, "/events", body).json() == {"message": "Event accepted"}
    clicks: list[dict[str, Any]] = [
        {"event_id": "demo_1", "user_id": "user_123", "event_type": "click", "page_url": "/docs"},
        {"event_id": "demo_2", "user_id": "user_123", "event_type": "click", "page_url": "/docs"},
        {"event_id": "t1", "user_id": "user_1", "event_type": "click",
         "page_url": "https://example.com", "time_stamp": datetime.now(tz=UTC).isoformat()},
    ]  # fmt: skip
    for body in clicks + clicks[:1]:  # demo_1 twice: stored once
        assert post(server, "/ingest", body).json()["event_id"] == body["event_id"]
    portfolio: list[dict[str, Any]] = [
        {"event_type": "page_view", "page": "/", "session_id": "session-123",
         "screen_width": 1920, "screen_height": 1080},
        {"event_type": "click", "page": "/", "session_id": "session-123"},
        {"event_type": "time_spent", "page": "/", "session_id": "session-123", "seconds": 30},
    ]  # fmt: skip
    positions = []
    for body in portfolio:
        got = post(server, "/api/analytics", body).json()
        assert (got["status"], got["message"]) == ("success", "Event queued")
        positions.append((got["partition"], got["offset"]))
    # the embedded log is one partition of consecutive offsets; these were sent one by one
    first = positions[0][1]
    assert positions == [(0, first + i) for i in range(len(portfolio))]

    wait_for(server, EVENT, len(page_views))
    wait_for(server, ACTION, len(actions))
    wait_for(server, EVENTS, len(visits))
    wait_for(server, INGEST, len(clicks))
    wait_for(server, API, len(portfolio))

    snapshot = get(server, "/analytics")
    assert snapshot["total_events"] == len(page_views)
    assert snapshot["unique_users"] == len({b["user_id"] for b in page_views})
    assert snapshot["events_by_type"] == {"page_view": 2, "click": 1}
    assert snapshot["top_pages"] == [{"path": "/home", "views": 2, "unique_users": 2}]
    assert snapshot["performance_metrics"]["load_time_p50_ms"] == 1200
    today = datetime.now(tz=UTC).date().isoformat()
    daily = get(server, f"/stats?site_id={EVENTS}&date={today}")
    assert (daily["total_views"], daily["unique_users"]) == (2, 2)
    assert sorted(p["path"] for p in daily["top_paths"]) == ["/home", "/products"]
    per_user = get(server, "/analytics/events", json={"user_id": "user_123", "page_url": "/docs"})
    assert (per_user["event_count"], per_user["click_count"]) == (2, 2)
    assert get(server, "/api/stats") == {
        "total_events": len(portfolio),
        "events_by_type": dict(Counter(b["event_type"] for b in portfolio)),
    }
    metrics = get(server, "/metrics?format=json")
    assert metrics["active_users"] == 2 and metrics["avg_duration"] == 7.25
    elements = Counter(b["element"] for b in actions)
    assert sorted(metrics["top_elements"], key=lambda e: e["element"]) == [
        {"element": e, "count": n} for e, n in sorted(elements.items())
    ]
    text = httpx.get(f"{server.url}/metrics")  # a scraper: the exposition format, open here
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert httpx.get(f"{server.url}/health").json()["status"] == "healthy"
    assert httpx.get(f"{server.url}/api/health").json() == {
        "status": "healthy",
        "database": "connected",
    }
    # no credential, private sites: every read is refused
    for path in ("/analytics", f"/stats?site_id={EVENTS}&date={today}", "/api/stats"):
        assert httpx.get(f"{server.url}{path}").status_code == 401, path
    assert httpx.get(f"{server.url}/analytics/events?user_id=u").status_code == 401
    assert httpx.get(f"{server.url}/metrics?format=json").status_code == 401


def test_the_seed_socket_streams_snapshots_and_events(server: ServerProcess) -> None:
    url = server.url.replace("http://", "ws://") + "/ws"
    with connect(url, open_timeout=10) as refused:
        assert json.loads(refused.recv(timeout=10))["type"] == "error"
        with pytest.raises(ConnectionClosed) as closed:
            refused.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with connect(url, open_timeout=10, additional_headers=read_key(server, EVENT)) as socket:
        first = json.loads(socket.recv(timeout=10))
        assert first["type"] == "analytics_snapshot"
        before = first["data"]["total_events"]
        body = {"type": "signup", "user_id": "user42", "path": "/pricing"}
        assert post(server, "/event", body).status_code == 202
        seen: dict[str, Any] = {}
        while "real_time_event" not in seen or "analytics_update" not in seen:
            message = json.loads(socket.recv(timeout=20))
            stale = message["type"] == "analytics_update" and (
                message["data"]["total_events"] == before  # computed before the signup
            )
            if stale:
                continue
            seen.setdefault(message["type"], message["data"])
    assert (seen["real_time_event"]["type"], seen["real_time_event"]["path"]) == (
        "signup",
        "/pricing",
    )
    assert seen["analytics_update"]["total_events"] == before + 1
    assert seen["analytics_update"]["events_by_type"]["signup"] == 1
