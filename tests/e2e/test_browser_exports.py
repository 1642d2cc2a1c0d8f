"""A real browser: the dashboard URL restores filters (the new operators) and the comparison,
the filter form adds a filter, and the CSV download gives the dashboard's tables as a ZIP."""

from __future__ import annotations

import csv
import io
import zipfile
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, expect

from tests.e2e.test_browser import browser, card, open_dashboard, send
from tests.server import ServerProcess

__all__ = ["browser"]  # the fixture, shared with test_browser

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SITE = "exports.e2e.test"


def test_url_restores_filters_and_comparison_and_the_csv_download_works(
    browser: Browser, live_server: ServerProcess
) -> None:
    paths = ["/blog/1", "/blog/22", "/pricing", "/blog/x"]
    send(live_server, SITE, *paths)
    dashboard = open_dashboard(browser, live_server, site=SITE)
    expect(card(dashboard, "Pageviews")).to_have_text(str(len(paths)), timeout=5_000)

    # a shared URL: a pattern filter and a year-over-year comparison
    shared = dashboard.context.new_page()
    shared.goto(
        f"{live_server.url}/?site={SITE}&period=day&filters=page%3D~%5E%2Fblog%2F%5Cd%2B%24"
        "&compare=year_over_year"
    )
    expect(shared.locator("#chips")).to_contain_text("matches", timeout=5_000)
    expect(shared.locator("#chips")).to_contain_text("^/blog/\\d+$")
    expect(card(shared, "Pageviews")).to_have_text("2", timeout=5_000)  # /blog/1, /blog/22
    expect(shared.locator("#compare")).to_have_value("year_over_year")

    # the filter form: replace it with "does not contain blog"
    shared.select_option("#filter-prop", "page")
    shared.select_option("#filter-op", "!~")
    shared.fill("#filter-value", "blog")
    shared.click("#filter-form button[type=submit]")
    expect(shared.locator("#chips")).to_contain_text("does not contain", timeout=5_000)
    expect(card(shared, "Pageviews")).to_have_text("1", timeout=5_000)  # /pricing
    query = parse_qs(urlsplit(shared.url).query)
    assert query["filters"] == ["page!~blog"] and query["compare"] == ["year_over_year"]

    with shared.expect_download() as info:
        shared.click("#download")
    archive = zipfile.ZipFile(io.BytesIO(info.value.path().read_bytes()))
    pages = list(csv.DictReader(io.StringIO(archive.read("pages.csv").decode("utf-8"))))
    assert [(row["value"], row["pageviews"]) for row in pages] == [("/pricing", "1")]
    assert "visitors.csv" in archive.namelist()
    shared.close()
    dashboard.close()
