"""A real browser: the dashboard's goals panel and funnel panel show the numbers this test
works out from the visits it sends (through the collector of a real ``hitstream serve``)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import (
    FIREFOX,
    PASSWORD,
    add_user,
    browser,
    form_login,
    open_dashboard,
    register,
)
from tests.server import ServerProcess

__all__ = ["browser"]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SITE = "goals.e2e.test"
VISITS: list[list[dict[str, Any]]] = [
    [{"path": "/"}, {"path": "/pricing"}, {"type": "custom", "name": "signup", "path": "/pricing",
                                           "props": {"plan": "pro"}}],
    [{"path": "/"}, {"path": "/pricing-plans"}],
    [{"path": "/"}, {"path": "/blog"}, {"type": "custom", "name": "signup", "path": "/blog",
                                        "props": {"plan": "free"}}],
    [{"path": "/pricing/faq"}],
]  # fmt: skip
PRICING = ("/pricing", "/pricing-plans")  # what /pricing* matches among the paths above


def is_signup(e: dict[str, Any]) -> bool:
    return e.get("name") == "signup" and e.get("props") == {"plan": "pro"}


def pct(part: int, whole: int) -> str:
    value = round(100 * part / whole, 1)
    return f"{value:g}%"


def test_goals_and_funnel_panels_show_the_expected_numbers(
    browser: Browser, live_server: ServerProcess
) -> None:
    register(live_server, SITE)
    for number, visit in enumerate(VISITS):
        for event in visit:  # one request each: every event its own millisecond, in order
            body = {"site_id": SITE, "type": "pageview", **event}
            ua = f"{FIREFOX} visitor/{number}"
            answer = httpx.post(
                f"{live_server.url}/api/v1/events", json=body, headers={"User-Agent": ua}
            )
            assert answer.status_code == 202, answer.text
            time.sleep(0.005)
    for goal in ({"name": "Pricing", "page": "/pricing*"},):
        made = httpx.post(
            f"{live_server.url}/api/v1/sites/{SITE}/goals", json=goal, headers=live_server.headers
        )
        assert made.status_code == 201, made.text

    visitors = len(VISITS)
    pricing = [v for v in VISITS if any(e.get("path") in PRICING and "type" not in e for e in v)]
    signups = [v for v in VISITS if any(is_signup(e) for e in v)]
    dashboard = open_dashboard(browser, live_server, site=SITE)

    # the second goal through the panel's form, as a user adds it
    dashboard.fill("#goal-name", "Signup")
    dashboard.select_option("#goal-kind", "event")
    dashboard.fill("#goal-target", "signup")
    dashboard.fill("#goal-props", "plan=pro")
    dashboard.click("#add-goal button[type=submit]")

    rows = dashboard.locator("#goals-table")
    price_row = rows.locator('.goal-row[data-goal="Pricing"]')
    expect(price_row.locator(".conversions")).to_have_text(str(len(pricing)), timeout=10_000)
    expect(price_row.locator(".events")).to_have_text(str(len(pricing)))
    expect(price_row.locator(".rate")).to_have_text(pct(len(pricing), visitors))
    signup_row = rows.locator('.goal-row[data-goal="Signup"]')
    expect(signup_row.locator(".conversions")).to_have_text(str(len(signups)), timeout=10_000)
    expect(signup_row.locator(".rate")).to_have_text(pct(len(signups), visitors))

    # a funnel typed as steps: home, then a pricing page, then a pro signup, in order
    steps = ["page==/", "goal==Pricing", "goal==Signup"]
    reached = [
        sum(1 for v in VISITS if v[0]["path"] == "/"),
        sum(1 for v in VISITS if v[0]["path"] == "/" and v in pricing),
        sum(1 for v in VISITS if v[0]["path"] == "/" and v in pricing and v in signups),
    ]
    dashboard.fill("#funnel-steps", "\n".join(steps))
    dashboard.click("#funnel-form button[type=submit]")
    bars = dashboard.locator("#funnel-bars .funnel-step")
    expect(bars).to_have_count(len(steps), timeout=10_000)
    heads = dashboard.locator("#funnel-bars .funnel-head .num")
    expect(heads).to_have_text(["visitors", "of first", "lost"])  # what the numbers are
    for i, count in enumerate(reached):
        expect(bars.nth(i).locator(".visitors")).to_have_text(str(count))
        expect(bars.nth(i).locator(".rate")).to_have_text(pct(count, reached[0]))
        expect(bars.nth(i).locator(".label")).to_contain_text(steps[i])
    # saved (with a window), then picked from the list: the same bars
    dashboard.fill("#funnel-window", "30")
    dashboard.fill("#funnel-name", "Signup flow")
    dashboard.click("#funnel-save")
    expect(dashboard.locator("#funnel-pick")).to_have_value("Signup flow", timeout=10_000)
    expect(bars.nth(2).locator(".visitors")).to_have_text(str(reached[2]))
    # steps edited by hand leave the saved funnel: Show runs what is typed (a new user's
    # check found the saved one re-run silently under other steps)
    dashboard.fill("#funnel-steps", "\n".join(steps[:2]))
    expect(dashboard.locator("#funnel-pick")).to_have_value("")
    dashboard.click("#funnel-form button[type=submit]")
    expect(bars).to_have_count(2, timeout=10_000)
    expect(bars.nth(1).locator(".visitors")).to_have_text(str(reached[1]))
    expect(bars.nth(1).locator(".label")).to_have_attribute("title", steps[1])

    # a goal goes only once its removal is confirmed
    made = httpx.post(
        f"{live_server.url}/api/v1/sites/{SITE}/goals",
        json={"name": "Blog", "page": "/blog"},
        headers=live_server.headers,
    )
    assert made.status_code == 201, made.text
    dashboard.reload()
    blog = rows.locator('.goal-row[data-goal="Blog"]')
    expect(blog).to_have_count(1, timeout=10_000)
    dashboard.once("dialog", lambda dialog: dialog.dismiss())
    blog.locator(".remove-goal").click()
    time.sleep(0.5)  # a removal not confirmed sends nothing: the goal is still there
    assert "Blog" in goal_names(live_server)
    dashboard.once("dialog", lambda dialog: dialog.accept())
    blog.locator(".remove-goal").click()
    expect(blog).to_have_count(0, timeout=10_000)
    assert "Blog" not in goal_names(live_server)

    # picking a saved funnel, then "Typed steps" again, gives back what was typed (the saved
    # funnel's 30-minute window stayed in the form: a window nobody typed)
    dashboard.select_option("#funnel-pick", "Signup flow")
    expect(dashboard.locator("#funnel-window")).to_have_value("30")
    dashboard.select_option("#funnel-pick", "")
    expect(dashboard.locator("#funnel-window")).to_have_value("")
    expect(dashboard.locator("#funnel-steps")).to_have_value("")

    # a goal's row filters the dashboard by it, as every table's rows do; the cards then
    # show its conversions
    price_row.locator(".label").click()
    expect(dashboard).to_have_url(re.compile(r"filters=goal%3D%3DPricing"))
    expect(dashboard.locator("#chips")).to_contain_text("Goal is Pricing")

    def card(label: str) -> Any:
        heading = dashboard.locator("h3", has_text=re.compile(f"^{label}$"))
        return dashboard.locator("#cards article.card", has=heading).locator(".value")

    expect(card("Conversions")).to_have_text(str(len(pricing)), timeout=10_000)
    expect(card("Conversion rate")).to_have_text(pct(len(pricing), visitors))
    dashboard.locator("#chips .chip-x").click()  # no goal filter: no conversion cards
    expect(dashboard.locator("#cards article.card", has_text="Conversions")).to_be_hidden()
    dashboard.close()

    # a viewer of the site reads the goals and runs funnels, and is offered no change
    add_user(live_server, "viewer-goals@e2e.test", "viewer", [SITE])
    context = browser.new_context()
    cookie = form_login(live_server, "viewer-goals@e2e.test", PASSWORD)
    context.add_cookies([{"name": "hitstream_session", "value": cookie, "url": live_server.url}])
    viewer = context.new_page()
    viewer.goto(f"{live_server.url}/?site={SITE}&period=day")
    viewer_rows = viewer.locator("#goals-table")
    expect(viewer_rows.locator('.goal-row[data-goal="Pricing"] .conversions')).to_have_text(
        str(len(pricing)), timeout=10_000
    )
    expect(viewer.locator("#add-goal")).to_be_hidden()
    expect(viewer_rows.locator(".remove-goal")).to_have_count(2)
    for i in range(2):
        expect(viewer_rows.locator(".remove-goal").nth(i)).to_be_hidden()
    expect(viewer.locator("#funnel-save")).to_be_hidden()
    expect(viewer.locator("#funnel-pick")).to_contain_text("Signup flow")  # reads it
    viewer.select_option("#funnel-pick", "Signup flow")
    expect(viewer.locator("#funnel-delete")).to_be_hidden()  # and deletes nothing
    context.close()

    # a goal a saved funnel uses goes only with the funnel, which the panel can delete (it
    # could not: the error said "remove those funnels first", and only the API could); the
    # error goes once something succeeds
    admin = open_dashboard(browser, live_server, site=SITE)
    signup_row = admin.locator('#goals-table .goal-row[data-goal="Signup"]')
    expect(signup_row).to_have_count(1, timeout=10_000)
    admin.on("dialog", lambda dialog: dialog.accept())
    signup_row.locator(".remove-goal").click()
    expect(admin.locator("#goal-error")).to_contain_text("Signup flow", timeout=10_000)
    expect(admin.locator("#funnel-delete")).to_be_hidden()  # typed steps: nothing to delete
    admin.select_option("#funnel-pick", "Signup flow")
    admin.click("#funnel-delete")
    expect(admin.locator("#funnel-pick option")).to_have_count(1, timeout=10_000)
    signup_row.locator(".remove-goal").click()
    expect(signup_row).to_have_count(0, timeout=10_000)
    expect(admin.locator("#goal-error")).to_have_text("")
    assert "Signup" not in goal_names(live_server)
    admin.close()


def goal_names(server: ServerProcess) -> list[str]:
    listed = httpx.get(f"{server.url}/api/v1/sites/{SITE}/goals", headers=server.headers)
    assert listed.status_code == 200, listed.text
    return [g["name"] for g in listed.json()["goals"]]
