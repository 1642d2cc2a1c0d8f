"""``hitstream serve --demo``: a filled history at once, live visits after, no refill on restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def events(server: ServerProcess, period: str = "30d") -> int:
    body: dict[str, Any] = httpx.get(
        f"{server.url}/api/v1/stats/aggregate",
        params={"site_id": "demo.example", "period": period, "metrics": "events"},
        headers=server.headers,
    ).json()
    return int(body["results"]["events"]["value"])


def test_demo_has_history_and_keeps_moving(tmp_path: Path) -> None:
    env = {
        "HITSTREAM_DEMO": "true",
        "HITSTREAM_DEMO_EVENTS_PER_DAY": "40",
        "HITSTREAM_DEMO_LIVE_EVENTS_PER_DAY": "400000",  # ~5 a second: seen within 3 s
    }
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        # the history is sent oldest first: wait until it has reached the last 30 days
        deadline = time.monotonic() + 90
        while True:
            series = httpx.get(
                f"{server.url}/api/v1/stats/timeseries",
                params={
                    "site_id": "demo.example",
                    "period": "30d",
                    "interval": "day",
                    "metrics": "pageviews",
                },
                headers=server.headers,
            ).json()["results"]
            days_with_traffic = sum(1 for point in series if point["pageviews"] > 0)
            if days_with_traffic >= 28 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(series) == 30
        assert days_with_traffic >= 28  # every day has traffic (weekends are quieter)
        assert events(server, "30d") >= 800
        before = events(server, "day")
        time.sleep(3)
        assert events(server, "day") > before  # live visits keep arriving
        first_total = events(server, "30d")
        output = server.output()
        assert "/login/link?token=hs_login_" in output  # the link that logs into the demo
        assert "/setup?token=hs_setup_" in output  # no user yet: the first-run link too
        link = output.split("/login/link?token=", 1)[1].split()[0]
        with httpx.Client(base_url=server.url) as browser:
            assert browser.get(f"/login/link?token={link}").status_code == 303
            assert browser.get("/api/v1/session").json()["sites"] == ["demo.example"]
            assert browser.get("/api/v1/stats/aggregate?site_id=demo.example").status_code == 200
        assert server.terminate() == 0
    finally:
        server.kill()
    again = ServerProcess(tmp_path / "data", env=env, port=server.port).start()
    try:
        time.sleep(1)
        assert events(again, "30d") < first_total + 200  # no second history
    finally:
        again.terminate()
        again.kill()
