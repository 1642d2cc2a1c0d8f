"""Sites and access in a real browser (Chromium) against a real ``hitstream serve``.

The first run as a newcomer lives it: the setup link printed by ``serve`` -> create the admin
-> add a site -> paste the snippet it shows into a test page -> the pageview shows on the
dashboard. Then: a viewer sees only their site; logout; a shared link shows a read-only
dashboard to someone without an account; a login form without its CSRF token is refused.
Screenshots go to tests/e2e/screenshots/ (looked at by a person, not asserted on pixels).
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.test_browser import (
    FIREFOX,
    PASSWORD,
    SCREENSHOTS,
    _Quiet,
    add_user,
    browser,  # noqa: F401  (the fixture)
    card,
)
from tests.server import ServerProcess, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ADMIN = "owner@e2e.test"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server that has never had a user: it prints a setup link. At the log level a
    newcomer's server has (info: the HTTP server's lines too)."""
    data = tmp_path_factory.mktemp("firstrun") / "data"
    server = ServerProcess(data, env={"HITSTREAM_LOG_LEVEL": "info"}).start()
    yield server
    try:
        server.terminate(timeout=60)
    finally:
        server.kill()


def serve_page(root: Path, html: str) -> tuple[http.server.ThreadingHTTPServer, int]:
    (root / "index.html").write_text(html)
    port = free_port()
    handler = functools.partial(_Quiet, directory=str(root))
    site = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    return site, port


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000


def login_in_browser(page: Page, server: ServerProcess, email: str) -> None:
    page.goto(f"{server.url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login button[type=submit]")


def test_first_run_to_a_pageview_on_the_dashboard(
    browser: Browser,  # noqa: F811
    fresh: ServerProcess,
    tmp_path: Path,
) -> None:
    found = re.search(r"(http://\S+/setup\?token=\S+)", fresh.output())
    assert found, fresh.output()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(found.group(1))
    shot(page, "setup")
    page.fill("input[name=email]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    page.click("#setup button[type=submit]")
    expect(page).to_have_url(re.compile(r"/sites\?welcome=1$"))
    expect(page.locator("#welcome")).to_be_visible()
    page.fill("#new-site", "localhost")
    page.click("#add-site button[type=submit]")
    snippet = page.locator("#added-snippet")
    expect(snippet).to_contain_text('data-site="localhost"')
    expect(page.locator('section.site-card[data-site="localhost"]')).to_be_visible()
    expect(page.locator("pre.snippet")).to_have_count(1)  # the note's; not its card's again
    shot(page, "sites-added")
    html = (
        '<!doctype html><html><head><meta charset="utf-8"><title>My site</title>'
        f"{snippet.inner_text()}</head><body><h1>Hello</h1></body></html>"
    )
    site_server, port = serve_page(tmp_path, html)
    try:
        page.click(".site-card[data-site=localhost] a:has-text('Open dashboard')")
        expect(page.locator("#conn")).to_have_class("conn live", timeout=10_000)
        visitor = browser.new_context(user_agent=FIREFOX).new_page()
        visitor.goto(f"http://localhost:{port}/")
        expect(card(page, "Pageviews")).to_have_text("1", timeout=5_000)
        expect(page.locator("#stream")).to_contain_text("/", timeout=5_000)
        page.wait_for_timeout(1_300)
        shot(page, "first-pageview")
        # the setup link was used up
        again = context.new_page()
        again.goto(found.group(1))
        expect(again.locator("h1")).to_have_text("Already set up")
        visitor.context.close()
    finally:
        site_server.shutdown()
        site_server.server_close()
    context.close()


def test_a_viewer_sees_only_their_site_and_logs_out(
    browser: Browser,  # noqa: F811
    fresh: ServerProcess,
) -> None:
    for site in ("mine.e2e.test", "theirs.e2e.test"):
        fresh.add_site(site)
    add_user(fresh, "viewer@e2e.test", "viewer", ["mine.e2e.test"])
    context = browser.new_context()
    page = context.new_page()
    login_in_browser(page, fresh, "viewer@e2e.test")
    expect(page.locator("#conn")).to_have_class("conn live", timeout=10_000)
    options = page.locator("#site option")
    expect(options).to_have_count(1)
    assert options.first.get_attribute("value") == "mine.e2e.test"
    shot(page, "viewer-dashboard")
    page.goto(f"{fresh.url}/sites")
    expect(page.locator(".site-card")).to_have_count(1)
    expect(page.locator(".site-card h2")).to_have_text("mine.e2e.test")
    expect(page.locator("#add-panel")).to_be_hidden()
    # the other site is refused on the live channel as in the API
    page.goto(f"{fresh.url}/?site=theirs.e2e.test")
    expect(page.locator("#conn-label")).to_have_text("not allowed", timeout=10_000)
    # the site picker names it as not the viewer's (it read like one of theirs)
    expect(page.locator("#site option:checked")).to_have_text("theirs.e2e.test (not yours)")
    page.click("#logout")
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(f"{fresh.url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    context.close()


def test_a_shared_link_shows_a_read_only_dashboard(
    browser: Browser,  # noqa: F811
    fresh: ServerProcess,
) -> None:
    site = "shared.e2e.test"
    fresh.add_site(site)
    add_user(fresh, ADMIN, "admin", [])  # made by the first-run test, if it ran first
    sent = httpx.post(
        f"{fresh.url}/api/v1/events",
        json=[{"site_id": site, "path": p} for p in ("/", "/pricing", "/pricing")],
        headers={"user-agent": FIREFOX},
    )
    assert sent.status_code == 202
    typo = httpx.post(  # a snippet whose data-site names no registered site
        f"{fresh.url}/api/v1/events",
        json={"site_id": "shraed.e2e.test", "path": "/"},
        headers={"user-agent": FIREFOX},
    )
    assert typo.status_code == 422
    admin = browser.new_context()
    page = admin.new_page()
    login_in_browser(page, fresh, ADMIN)
    page.goto(f"{fresh.url}/sites")
    # the admin is told (such refusals belong to no site: no dashboard showed them)
    expect(page.locator("#unregistered-note")).to_contain_text(
        "refused for a site that is not registered", timeout=5_000
    )
    card_of_site = page.locator(f".site-card[data-site='{site}']")
    card_of_site.locator("summary", has_text="Shared links").click()
    card_of_site.locator(".links input[name=name]").fill("for the board")
    card_of_site.locator(".links button[type=submit]").click()
    link = card_of_site.locator(".share-url")
    expect(link).to_contain_text(f"/share/{site}?auth=hs_share_")
    expect(card_of_site.locator(".links .list")).to_contain_text("for the board")
    shot(page, "sites-shared-link")
    url = link.inner_text()
    stranger = browser.new_context(viewport={"width": 1280, "height": 900})
    shared = stranger.new_page()
    shared.goto(url)
    expect(shared.locator("#conn")).to_have_class("conn live", timeout=10_000)
    expect(card(shared, "Pageviews")).to_have_text("3", timeout=5_000)
    expect(shared.locator("#rows-pages")).to_contain_text("/pricing")
    expect(shared.locator("#site")).to_be_hidden()  # one site, read only
    expect(shared.locator("#shared-title")).to_have_text(f"{site} · read only")
    expect(shared.locator("#nav")).to_be_hidden()
    shared.wait_for_timeout(500)
    shot(shared, "shared-dashboard")
    # without the token: nothing
    assert httpx.get(f"{fresh.url}/share/{site}").status_code == 404
    # the dashboard sent the token in its WebSocket URL, which the server logs: not the token
    token = url.partition("auth=")[2]
    assert token.startswith("hs_share_")
    assert "WebSocket /api/v1/live?" in fresh.output()
    assert token not in fresh.output()
    stranger.close()
    # revoking asks first (it was one click, with no undo); then the link shows nothing
    revoke = card_of_site.locator(".links .list button", has_text="Revoke")
    page.once("dialog", lambda dialog: dialog.dismiss())
    revoke.click()
    page.wait_for_timeout(300)
    assert httpx.get(url).status_code == 200  # not confirmed: still shared
    page.once("dialog", lambda dialog: dialog.accept())
    revoke.click()
    expect(card_of_site.locator(".links .list")).to_contain_text("No shared links.", timeout=5_000)
    assert httpx.get(url).status_code == 404
    admin.close()


def test_a_login_form_without_its_csrf_token_is_refused(
    browser: Browser,  # noqa: F811
    fresh: ServerProcess,
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{fresh.url}/login")
    page.evaluate("document.querySelector('input[name=csrf]').remove()")
    page.fill("input[name=email]", ADMIN)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_response(lambda r: r.url.endswith("/login") or "/login?" in r.url) as sent:
        page.click("#login button[type=submit]")
    assert sent.value.status == 403
    expect(page.locator(".form-error")).to_contain_text("did not come from this page")
    assert not [c for c in context.cookies() if c["name"] == "hitstream_session"]
    shot(page, "login-refused")
    context.close()
