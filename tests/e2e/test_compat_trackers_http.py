"""Plausible's ``POST /api/event`` and Umami's ``POST /api/send`` against a real ``hitstream
serve`` with hand-made bodies: the Stats API counts what was sent (expected numbers computed
here from the bodies), non-interactions do not un-bounce a visit, and bad bodies get named
4xx answers and show up in the quality counts."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from tests.server import ServerProcess

pytestmark = pytest.mark.e2e

UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{} Safari/537.36"
)
NON_INTERACTIONS = ("engagement", "identify")


def stats(server: ServerProcess, kind: str, **params: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/api/v1/stats/{kind}",
        params={"period": "day", **params},
        headers=server.headers,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def figures_when(server: ServerProcess, site: str, events: int) -> dict[str, float]:
    metrics = "events,pageviews,visitors,visits,bounce_rate"
    deadline = time.monotonic() + 20
    while True:
        results = stats(server, "aggregate", site_id=site, metrics=metrics)["results"]
        figures = {name: float(value["value"]) for name, value in results.items()}
        if figures["events"] >= events or time.monotonic() > deadline:
            return figures
        time.sleep(0.05)


def breakdown(server: ServerProcess, site: str, prop: str, **params: str) -> dict[str, int]:
    rows = stats(server, "breakdown", site_id=site, property=prop, metrics="events", **params)
    return {str(row["value"]): int(row["events"]) for row in rows["results"]}


def expected(visits: list[list[tuple[str, str]]]) -> dict[str, float]:
    """The figures of visits given as (kind, name) lists: kind is pageview, custom or one of
    the non-interactions; a visit bounces with at most one pageview and no custom event."""
    pageviews = sum(kind == "pageview" for visit in visits for kind, _ in visit)
    bounces = sum(
        sum(kind == "pageview" for kind, _ in v) <= 1 and not any(k == "custom" for k, _ in v)
        for v in visits
    )
    return {
        "events": float(sum(len(v) for v in visits)),
        "pageviews": float(pageviews),
        "visitors": float(len(visits)),
        "visits": float(len(visits)),
        "bounce_rate": round(100 * bounces / len(visits), 2),
    }


def test_plausible_events_are_counted_and_engagement_does_not_unbounce(
    live_server: ServerProcess,
) -> None:
    site = f"p{uuid.uuid4().hex[:8]}.io"
    live_server.add_site(site)
    visits: list[list[dict[str, Any]]] = [
        [
            {"n": "pageview", "u": f"https://{site}/", "r": "https://news.ycombinator.com/"},
            {"n": "engagement", "u": f"https://{site}/", "sd": 60, "e": 4200},
        ],
        [
            {"n": "pageview", "u": f"https://{site}/pricing"},
            {"n": "Signup", "u": f"https://{site}/pricing", "p": {"plan": "pro"},
             "$": {"amount": 49, "currency": "USD"}},
            {"n": "pageview", "u": f"https://www.{site}/checkout"},
        ],
        [
            {"name": "pageview", "url": f"https://{site}/", "domain": site},
            {"name": "autoplay", "url": f"https://{site}/", "interactive": False},
        ],
    ]  # fmt: skip
    for number, visit in enumerate(visits):
        headers = {
            "user-agent": UA.format(f"130.0.{number}"),
            "x-forwarded-for": f"81.2.69.{10 + number}",
            "content-type": "text/plain",
        }
        for body in visit:
            body.setdefault("d", site)
            answer = httpx.post(f"{live_server.url}/api/event", json=body, headers=headers)
            assert answer.status_code == 202, answer.text
    kinds = [
        [
            (
                "pageview" if b.get("n", b.get("name")) == "pageview"
                else "engagement" if b.get("n") == "engagement" or b.get("interactive") is False
                else "custom",
                str(b.get("n", b.get("name"))),
            )
            for b in visit
        ]
        for visit in visits
    ]  # fmt: skip
    want = expected(kinds)
    assert figures_when(live_server, site, int(want["events"])) == want
    assert breakdown(live_server, site, "event_name", filters="event_type==custom") == {"Signup": 1}
    assert breakdown(live_server, site, "prop:revenue_amount", filters="event_name==Signup") == {
        "49": 1
    }
    assert breakdown(live_server, site, "prop:scroll_depth", filters="event_name==engagement") == {
        "60": 1
    }
    referrers = breakdown(live_server, site, "referrer", filters="event_type==pageview")
    assert referrers == {"news.ycombinator.com": 1, "": 3}


def test_umami_events_are_counted_and_identify_does_not_unbounce(
    live_server: ServerProcess,
) -> None:
    site = f"u{uuid.uuid4().hex[:8]}.io"
    website = str(uuid.uuid4())
    live_server.add_site(site, umami_website_id=website)

    def body(kind: str = "event", **payload: Any) -> dict[str, Any]:
        base = {"website": website, "hostname": site, "screen": "390x844", "language": "de-DE"}
        return {"type": kind, "payload": {**base, **payload}}

    visits = [
        [body(url=f"https://{site}/", title="Home"), body("identify", data={"tier": "gold"})],
        [
            body(url="/pricing?utm_source=mail", title="Pricing"),  # an older script
            body(url=f"https://{site}/pricing", name="signup", data={"plan": "team"}),
            body(url=f"https://{site}/welcome"),
        ],
    ]
    for number, visit in enumerate(visits):
        headers = {
            "user-agent": UA.format(f"131.0.{number}"),
            "x-forwarded-for": f"81.2.69.{40 + number}",
        }
        cache = ""
        for item in visit:
            answer = httpx.post(
                f"{live_server.url}/api/send",
                json=item,
                headers={**headers, "x-umami-cache": cache},
            )
            assert answer.status_code == 202, answer.text
            cache = answer.json()["cache"]
    kinds = [
        [
            (
                "identify" if b["type"] == "identify"
                else "custom" if "name" in b["payload"]
                else "pageview",
                str(b["payload"].get("name", "")),
            )
            for b in visit
        ]
        for visit in visits
    ]  # fmt: skip
    want = expected(kinds)
    assert figures_when(live_server, site, int(want["events"])) == want
    # acquisition belongs to the visit: each pageview of the visit that came by mail counts
    per_visit = [sum(kind == "pageview" for kind, _ in visit) for visit in kinds]
    assert breakdown(live_server, site, "utm_source", filters="event_type==pageview") == {
        "": per_visit[0],
        "mail": per_visit[1],
    }
    assert breakdown(live_server, site, "prop:plan", filters="event_name==signup") == {"team": 1}


def test_bad_tracker_bodies_are_named_and_counted(live_server: ServerProcess) -> None:
    site = f"b{uuid.uuid4().hex[:8]}.io"
    live_server.add_site(site)
    refused = [
        ("/api/event", {"u": f"https://{site}/", "d": site}, 422, "n"),
        ("/api/event", {"n": "pageview", "u": f"https://{site}/", "d": "nope.example"}, 422, "d"),
        ("/api/send", {"type": "event", "payload": {"website": "nope"}}, 422, "payload.website"),
        ("/api/send", {"type": "event", "payload": {"website": site, "screen": "x"}}, 422,
         "payload.screen"),
    ]  # fmt: skip
    for path, body, status, field in refused:
        answer = httpx.post(f"{live_server.url}{path}", json=body)
        assert answer.status_code == status, answer.text
        assert answer.json()["error"]["field"] == field
    garbage = httpx.post(
        f"{live_server.url}/api/event", content=b"{", headers={"content-type": "text/plain"}
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["field"] == "body"
    reasons = ("plausible: n", "plausible: body", "umami: website", "umami: screen")
    deadline = time.monotonic() + 10
    while True:  # a count in flight from the collector to the shared tally is briefly in neither
        quality = httpx.get(f"{live_server.url}/api/v1/quality", headers=live_server.headers)
        assert quality.status_code == 200
        if all(reason in quality.text for reason in reasons) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for reason in reasons:
        assert reason in quality.text, quality.text
