"""Plausible's and Umami's official trackers, from the npm registry, in a real browser against
a real ``hitstream serve``: pageviews, a custom event with props and an SPA navigation are
counted, and the Stats API says so.

The trackers are what ``scripts/test-services.sh`` installs into ``tests/trackers`` (``npm
ci`` at the pinned versions and hashes): ``@plausible-analytics/tracker`` (Plausible's script
as an ES module, pointed at hitstream by its ``endpoint`` option) and ``umami`` (Umami's
tracker, ``src/tracker/index.js``, served as ``script.js`` with ``data-host-url``). The test
pages are served from another loopback port, so every send is cross-origin, as in
production. Expected numbers come from what the page sent, recorded by the browser.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Response

from tests.e2e.test_browser import CHROMIUM, CHROMIUM_ARGS, LOCAL_HOSTS, _Quiet
from tests.server import ServerProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRACKERS = Path(__file__).parents[1] / "trackers" / "node_modules"
PLAUSIBLE_JS = TRACKERS / "@plausible-analytics" / "tracker" / "plausible.js"
UMAMI_JS = TRACKERS / "umami" / "src" / "tracker" / "index.js"
PLAUSIBLE_SITE = "plausible.e2e.test"
UMAMI_SITE = "umami.e2e.test"
UMAMI_WEBSITE = "6a0c7e0e-3f5d-4c2b-9a41-2f7d3c1b8e55"

PLAUSIBLE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Home</title>
<script>window.__plausible = true;  // Plausible skips browsers under automation otherwise</script>
<script type="module">
import {{ init, track }} from './plausible.js';
init({{ domain: '{site}', endpoint: '{server}/api/event', captureOnLocalhost: true }});
window.signup = () => track('Signup', {{ props: {{ plan: 'pro' }} }});
</script>
</head><body><h1>Plausible shop</h1>
<button id="signup" onclick="signup()">Sign up</button>
<button id="to-pricing" onclick="history.pushState({{}}, '', '/pricing')">Pricing</button>
</body></html>
"""
UMAMI_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Home</title>
<script defer src="script.js" data-website-id="{website}" data-host-url="{server}"></script>
</head><body><h1>Umami shop</h1>
<button id="signup" data-umami-event="signup" data-umami-event-plan="pro">Sign up</button>
<button id="to-pricing" onclick="history.pushState({{}}, '', '/pricing')">Pricing</button>
</body></html>
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    if not PLAUSIBLE_JS.exists() or not UMAMI_JS.exists():
        pytest.skip("the trackers are not installed: run scripts/test-services.sh")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory, live_server: ServerProcess) -> Iterator[str]:
    """Both test sites, from one static server on another loopback port."""
    root = tmp_path_factory.mktemp("trackers")
    for folder, page, script, name in (
        ("plausible", PLAUSIBLE_PAGE, PLAUSIBLE_JS, "plausible.js"),
        ("umami", UMAMI_PAGE, UMAMI_JS, "script.js"),
    ):
        (root / folder).mkdir()
        (root / folder / "index.html").write_text(
            page.format(site=PLAUSIBLE_SITE, server=live_server.url, website=UMAMI_WEBSITE)
        )
        shutil.copy(script, root / folder / name)
    port = free_port()
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


class Sends:
    """What a page sent to one endpoint, and the answers, as the browser saw them."""

    def __init__(self, page: Page, endpoint: str) -> None:
        self.requests: list[Request] = []
        self.responses: list[Response] = []
        page.on("request", self._request(endpoint))
        page.on("response", self._response(endpoint))

    def _request(self, endpoint: str) -> Any:
        def record(request: Request) -> None:
            if request.url.endswith(endpoint) and request.method == "POST":
                self.requests.append(request)

        return record

    def _response(self, endpoint: str) -> Any:
        def record(response: Response) -> None:
            if response.url.endswith(endpoint) and response.request.method == "POST":
                self.responses.append(response)

        return record

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.post_data or "null") for r in self.requests]

    def wait(self, page: Page, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` sends were answered (the trackers send asynchronously)."""
        deadline = time.monotonic() + timeout
        while len(self.responses) < count and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert len(self.responses) >= count, [r.url for r in self.requests]


def stats(server: ServerProcess, kind: str, **params: str) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/api/v1/stats/{kind}",
        params={"period": "day", **params},
        headers=server.headers,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def settled(page: Page, server: ServerProcess, site: str, sent: Sends) -> dict[str, int]:
    """The site's figures once the store holds every event the page has had answered, and
    the page has no send in flight (the page stays open: a tracker may send again, e.g.
    Plausible's engagement on a focus change; whatever it sent is counted in ``sent``)."""
    deadline = time.monotonic() + 20
    while True:
        results = stats(
            server, "aggregate", site_id=site, metrics="events,pageviews,visitors,visits"
        )["results"]
        figures = {name: int(value["value"]) for name, value in results.items()}
        answered = len(sent.responses)
        if figures["events"] == answered == len(sent.requests) or time.monotonic() > deadline:
            return figures
        page.wait_for_timeout(100)  # lets the browser's events reach the listeners


def breakdown(server: ServerProcess, site: str, prop: str, **params: str) -> dict[str, int]:
    rows = stats(server, "breakdown", site_id=site, property=prop, metrics="events", **params)[
        "results"
    ]
    return {str(row["value"]): int(row["events"]) for row in rows}


def test_plausible_official_tracker_is_counted(
    browser: Browser, live_server: ServerProcess, pages: str
) -> None:
    live_server.add_site(PLAUSIBLE_SITE, allowed_hosts=LOCAL_HOSTS)
    page = browser.new_page()
    sent = Sends(page, "/api/event")
    page.goto(f"{pages}/plausible/")
    sent.wait(page, 1)  # the first pageview
    page.click("#signup")
    sent.wait(page, 2)
    page.click("#to-pricing")  # SPA: an engagement event for "/", then a pageview
    sent.wait(page, 4)
    bodies = sent.bodies()
    assert {r.status for r in sent.responses} == {202}
    assert all(r.headers.get("access-control-allow-origin") == pages for r in sent.responses)
    names = [b["n"] for b in bodies]
    pageviews = [b for b in bodies if b["n"] == "pageview"]
    assert [b["u"].removeprefix(pages) for b in pageviews] == ["/plausible/", "/pricing"]
    assert [b["p"] for b in bodies if b["n"] == "Signup"] == [{"plan": "pro"}]
    assert all(b["d"] == PLAUSIBLE_SITE for b in bodies)

    figures = settled(page, live_server, PLAUSIBLE_SITE, sent)
    bodies = sent.bodies()
    names = [b["n"] for b in bodies]
    assert figures == {
        "events": len(bodies),
        "pageviews": len(pageviews),
        "visitors": 1,
        "visits": 1,
    }
    assert breakdown(live_server, PLAUSIBLE_SITE, "page", filters="event_type==pageview") == {
        "/plausible/": 1,
        "/pricing": 1,
    }
    by_name = breakdown(live_server, PLAUSIBLE_SITE, "event_name", filters="event_type!=pageview")
    assert by_name == {name: names.count(name) for name in names if name != "pageview"}
    assert by_name["Signup"] == 1 and by_name["engagement"] >= 1
    assert breakdown(live_server, PLAUSIBLE_SITE, "prop:plan", filters="event_name==Signup") == {
        "pro": 1
    }
    page.close()


def test_umami_official_tracker_is_counted_with_its_cache_token(
    browser: Browser, live_server: ServerProcess, pages: str
) -> None:
    live_server.add_site(UMAMI_SITE, allowed_hosts=LOCAL_HOSTS, umami_website_id=UMAMI_WEBSITE)
    page = browser.new_page()
    sent = Sends(page, "/api/send")
    page.goto(f"{pages}/umami/")
    sent.wait(page, 1)
    page.click("#signup")
    sent.wait(page, 2)
    page.click("#to-pricing")  # the tracker sends the pageview 300 ms after pushState
    sent.wait(page, 3)
    bodies = sent.bodies()
    assert {r.status for r in sent.responses} == {202}
    assert [b["type"] for b in bodies] == ["event"] * 3
    payloads = [b["payload"] for b in bodies]
    assert all(p["website"] == UMAMI_WEBSITE for p in payloads)
    pageviews = [p for p in payloads if "name" not in p]
    assert [p["url"] for p in pageviews] == ["/umami/", "/pricing"]
    assert [p["data"] for p in payloads if p.get("name") == "signup"] == [{"plan": "pro"}]
    # the round trip: each send after the first carries what the previous answer said
    answers = [r.text() for r in sent.responses]
    sent_back = [r.headers.get("x-umami-cache") for r in sent.requests]
    assert sent_back[0] is None and all(sent_back[1:])
    assert all(json.loads(header)["cache"] for header in sent_back[1:] if header)
    assert sent_back[1] in answers and "set-cookie" not in sent.responses[0].headers

    figures = settled(page, live_server, UMAMI_SITE, sent)
    assert figures == {
        "events": len(bodies),
        "pageviews": len(pageviews),
        "visitors": 1,
        "visits": 1,
    }
    assert breakdown(live_server, UMAMI_SITE, "page", filters="event_type==pageview") == {
        "/umami/": 1,
        "/pricing": 1,
    }
    assert breakdown(live_server, UMAMI_SITE, "event_name", filters="event_type==custom") == {
        "signup": 1
    }
    assert breakdown(live_server, UMAMI_SITE, "prop:plan", filters="event_name==signup") == {
        "pro": 1
    }
    page.close()
