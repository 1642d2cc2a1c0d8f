"""Engagement and the seeds' figures through a real ``hitstream serve``: generated visits,
answers the test computes itself from what it sent."""

from __future__ import annotations

import random
import time
import uuid
from collections import defaultdict
from typing import Any

import httpx
import pytest

from tests.e2e.test_http import post, stats
from tests.server import ServerProcess

pytestmark = pytest.mark.e2e

PAGES = ["/", "/pricing", "/docs", "/blog/launch"]
ELEMENTS = ["buy", "signup", "video_player", "like_button"]


def visits(site: str, rng: random.Random) -> list[list[dict[str, Any]]]:
    """One list of events per visitor: pageviews, each maybe followed by its engagement
    event, tagged element clicks, and timed custom actions (the seeds' ``duration``)."""
    made = []
    for _ in range(12):
        events: list[dict[str, Any]] = []
        for page in rng.sample(PAGES, rng.randint(1, 3)):
            events.append({"site_id": site, "path": page})
            if rng.random() < 0.8:
                engagement: dict[str, Any] = {
                    "site_id": site,
                    "type": "engagement",
                    "path": page,
                    "engaged_ms": rng.randint(0, 300_000),
                }
                if rng.random() < 0.7:
                    engagement["scroll_depth"] = rng.randint(0, 100)
                events.append(engagement)
        for _ in range(rng.randint(0, 2)):
            name = rng.choice(ELEMENTS)
            props = {"element_name": name, "element_id": f"{name}-1", "element_text": name}
            events.append(
                {"site_id": site, "type": "click", "name": "element", "path": "/", "props": props}
            )
        for _ in range(rng.randint(0, 2)):
            action = rng.choice(["play", "pause"])
            events.append(
                {
                    "site_id": site,
                    "type": "custom",
                    "name": action,
                    "path": "/",
                    "duration_ms": rng.randint(0, 60_000),
                }
            )
        made.append(events)
    return made


def test_engagement_and_the_seeds_figures_over_http(live_server: ServerProcess) -> None:
    rng = random.Random(18)
    site = f"e{uuid.uuid4().hex[:8]}.io"
    made = visits(site, rng)
    for number, events in enumerate(made):
        answer = post(live_server, events, ip=f"203.0.113.{number + 1}")
        assert answer.status_code == 202, answer.text
    everything = [e for events in made for e in events]
    counted = [e for e in everything if e.get("type") != "engagement"]
    engaged = [e for e in everything if e.get("type") == "engagement"]

    def settled() -> dict[str, Any]:
        # the processor writes in batches: ask until every counted event is in
        for _ in range(300):
            body = stats(live_server, "aggregate", site_id=site, period="day", metrics="events")
            if body["results"]["events"]["value"] >= len(counted):
                return body
            time.sleep(0.05)
        return body

    assert settled()["results"]["events"]["value"] == len(counted)  # engagement: no event

    # aggregate: engagement events count in no activity figure
    bounces = sum(
        1
        for events in made
        if sum(1 for e in events if e.get("type") is None) <= 1
        and sum(1 for e in events if e.get("type") != "engagement") <= 1
    )
    want = {
        "visitors": len(made),
        "visits": len(made),
        "pageviews": sum(1 for e in counted if e.get("type") is None),
        "events": len(counted),
        "bounce_rate": round(100 * bounces / len(made), 2),
        "time_on_page": round(sum(e["engaged_ms"] for e in engaged) / len(engaged) / 1000, 2),
    }
    got = stats(live_server, "aggregate", site_id=site, period="day", metrics=",".join(want))
    assert {k: v["value"] for k, v in got["results"].items()} == want

    # time on page and scroll depth per page
    per_page: dict[str, list[dict[str, Any]]] = defaultdict(list)
    views: dict[str, int] = defaultdict(int)
    for e in everything:
        if e.get("type") == "engagement":
            per_page[e["path"]].append(e)
        elif e.get("type") is None:
            views[e["path"]] += 1
    rows = stats(
        live_server,
        "breakdown",
        site_id=site,
        period="day",
        property="page",
        metrics="pageviews,time_on_page,scroll_depth",
    )["results"]
    for row in rows:
        measured = per_page[row["value"]]
        depths = [e["scroll_depth"] for e in measured if "scroll_depth" in e]
        assert row["pageviews"] == views[row["value"]]
        assert row["time_on_page"] == (
            round(sum(e["engaged_ms"] for e in measured) / len(measured) / 1000, 2)
            if measured
            else 0
        )
        assert row["scroll_depth"] == (round(sum(depths) / len(depths), 2) if depths else 0)
    assert {row["value"] for row in rows} == set(views) | set(per_page)

    # average duration of an action, per action
    timed: dict[str, list[int]] = defaultdict(list)
    for e in counted:
        if "duration_ms" in e:
            timed[e["name"]].append(e["duration_ms"])
    by_action = stats(
        live_server,
        "breakdown",
        site_id=site,
        period="day",
        property="event_name",
        metrics="avg_duration",
        filters="event_type==custom",
    )["results"]
    assert {r["value"]: r["avg_duration"] for r in by_action} == {
        name: round(sum(values) / len(values) / 1000, 2) for name, values in timed.items()
    }

    # top clicked elements
    clicks: dict[str, int] = defaultdict(int)
    for e in counted:
        if e.get("type") == "click":
            clicks[e["props"]["element_name"]] += 1
    top = stats(
        live_server,
        "breakdown",
        site_id=site,
        period="day",
        property="prop:element_name",
        metrics="events",
        filters="event_name==element",
    )["results"]
    assert [(r["value"], r["events"]) for r in top] == sorted(
        clicks.items(), key=lambda item: (-item[1], item[0])
    )

    # realtime: everything was sent just now
    now = httpx.get(
        f"{live_server.url}/api/v1/stats/realtime",
        params={"site_id": site},
        headers=live_server.headers,
    ).json()
    assert now["active_users"] == now["visitors"] == len(made)
    assert now["events_per_minute"] == round(len(counted) / 5, 2)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            {"type": "engagement", "path": "/", "engaged_ms": 10, "scroll_depth": 101},
            "scroll_depth",
        ),
        ({"type": "engagement", "path": "/"}, "engaged_ms"),
        ({"type": "engagement", "path": "/", "engaged_ms": 10**12}, "engaged_ms"),
        ({"path": "/", "scroll_depth": 50}, "scroll_depth"),
    ],
)
def test_bad_engagement_fields_are_refused_by_name(
    live_server: ServerProcess, extra: dict[str, Any], field: str
) -> None:
    site = "bad-engagement.e2e.test"
    answer = post(live_server, {"site_id": site, **extra})
    assert answer.status_code == 422, answer.text  # the collector's "invalid event" answer
    body = answer.json()
    fields = [body["error"]["field"]] if "error" in body else []
    fields += [err["field"] for item in body.get("rejected", []) for err in item["errors"]]
    assert field in fields, body
