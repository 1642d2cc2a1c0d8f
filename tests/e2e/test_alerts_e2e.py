"""Alerting in a real ``hitstream serve``: rules from HITSTREAM_ALERT_RULES fire on live data,
reach a real webhook over loopback, the live WebSocket, ``/api/v1/alerts`` and ``/metrics``."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from tests.server import ServerProcess

pytestmark = pytest.mark.e2e

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
RUN = uuid.uuid4().hex[:8]
BUSY = f"busy-{RUN}.io"
QUIET = f"quiet-{RUN}.io"
WATCHED = f"watched-{RUN}.io"
RULES = [
    {
        "name": "burst",
        "site_id": BUSY,
        "metric": "pageviews",
        "window_s": 300,
        "op": ">=",
        "threshold": 3,
        "severity": "critical",
    },
    {
        "name": "tracker-down",
        "site_id": QUIET,
        "metric": "pageviews",
        "window_s": 900,
        "op": "<",
        "threshold": 1,
    },
    {
        "name": "watched-burst",
        "site_id": WATCHED,
        "metric": "visitors",
        "window_s": 300,
        "op": ">=",
        "threshold": 2,
    },
]


class Hook:
    """A webhook receiver on loopback that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        bodies, lock = self.bodies, self.lock

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                with lock:
                    bodies.append(json.loads(raw))
                self.send_response(200)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        # a webhook URL holds its secret in the path (Slack), the query or the user info
        self.url = (
            f"http://hookuser:{HOOK_SECRET}@127.0.0.1:{port}/hooks/{HOOK_SECRET}?t={HOOK_SECRET}"
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def received(self, rule: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for body in self.bodies if body.get("rule") == rule]


HOOK_SECRET = "XXsecretXX41"


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    hook = Hook()
    hook.thread.start()
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, hook: Hook) -> Iterator[ServerProcess]:
    data_dir: Path = tmp_path_factory.mktemp("alerts") / "data"
    env = {
        "HITSTREAM_ALERT_RULES": json.dumps(RULES),
        "HITSTREAM_ALERT_NOTIFIERS": f"log://,{hook.url}",
        "HITSTREAM_ALERT_INTERVAL_S": "0.2",
        "HITSTREAM_LOG_LEVEL": "info",  # a newcomer's level: the HTTP client's lines too
    }
    server = ServerProcess(data_dir, env=env).start()
    for rule in RULES:
        if rule.get("site_id", "*") != "*":
            server.add_site(str(rule["site_id"]))
    yield server
    try:
        server.terminate(timeout=60)
    finally:
        server.kill()


def eventually(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def alerts(server: ServerProcess, site: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.url}/api/v1/alerts", params={"site_id": site}, headers=server.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def post(server: ServerProcess, site: str, visitors: int) -> None:
    server.add_site(site)
    for n in range(visitors):
        body = [{"site_id": site, "url": f"https://{site}/p{i}"} for i in range(2)]
        headers = {"user-agent": CHROME, "x-forwarded-for": f"81.2.69.{140 + n}"}
        response = httpx.post(f"{server.url}/api/v1/events", json=body, headers=headers)
        assert response.status_code == 202, response.text


def test_a_site_that_never_sent_anything_fires_the_no_data_rule(
    server: ServerProcess, hook: Hook
) -> None:
    body = eventually(lambda: alerts(server, QUIET)["recent"])
    assert [(a["rule"], a["state"], a["value"]) for a in body] == [("tracker-down", "firing", 0)]
    [sent] = eventually(lambda: hook.received("tracker-down"))
    assert sent["text"].startswith(f"[FIRING] warning · tracker-down on {QUIET}: pageviews < 1")
    assert (sent["site_id"], sent["state"], sent["threshold"]) == (QUIET, "firing", 1)
    # the notifier's URL is a secret: the log names its host at most
    logged = server.log_path.read_text(errors="replace")
    assert "tracker-down" in logged and HOOK_SECRET not in logged


def test_traffic_fires_a_rule_once_with_webhook_api_and_metrics(
    server: ServerProcess, hook: Hook
) -> None:
    assert alerts(server, BUSY)["recent"] == []
    post(server, BUSY, visitors=2)  # four pageviews
    recent = eventually(lambda: alerts(server, BUSY)["recent"])
    assert [(a["rule"], a["state"], a["severity"]) for a in recent] == [
        ("burst", "firing", "critical")
    ]
    assert recent[0]["value"] >= 3
    [sent] = eventually(lambda: hook.received("burst"))
    assert sent["text"].startswith(f"[FIRING] critical · burst on {BUSY}: pageviews >= 3 over 5m")
    assert {k: v for k, v in sent.items() if k not in ("text", "id")} == recent[0]
    assert sent["id"] == f"burst:{BUSY}:firing:{recent[0]['at']}"  # the same on every try
    time.sleep(1.0)  # five more rounds: still firing, nothing sent again
    assert len(hook.received("burst")) == 1
    assert [a["state"] for a in alerts(server, BUSY)["active"]] == ["firing"]
    metrics = httpx.get(f"{server.url}/metrics").text  # open: no HITSTREAM_METRICS_TOKEN
    assert 'hitstream_alerts_fired_total{rule="burst"} 1.0' in metrics
    assert 'hitstream_alert_notifier_failures_total{notifier="webhook"}' not in metrics


def test_an_open_dashboard_gets_the_alert_frame(server: ServerProcess) -> None:
    url = server.url.replace("http://", "ws://") + f"/api/v1/live?site_id={WATCHED}&period=day"
    with connect(url, open_timeout=10, additional_headers=server.headers) as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and snapshot["alerts"] == []
        post(server, WATCHED, visitors=2)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=15))
            if frame["type"] == "alert":
                break
        assert frame["type"] == "alert"
        assert (frame["rule"], frame["state"], frame["site_id"]) == (
            "watched-burst",
            "firing",
            WATCHED,
        )
        assert frame["message"] == "visitors >= 2 over 5m: visitors is 2"
