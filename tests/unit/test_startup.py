"""A process opens its port before its parts have started (decision 0058): while its store is
down it answers ``/healthz``, says what it waits for on ``/readyz``, and refuses everything
else with a 503 naming the wait, instead of "connection refused"."""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import pytest
from starlette.websockets import WebSocketDisconnect

from hitstream.backoff import Backoff
from hitstream.bootstrap import build
from hitstream.errors import StoreUnavailable
from hitstream.settings import Settings
from hitstream.web.app import create_app

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

EVENT = {"site_id": "a.io", "type": "pageview", "url": "https://a.io/pricing"}
CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


def wait_until(what: str, check: object) -> None:
    assert callable(check)
    for _ in range(1000):
        if check():
            return
        time.sleep(0.01)
    raise AssertionError(f"not within 10 s: {what}")


def test_a_role_whose_store_is_down_answers_probes_and_refuses_the_rest(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        log_url="memory://",
        store_url="memory://",
        sites=json.dumps([{"site_id": "a.io"}]),
    )
    runtime = build(settings, frozenset({"collector", "web"}))
    runtime.backoff = Backoff(first_s=0.01, max_s=0.02)
    store_up = False
    real_start = runtime.store.start

    async def start() -> None:
        if not store_up:
            raise StoreUnavailable("postgresql: connection refused")
        await real_start()

    runtime.store.start = start  # type: ignore[method-assign]
    app = create_app(runtime.services, lifecycle=runtime)
    with TestClient(app) as client:
        wait_until("the store waited for", lambda: runtime.startup.waiting_for == "store")
        assert client.get("/healthz").status_code == 200
        assert client.head("/healthz").status_code == 200  # load balancers probe with HEAD
        assert client.head("/readyz").status_code == 503
        ready = client.get("/readyz")
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "starting", "waiting_for": "store"},
        )
        assert client.get("/metrics").status_code == 200
        for answer in (
            client.post("/api/v1/events", json=EVENT, headers={"user-agent": CHROME}),
            client.get("/api/v1/stats/aggregate?site_id=a.io&period=day"),
            client.get("/"),
        ):
            assert answer.status_code == 503
            assert answer.json() == {
                "error": {
                    "field": "server",
                    "reason": "starting: waiting for the store; try again shortly",
                }
            }
            assert answer.headers["retry-after"] == "5"
            assert answer.headers["x-content-type-options"] == "nosniff"
            assert answer.headers["cache-control"] == "no-store"
            assert answer.headers["content-security-policy"].startswith("default-src 'none'")
        live = "/api/v1/live?site_id=a.io"
        page = client.get("/", headers={"accept": "text/html,application/xhtml+xml"})
        assert (page.status_code, page.headers["content-type"]) == (503, "text/html; charset=utf-8")
        assert "Waiting for the store. This page reloads by itself." in page.text
        assert '<meta http-equiv="refresh" content="2">' in page.text
        assert "style-src 'unsafe-inline'" in page.headers["content-security-policy"]
        assert "script-src" not in page.headers["content-security-policy"]
        with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect(live) as ws:
            ws.receive_text()
        assert closed.value.code == 1013

        store_up = True  # the database is back: the same process starts and serves
        wait_until("ready", lambda: client.get("/readyz").status_code == 200)
        assert runtime.startup.waiting_for == ""
        answer = client.post("/api/v1/events", json=EVENT, headers={"user-agent": CHROME})
        assert answer.status_code == 202, answer.text


def test_a_start_that_fails_stops_the_server(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_url="memory://", store_url="memory://")
    runtime = build(settings, frozenset({"web"}))

    async def broken() -> None:
        raise RuntimeError("migration 0012 failed")

    runtime.store.start = broken  # type: ignore[method-assign]
    app = create_app(runtime.services, lifecycle=runtime)
    asked: list[str] = []
    app.on_start_failure = lambda: asked.append("stop")
    with TestClient(app) as client:
        wait_until("the failure seen", lambda: app.start_failed is not None)
        assert asked == ["stop"]
        assert client.get("/readyz").json()["status"] == "starting"  # never ready
    assert isinstance(app.start_failed, RuntimeError)
