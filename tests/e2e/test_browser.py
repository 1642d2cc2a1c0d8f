"""A real browser against a real ``hitstream serve``: tracker on a test site, dashboard live.

Needs Chromium at /usr/bin/chromium (Debian's package) and Playwright for Python. The test
site is served from another loopback port, so the tracker's requests are cross-origin, as
they are in production.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Dialog,
    Locator,
    Page,
    expect,
    sync_playwright,
)

from tests.server import ServerProcess, free_port

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).parent / "screenshots"
SITE = "shop.e2e.test"  # only the tracked-site test sends events for it
OTHER_SITE = "other.e2e.test"
XSS_PATH = "/<img src=x onerror=alert(1)>"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

SITE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<script>window.hitstream = window.hitstream || function () {{
  (window.hitstream.q = window.hitstream.q || []).push(arguments) }};
hitstream('early', {{props: {{queued: true}}}});</script>
<script defer data-site="{site}" src="{server}/js/hitstream.js"></script>
</head><body>
<h1>Test shop</h1>
<button id="to-pricing" onclick="history.pushState({{}}, '', '/pricing'); document.title='Pricing'">
  Pricing</button>
<button id="same-page" onclick="history.replaceState({{}}, '', location.pathname)">Same</button>
<a id="outbound" href="http://localhost:{port}/elsewhere">Partner</a>
<a id="manual" href="/files/manual.pdf">Manual</a>
<button id="signup" onclick="hitstream('signup', {{props: {{plan: 'pro'}}}})">Sign up</button>
<script>
  // keep the test on this page: the tracker listens in the capture phase, before this
  document.addEventListener('click', function (e) {{
    if (e.target.closest('a')) e.preventDefault();
  }});
</script>
</body></html>
"""


ENGAGE_SITE = "engage.e2e.test"
ENGAGE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Long read</title>
<script defer data-site="{site}" src="{server}/js/hitstream.js"></script>
</head><body style="margin:0">
<button id="buy-button" data-hitstream-click="buy">  Buy
   <b>now</b>  </button>
<div style="height:5000px">a long article</div>
</body></html>
"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory, live_server: ServerProcess) -> Iterator[str]:
    root = tmp_path_factory.mktemp("site")
    port = free_port()
    register(live_server, SITE)
    register(live_server, OTHER_SITE)
    page = SITE_PAGE.format(title="Home", site=SITE, server=live_server.url, port=port)
    (root / "index.html").write_text(page)
    (root / "dnt.html").write_text(
        page.replace("<script defer ", "<script defer data-respect-dnt ")
    )
    register(live_server, ENGAGE_SITE)
    (root / "engage.html").write_text(ENGAGE_PAGE.format(site=ENGAGE_SITE, server=live_server.url))
    other = SITE_PAGE.format(title="Other", site=OTHER_SITE, server=live_server.url, port=port)
    (root / "other.html").write_text(other)
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


PASSWORD = "a long enough password"
LOCAL_HOSTS = ["127.0.0.1", "localhost"]
"""The test site's pages are served from loopback: the sites allow those hosts."""


def register(server: ServerProcess, site: str) -> None:
    server.add_site(site, allowed_hosts=LOCAL_HOSTS)


def form_login(server: ServerProcess, email: str, password: str) -> str:
    """Log in through the real form (its CSRF token and cookie) and return the session
    cookie, to hand to a browser context."""
    with httpx.Client(base_url=server.url) as client:
        page = client.get("/login").text
        token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        answer = client.post("/login", data={"email": email, "password": password, "csrf": token})
        assert answer.status_code == 303, answer.text
        return str(client.cookies["hitstream_session"])


def add_user(server: ServerProcess, email: str, role: str, sites: list[str]) -> None:
    answer = httpx.post(
        f"{server.url}/api/v1/users",
        json={"email": email, "role": role, "sites": sites, "password": PASSWORD},
        headers=server.headers,
    )
    assert answer.status_code in (201, 409), answer.text


def logged_in(
    browser: Browser,
    server: ServerProcess,
    email: str = "admin@e2e.test",
    timezone_id: str | None = None,
) -> BrowserContext:
    """A browser context with a dashboard login (an admin by default), in ``timezone_id``
    (default: this machine's)."""
    add_user(server, email, "admin" if email.startswith("admin") else "viewer", [])
    context = browser.new_context(timezone_id=timezone_id)
    cookie = form_login(server, email, PASSWORD)
    context.add_cookies([{"name": "hitstream_session", "value": cookie, "url": server.url}])
    return context


def card(page: Page, label: str) -> Locator:
    """The value of the key-figure card titled exactly ``label``."""
    title = page.locator("h3", has_text=re.compile(f"^{re.escape(label)}$"))
    return page.locator(".card", has=title).locator(".value")


def open_dashboard(
    browser: Browser,
    server: ServerProcess,
    width: int = 1440,
    height: int = 900,
    site: str = SITE,
    timezone_id: str | None = None,
) -> Page:
    register(server, site)
    context = logged_in(browser, server, timezone_id=timezone_id)
    page = context.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{server.url}/?site={site}&period=day")
    expect(page.locator("#conn")).to_have_class("conn live", timeout=10_000)
    return page


def test_tracked_site_shows_up_live_on_the_dashboard(
    browser: Browser, live_server: ServerProcess, site_url: str
) -> None:
    dashboard = open_dashboard(browser, live_server)
    site = browser.new_page()
    site.goto(f"{site_url}/")
    site.wait_for_load_state("load")
    site.click("#to-pricing")  # SPA navigation: a second pageview
    site.click("#same-page")  # replaceState to the same path: no pageview
    site.click("#outbound")
    site.click("#manual")
    site.click("#signup")

    # pushed, no reload; how fast is benchmarks/live_latency.py's to say (a timeout here
    # only bounds a wait: a loaded CI machine is no measurement)
    expect(card(dashboard, "Events")).to_have_text("6", timeout=15_000)  # 2 pv, 2 clicks, 2 custom
    expect(card(dashboard, "Pageviews")).to_have_text("2", timeout=1_000)  # replaceState: no pv
    stream = dashboard.locator("#stream")
    for text in ("signup", "plan=pro", "outbound", "download", "/pricing", "early"):
        expect(stream).to_contain_text(text, timeout=1_000)  # "early": queued before load
    expect(dashboard.locator("#rows-pages")).to_contain_text("/pricing", timeout=2_000)
    expect(card(dashboard, "Current visitors")).to_have_text("1", timeout=2_000)
    # the first pageview waited for the load event and carried the page load time
    expect(card(dashboard, "Load time (median)")).not_to_have_text("–", timeout=2_000)
    site.close()
    dashboard.close()


def post_events(server: ServerProcess, events: object, *, key: bool = False) -> None:
    """POST ``events`` as Firefox (with the server's admin key: ``ip`` overrides), accepted."""
    headers = {**(server.headers if key else {}), "User-Agent": FIREFOX}
    answer = httpx.post(f"{server.url}/api/v1/events", json=events, headers=headers)
    assert answer.status_code == 202, answer.text


def send(server: ServerProcess, site: str, *paths: str) -> None:
    register(server, site)
    post_events(server, [{"site_id": site, "type": "pageview", "path": path} for path in paths])


def test_clicking_a_row_filters_the_dashboard_and_the_url(
    browser: Browser, live_server: ServerProcess
) -> None:
    send(live_server, "filter.e2e.test", "/pricing", "/blog", "/blog")
    dashboard = open_dashboard(browser, live_server, site="filter.e2e.test")
    expect(card(dashboard, "Pageviews")).to_have_text("3", timeout=5_000)
    row = dashboard.locator("#rows-pages .row:not(.head)", has_text="/pricing").first
    row.click()
    expect(dashboard.locator("#chips")).to_contain_text("/pricing")
    assert "filters=page%3D%3D%2Fpricing" in dashboard.url
    expect(card(dashboard, "Pageviews")).to_have_text("1", timeout=3_000)
    shared = dashboard.context.new_page()
    shared.goto(dashboard.url)  # the URL alone reproduces the view
    expect(shared.locator("#chips")).to_contain_text("/pricing", timeout=5_000)
    expect(card(shared, "Pageviews")).to_have_text("1", timeout=5_000)
    shared.close()
    # a filter the server refuses (a broken pattern) is not kept: chips and URL stay as shown
    dashboard.select_option("#filter-op", "=~")
    dashboard.fill("#filter-value", "(unclosed")
    dashboard.click("#filter-form button[type=submit]")
    expect(dashboard.locator("#notice")).to_contain_text("not applied", timeout=5_000)
    expect(dashboard.locator("#chips .chip")).to_have_count(1)
    assert "unclosed" not in dashboard.url and "filters=page%3D%3D%2Fpricing" in dashboard.url
    expect(card(dashboard, "Pageviews")).to_have_text("1")
    dashboard.close()


def test_props_sent_before_the_dashboard_opened_are_broken_down(
    browser: Browser, live_server: ServerProcess
) -> None:
    """The props tab lists the keys stored before anyone watched (the first ones a site
    sent), each table headed by its key as sent and without the events that lack the key;
    the custom events tab lists named events only, not the pageviews' empty name."""
    site = "props.e2e.test"
    register(live_server, site)
    events = [
        {"site_id": site, "type": "pageview", "path": "/pricing"},
        {"site_id": site, "type": "custom", "name": "signup", "path": "/pricing",
         "props": {"Plan": "pro"}},
        {"site_id": site, "type": "custom", "name": "signup", "path": "/pricing",
         "props": {"Plan": "team"}},
        {"site_id": site, "type": "custom", "name": "signup", "path": "/pricing",
         "props": {"Plan": "team", "a": 1, "b": 2, "c": 3}},
    ]  # fmt: skip
    post_events(live_server, events)
    dashboard = open_dashboard(browser, live_server, site=site)
    expect(card(dashboard, "Events")).to_have_text("4", timeout=5_000)
    panel = dashboard.locator("#panel-events")
    panel.locator(".tab", has_text="Custom events").click()
    rows = dashboard.locator("#rows-events .row:not(.head)")
    expect(rows).to_have_count(1, timeout=3_000)
    expect(rows.first).to_contain_text("signup")
    panel.locator(".tab", has_text="Event props").click()
    expect(dashboard.locator("#charts-events")).to_be_empty()  # the event types chart's tab only
    # three keys broken down (LiveConfig.prop_breakdowns), the most events first; the fourth named
    heads = dashboard.locator("#rows-events .row.head .label")
    expect(heads).to_have_text(["Plan", "a", "b"], timeout=3_000)
    plan = dashboard.locator("#rows-events .table").first.locator(".row:not(.head) .label")
    expect(plan).to_have_text(["team", "pro"])  # one visitor each: the more events first
    expect(dashboard.locator("#rows-events")).to_contain_text("Also sent: c")
    dashboard.close()


def test_a_long_table_says_where_its_other_rows_are_and_hides_unmeasured_columns(
    browser: Browser, live_server: ServerProcess
) -> None:
    """Twelve pages: the live view sends the top ten, and the table says so with a link to
    the CSV download (every row) and a "Show all" that lists every row in place (searched as
    you type); without engagement events, no empty time/scroll columns."""
    site = "long.e2e.test"
    register(live_server, site)
    events = [{"site_id": site, "type": "pageview", "path": f"/page-{n:02d}"} for n in range(12)]
    post_events(live_server, events)
    dashboard = open_dashboard(browser, live_server, site=site)
    expect(card(dashboard, "Pageviews")).to_have_text("12", timeout=5_000)
    rows = dashboard.locator("#rows-pages .row:not(.head)")
    expect(rows).to_have_count(10, timeout=3_000)
    more = dashboard.locator("#rows-pages .more")
    expect(more).to_contain_text("top 10")
    href = more.locator("a.csv").get_attribute("href") or ""
    assert href.startswith("/api/v1/stats/export?") and f"site_id={site}" in href
    heads = dashboard.locator("#rows-pages .row.head .num")
    expect(heads).to_have_count(2)  # visitors, pageviews: time and scroll measured nothing
    exported = dashboard.request.get(live_server.url + href)
    assert exported.status == 200 and exported.body()[:2] == b"PK"  # the ZIP of every table
    # "Show all": every page in place, searchable; a row filters the dashboard
    more.get_by_role("button", name="Show all").click()
    details = dashboard.locator("dialog#details")
    expect(details).to_be_visible()
    found = details.locator(".row:not(.head) .label")
    expect(found).to_have_count(12, timeout=5_000)
    expect(details.locator(".details-status")).to_have_text("12 rows")
    details.get_by_role("searchbox").fill("page-1")
    expect(found).to_have_text(["/page-10", "/page-11"])  # not /page-01
    expect(details.locator(".details-status")).to_have_text("2 of 12 rows")
    found.first.click()
    expect(details).to_be_hidden()
    expect(dashboard.locator(".chip")).to_contain_text("/page-10")
    expect(card(dashboard, "Pageviews")).to_have_text("1", timeout=5_000)
    dashboard.close()


def test_countries_with_the_same_numbers_are_listed_by_name(
    browser: Browser, live_server: ServerProcess
) -> None:
    """One visitor from Germany (DE), one from France (FR): by name France comes first,
    by code it would not."""
    site = "countries.e2e.test"
    register(live_server, site)
    events = [
        {"site_id": site, "type": "pageview", "path": "/", "ip": ip}
        for ip in ("5.9.0.1", "90.0.0.1")  # DE, FR (the offline table iptocc ships)
    ]
    post_events(live_server, events, key=True)
    dashboard = open_dashboard(browser, live_server, site=site)
    labels = dashboard.locator("#rows-countries .row:not(.head) .label")
    expect(labels).to_have_text(["France", "Germany"], timeout=5_000)
    dashboard.close()


def test_visitor_supplied_markup_is_shown_as_text(
    browser: Browser, live_server: ServerProcess
) -> None:
    dashboard = open_dashboard(browser, live_server, site="xss.e2e.test")
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    dashboard.on("dialog", on_dialog)
    register(live_server, "xss.e2e.test")
    post_events(live_server, {"site_id": "xss.e2e.test", "path": XSS_PATH, "title": "<b>bold</b>"})
    expect(dashboard.locator("#stream")).to_contain_text(XSS_PATH, timeout=3_000)
    expect(dashboard.locator("#rows-pages")).to_contain_text(XSS_PATH, timeout=3_000)
    assert dashboard.locator("main img").count() == 0
    assert dialogs == []
    dashboard.reload()  # and in a snapshot too
    expect(dashboard.locator("#rows-pages")).to_contain_text(XSS_PATH, timeout=5_000)
    assert dialogs == []
    dashboard.close()


RECORD_SENDS = """
window.__sends = [];
const beacon = Navigator.prototype.sendBeacon;
Navigator.prototype.sendBeacon = function (url, body) {
  window.__sends.push(String(url));
  return beacon.call(this, url, body);
};
const fetched = window.fetch;
window.fetch = function (url, init) {
  window.__sends.push(String(url));
  return fetched.call(this, url, init);
};
"""
"""Every send the tracker makes, recorded in the page as it is made (the tracker calls
``sendBeacon``/``fetch`` synchronously from its handlers)."""
SETTLED = """() => new Promise((done) => {
  const after = () => setTimeout(done, 0);  // after the tracker's own setTimeout(flush, 0)
  if (document.readyState === 'complete') after(); else addEventListener('load', after);
})"""


@pytest.mark.parametrize(
    ("page", "init_script", "sends"),
    [
        ("index.html", "localStorage.setItem('hitstream_ignore', 'true')", False),
        (
            "dnt.html",
            "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})",
            False,
        ),
        ("index.html", "", True),  # the control: the same steps, recorded, do send
    ],
    ids=["opt-out", "do-not-track", "tracked"],
)
def test_browser_that_declined_sends_nothing(
    browser: Browser, site_url: str, page: str, init_script: str, sends: bool
) -> None:
    """No waiting for something not to happen: the page records each send as the tracker
    makes it, and the check runs once every handler that could send has run."""
    context = browser.new_context()
    context.add_init_script(RECORD_SENDS + init_script)
    site = context.new_page()
    loaded: list[str] = []
    site.on("request", lambda request: loaded.append(request.url))
    site.goto(f"{site_url}/{page}")
    site.evaluate(SETTLED)  # the first pageview is held until just after the load event
    site.click("#signup")  # custom event: sent from the click handler, synchronously
    site.click("#to-pricing")  # SPA navigation: sent from pushState, synchronously
    recorded = site.evaluate("window.__sends")
    assert any(url.endswith("/js/hitstream.js") for url in loaded)  # the tracker did load
    events = [url for url in recorded if url.endswith("/api/v1/events")]
    if sends:
        # early (queued), the first pageview, signup, the first page's engagement, /pricing
        assert len(events) == 5
    else:
        assert events == []
    context.close()


def test_do_not_track_is_ignored_without_the_attribute(browser: Browser, site_url: str) -> None:
    context = browser.new_context()
    context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    site = context.new_page()
    with site.expect_request(lambda request: "/api/v1/events" in request.url, timeout=3_000):
        site.goto(f"{site_url}/other.html")
    context.close()


def test_the_dashboard_reconnects_after_a_server_restart_and_catches_up(
    browser: Browser, tmp_path: Path
) -> None:
    """SIGKILL the server under an open dashboard: it says so, retries with backoff, and once
    the server is back on the same address it is live again, with what was stored before the
    crash and what arrived after."""
    site = "restart.test"
    first = ServerProcess(tmp_path / "data").start()
    try:
        send(first, site, "/a", "/b")
        dashboard = open_dashboard(browser, first, site=site)
        expect(card(dashboard, "Pageviews")).to_have_text("2", timeout=5_000)
        first.kill()  # SIGKILL, then wait for its children (they die a moment later)
        expect(dashboard.locator("#conn")).to_have_class("conn reconnecting", timeout=5_000)
        expect(dashboard.locator("#conn")).to_contain_text("reconnecting in")
    finally:
        first.kill()
    second = ServerProcess(tmp_path / "data", port=first.port).start()
    try:
        expect(dashboard.locator("#conn")).to_have_class("conn live", timeout=20_000)
        expect(card(dashboard, "Pageviews")).to_have_text("2", timeout=5_000)  # kept by the log
        send(second, site, "/c")
        expect(card(dashboard, "Pageviews")).to_have_text("3", timeout=5_000)  # pushed again
        expect(dashboard.locator("#rows-pages")).to_contain_text("/c", timeout=5_000)
        dashboard.close()
    finally:
        second.terminate(timeout=60)
        second.kill()


def test_screenshots_at_desktop_and_phone_size(
    browser: Browser, live_server: ServerProcess
) -> None:
    """The phone page opens after the events: it gets them in its snapshot (recent events)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    site = "shots.e2e.test"
    desktop = open_dashboard(browser, live_server, site=site)
    send(live_server, site, "/", "/pricing", "/blog/launch", "/pricing", "/")
    phone = open_dashboard(browser, live_server, 390, 844, site=site)
    for name, page in (("desktop", desktop), ("phone", phone)):
        expect(page.locator("#rows-pages")).to_contain_text("/blog/launch", timeout=5_000)
        expect(page.locator("#stream .ev")).to_have_count(5, timeout=5_000)
        page.wait_for_timeout(1_300)  # let the arrival highlight fade
        path = SCREENSHOTS / f"dashboard-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 10_000
        # nothing sticks out sideways, on a phone least of all
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name}: {overflow}px of horizontal overflow"
        page.close()


RECORD_BEACONS = """
window.__beacons = [];
const beacon = Navigator.prototype.sendBeacon;
Navigator.prototype.sendBeacon = function (url, body) {
  window.__beacons.push(body);
  return beacon.call(this, url, body);
};
"""
"""Every beacon body the tracker sends, kept in the page (read with ``BEACONS``)."""
BEACONS = "() => Promise.all(window.__beacons.map((b) => b.text()))"
HIDE = """() => {
  Object.defineProperty(document, 'hidden', {value: true, configurable: true});
  Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
"""What the browser does when the tab is switched away from (headless pages stay visible)."""
SHOW = """() => {
  Object.defineProperty(document, 'hidden', {value: false, configurable: true});
  Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""
"""What the browser does when the tab is switched back to."""


def sent_events(page: Page) -> list[dict[str, Any]]:
    return [json.loads(body) for body in page.evaluate(BEACONS)]


def stats_of(server: ServerProcess, kind: str, **params: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/v1/stats/{kind}", params=params, headers=server.headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def eventually(check: Callable[[], object], tries: int = 100) -> None:
    """Ask again (0.1 s apart, bounded) until ``check`` holds: the processor writes in batches."""
    for _ in range(tries):
        if check():
            return
        time.sleep(0.1)
    assert check()


def test_the_tracker_reports_engagement_when_hidden_and_the_time_after_a_return(
    browser: Browser, live_server: ServerProcess, site_url: str
) -> None:
    """Read, hide the tab (the report: time and depth), come back for a while, hide it
    again (a follow-up: that time only), leave (nothing more: hidden since)."""
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    context.add_init_script(RECORD_BEACONS)
    site = context.new_page()
    opened = time.monotonic()
    site.goto(f"{site_url}/engage.html")
    site.evaluate(SETTLED)
    site.evaluate("() => window.scrollTo(0, 1500)")
    site.wait_for_function("() => window.scrollY === 1500")
    height = site.evaluate("() => document.documentElement.scrollHeight")
    viewport = site.evaluate("() => window.innerHeight")
    site.wait_for_timeout(1_000)  # time spent reading: the figure must include it
    site.evaluate(HIDE)
    hidden_after = (time.monotonic() - opened) * 1000
    site.wait_for_timeout(300)  # away: counts nowhere
    site.evaluate(SHOW)
    shown_at = time.monotonic()
    site.wait_for_timeout(700)
    site.evaluate(HIDE)
    back_for = (time.monotonic() - shown_at) * 1000
    site.evaluate("() => dispatchEvent(new PageTransitionEvent('pagehide'))")  # then leaving
    events = sent_events(site)
    assert [e["type"] for e in events] == ["pageview", "engagement", "engagement"]
    engagement, more = events[1], events[2]
    assert engagement["url"] == more["url"] == f"{site_url}/engage.html"
    assert 1_000 <= engagement["engaged_ms"] <= hidden_after
    assert engagement["scroll_depth"] == round((1500 + viewport) * 100 / height)
    assert more["name"] == "follow_up" and "scroll_depth" not in more
    assert 700 <= more["engaged_ms"] <= back_for
    context.close()
    # stored: the page's time on page is both reports' time over one reported view, its
    # scroll depth the first report's, and neither is a pageview
    query = {"site_id": ENGAGE_SITE, "period": "day", "filters": "page==/engage.html"}
    want_time = round((engagement["engaged_ms"] + more["engaged_ms"]) / 1000, 2)
    eventually(
        lambda: (
            stats_of(live_server, "aggregate", **query, metrics="time_on_page")["results"][
                "time_on_page"
            ]["value"]
            == want_time
        )
    )
    both = stats_of(
        live_server, "aggregate", **query, metrics="pageviews,events,time_on_page,scroll_depth"
    )["results"]
    assert both["scroll_depth"]["value"] == engagement["scroll_depth"]
    assert both["pageviews"]["value"] == 1
    assert both["events"]["value"] == 1  # the pageview; the engagement event is no event


def test_a_tagged_element_click_is_recorded_with_its_props(
    browser: Browser, live_server: ServerProcess, site_url: str
) -> None:
    context = browser.new_context()
    context.add_init_script(RECORD_BEACONS)
    site = context.new_page()
    site.goto(f"{site_url}/engage.html#tagged")
    site.evaluate(SETTLED)
    site.click("#buy-button b")  # inside the tagged element
    clicks = [e for e in sent_events(site) if e["type"] == "click"]
    assert [(c["name"], c["props"]) for c in clicks] == [
        ("element", {"element_name": "buy", "element_id": "buy-button", "element_text": "Buy now"})
    ]
    context.close()
    eventually(
        lambda: (
            stats_of(
                live_server,
                "breakdown",
                site_id=ENGAGE_SITE,
                period="day",
                property="prop:element_name",
                metrics="events",
                filters="event_name==element",
            )["results"]
            == [{"value": "buy", "events": 1}]
        )
    )


MOBILE_CHROME = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
OLDER_FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0"


def test_doughnut_and_bar_charts_show_devices_browsers_and_event_types(
    browser: Browser, live_server: ServerProcess
) -> None:
    """Three visitors (two Firefox desktops, one Chrome phone); each views a page, two click,
    one signs up: the charts' segments are what the test counts from what it sent."""
    chart_site = "charts.e2e.test"
    register(live_server, chart_site)
    sent: list[tuple[str, str]] = []  # (user agent, type)
    plan = [
        (FIREFOX, ["pageview", "click", "custom"]),
        (OLDER_FIREFOX, ["pageview", "click"]),
        (MOBILE_CHROME, ["pageview"]),
    ]
    for agent, kinds in plan:
        events = [
            {
                "site_id": chart_site,
                "type": kind,
                "path": "/",
                "name": "x" if kind != "pageview" else None,
            }
            for kind in kinds
        ]
        answer = httpx.post(
            f"{live_server.url}/api/v1/events", json=events, headers={"User-Agent": agent}
        )
        assert answer.status_code == 202, answer.text
        sent += [(agent, kind) for kind in kinds]
    by_type: dict[str, int] = {}
    for _, kind in sent:
        by_type[kind] = by_type.get(kind, 0) + 1
    dashboard = open_dashboard(browser, live_server, site=chart_site)
    bars = dashboard.locator("#charts-events figure[data-chart=bars] .bar-rect")
    expect(bars).to_have_count(len(by_type), timeout=5_000)
    drawn = {
        bars.nth(i).get_attribute("data-value"): int(bars.nth(i).get_attribute("data-count") or 0)
        for i in range(len(by_type))
    }
    assert drawn == by_type
    for prop in ("browser", "device"):
        segments = dashboard.locator(f"#charts-devices figure[data-prop={prop}] .segment")
        expect(segments).to_have_count(2, timeout=5_000)  # Firefox and Chrome; desktop and phone
        counts = sorted(int(segments.nth(i).get_attribute("data-count") or 0) for i in range(2))
        assert counts == [1, 2]  # visitors: the two Firefox desktops, the one phone
        values = {segments.nth(i).get_attribute("data-value") for i in range(2)}
        table = dashboard.locator("#rows-devices")
        if prop == "browser":  # the table beside it shows the same values
            for value in values:
                expect(table).to_contain_text(str(value))
    dashboard.close()


def test_the_data_quality_panel_names_what_was_refused(
    browser: Browser, live_server: ServerProcess
) -> None:
    """A refused event counts under its site and reason; a whole request refused before any
    site could be read from it is another sender's for all this site can tell: not on the
    site's panel, in the admins' answer of every site. Past eight reasons the last row sums
    the rest."""
    site = "quality.e2e.test"
    send(live_server, site, "/")
    bad = [{"site_id": site, "path": "/", "screen_width": -5}] * 2
    # nine more reasons, one event each: a props key too long is named in the reason
    bad += [{"site_id": site, "path": "/", "props": {f"{n}" + "k" * 300: 1}} for n in range(9)]
    answer = httpx.post(
        f"{live_server.url}/api/v1/events", json=bad, headers={"User-Agent": FIREFOX}
    )
    assert answer.status_code == 422
    reasons = {e["errors"][0]["reason"] for e in answer.json()["rejected"]}
    assert len(reasons) == 10, reasons  # one per long key, one for the width
    truncated = httpx.post(
        f"{live_server.url}/api/v1/events",
        content=b'{"site_id": "quality.e2e',
        headers={"User-Agent": FIREFOX, "content-type": "application/json"},
    )
    assert truncated.status_code == 400
    dashboard = open_dashboard(browser, live_server, site=site)
    rejected = dashboard.locator("#rejected li")
    own = rejected.filter(has_text="screen_width: must be between 0 and 20000")
    expect(own.locator(".num")).to_have_text("2", timeout=5_000)
    expect(rejected).to_have_count(8)
    expect(rejected.last).to_contain_text("3 other reasons")
    expect(rejected.last.locator(".num")).to_have_text("3")
    expect(rejected.filter(has_text="not JSON")).to_have_count(0)
    everything = httpx.get(f"{live_server.url}/api/v1/quality", headers=live_server.headers)
    assert everything.status_code == 200, everything.text
    assert everything.json()["rejected"]["request 400: body: not JSON"] >= 1
    dashboard.close()


def test_durations_keep_their_tenths_and_another_days_events_say_the_day(
    browser: Browser, live_server: ServerProcess
) -> None:
    """Two actions of 12 and 13 s average 12.5 s (it read "13s"); an event of yesterday in
    the live list says its day (it was listed by its time alone, under today's)."""
    site = "tenths.e2e.test"
    register(live_server, site)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = int((midnight - timedelta(minutes=1)).timestamp() * 1000)  # < 24 h ago
    events = [
        {"site_id": site, "type": "custom", "name": "save", "path": "/", "duration_ms": ms}
        for ms in (12_000, 13_000)
    ] + [{"site_id": site, "type": "pageview", "path": "/old", "timestamp": yesterday}]
    post_events(live_server, events)
    dashboard = open_dashboard(browser, live_server, site=site)
    dashboard.goto(f"{live_server.url}/?site={site}&period=7d")
    expect(card(dashboard, "Avg. action duration")).to_have_text("12.5s", timeout=5_000)
    old = dashboard.locator("#stream li", has_text="/old").locator("time")
    expect(old).to_have_count(1, timeout=5_000)
    shown = old.inner_text()
    day = (midnight - timedelta(minutes=1)).day  # the site's zone (UTC), not the browser's
    assert re.fullmatch(rf"\D+ {day} \d\d:\d\d:\d\d|{day} \D+ \d\d:\d\d:\d\d", shown), shown
    today = dashboard.locator("#stream li", has_text="save").first.locator("time").inner_text()
    assert re.fullmatch(r"\d\d:\d\d:\d\d", today), today
    dashboard.close()


def test_times_are_the_sites_and_late_events_take_their_place_in_the_live_list(
    browser: Browser, live_server: ServerProcess
) -> None:
    """A site in Kathmandu (+05:45) seen from a browser in Los Angeles: the live list's
    times are the site's, as its "Today" is, and the chart says so (they were the viewer's);
    an event that arrives late is listed by its time, below newer ones (it went on top)."""
    site, zone = "zone.e2e.test", "Asia/Kathmandu"
    live_server.add_site(site, allowed_hosts=LOCAL_HOSTS, timezone=zone)
    dashboard = open_dashboard(browser, live_server, site=site, timezone_id="America/Los_Angeles")
    expect(dashboard.locator("#tz-note")).to_have_text("Times in Asia/Kathmandu")
    now = int(time.time() * 1000)
    post_events(live_server, [{"site_id": site, "path": "/fresh", "timestamp": now - 1_000}])
    stream = dashboard.locator("#stream li")
    expect(stream.first).to_contain_text("/fresh", timeout=10_000)
    post_events(live_server, [{"site_id": site, "path": "/older", "timestamp": now - 300_000}])
    expect(stream).to_have_count(2, timeout=10_000)
    assert [stream.nth(i).locator(".what").inner_text() for i in range(2)] == ["/fresh", "/older"]
    fresh = datetime.fromtimestamp((now - 1_000) / 1000, ZoneInfo(zone)).strftime("%H:%M:%S")
    assert stream.first.locator("time").inner_text() == fresh
    dashboard.close()


def test_custom_is_lit_once_its_dates_apply(browser: Browser, live_server: ServerProcess) -> None:
    """Clicking Custom opens its dates and lights nothing yet: the figures are still the
    period shown (Custom was lit over the previous period's figures until Apply)."""
    dashboard = open_dashboard(browser, live_server, site="custom.e2e.test")
    custom = dashboard.locator('#periods button[data-period="custom"]')
    today = dashboard.locator('#periods button[data-period="day"]')
    custom.click()
    expect(dashboard.locator("#custom-range")).to_be_visible()
    expect(custom).not_to_have_class(re.compile(r"\bactive\b"))
    expect(custom).to_have_class(re.compile(r"\bpending\b"))
    expect(today).to_have_class(re.compile(r"\bactive\b"))
    assert "period=day" in dashboard.url
    dashboard.locator("#custom-range button[type=submit]").click()
    expect(custom).to_have_class(re.compile(r"\bactive\b"))
    expect(custom).not_to_have_class(re.compile(r"\bpending\b"))
    expect(dashboard).to_have_url(re.compile(r"period=custom&from=\d{4}-\d\d-\d\d&to="))
    today.click()
    expect(dashboard.locator("#custom-range")).to_be_hidden()
    dashboard.close()


def test_a_filter_that_matches_nothing_says_so_and_rates_of_no_visits_are_dashes(
    browser: Browser, live_server: ServerProcess
) -> None:
    """Of no visits there is no bounce rate nor duration (they read "0%", "0s", "0.00"), and
    an empty table under a filter says the filter let nothing through, once per panel (it
    said "Nothing here yet." under each chart and table)."""
    site = "nomatch.e2e.test"
    send(live_server, site, "/a", "/b")
    dashboard = open_dashboard(browser, live_server, site=site)
    expect(card(dashboard, "Bounce rate")).to_have_text("0%", timeout=5_000)  # one visit, 2 pages
    dashboard.goto(f"{live_server.url}/?site={site}&period=day&filters=page%3D%3D%2Fnone")
    expect(card(dashboard, "Visits")).to_have_text("0", timeout=5_000)
    for label in ("Bounce rate", "Visit duration", "Views per visit"):
        expect(card(dashboard, label)).to_have_text("–")
    pages = dashboard.locator("#rows-pages .placeholder")
    expect(pages).to_have_text("Nothing matches the filters.")
    browsers = dashboard.locator("#panel-devices .placeholder")
    expect(browsers).to_have_count(1)
    dashboard.close()
