"""The committed, minified tracker: within its size budget, built from the current source, and
doing what it promises when run (in Node 20, against a fake browser: ``tracker_harness.js``)."""

from __future__ import annotations

import functools
import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import hitstream.web

WEB = Path(hitstream.web.__file__).parent
MINIFIED = WEB / "static" / "js" / "hitstream.js"
SOURCE = WEB / "tracker" / "hitstream.src.js"
BUDGET_GZIPPED = 2048


def test_minified_tracker_is_at_most_2_kb_gzipped() -> None:
    size = len(gzip.compress(MINIFIED.read_bytes(), compresslevel=9))
    assert 0 < size <= BUDGET_GZIPPED, f"{size} bytes gzipped"


def test_minified_tracker_is_smaller_than_its_source() -> None:
    minified = MINIFIED.read_text()
    assert "\n" not in minified.strip(), "not minified: run scripts/build-tracker.sh"
    assert len(minified) < len(SOURCE.read_text()) / 2


_LITERAL = re.compile(r"'([^'\\\n]*)'|\"([^\"\\\n]*)\"")


def _string_literals(js: str) -> set[str]:
    found = {single or double for single, double in _LITERAL.findall(js)}
    return {literal for literal in found if len(literal) >= 3}


def test_minified_tracker_is_built_from_the_current_source() -> None:
    """Every string the source uses (endpoint, attribute names, event names) is in the build:
    an edit to the source without a rebuild fails here."""
    source = SOURCE.read_text()
    code = "\n".join(
        line for line in source.splitlines() if not line.lstrip().startswith(("*", "/*", "//"))
    )
    minified = _string_literals(MINIFIED.read_text())
    missing = _string_literals(code) - minified
    assert not missing, f"rebuild with scripts/build-tracker.sh; missing {sorted(missing)}"


HARNESS = Path(__file__).parent / "tracker_harness.js"


@functools.cache
def played(tracker: Path) -> dict[str, list[dict[str, Any]]]:
    """What ``tracker`` sends in each scenario of ``tracker_harness.js`` (Node 20, a fake
    browser): one record per sendBeacon/fetch call, with its decoded JSON body."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node is not installed: the tracker's behaviour is not checked")
    done = subprocess.run(
        [node, str(HARNESS), str(tracker)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, list[dict[str, Any]]] = json.loads(done.stdout)
    return result


def sent(scenario: str, tracker: Path = MINIFIED) -> list[tuple[str, str, str]]:
    """(type, name, url) of each event sent in a scenario."""
    return [
        (call["event"]["type"], call["event"].get("name", ""), call["event"]["url"])
        for call in played(tracker)[scenario]
    ]


def test_minified_tracker_counts_a_visit() -> None:
    """Each feature by what it sends: the load-timed first pageview, SPA navigations (history,
    hash routes, back), outbound and download clicks (middle-click too, not right-click),
    custom events with props and their callback, and calls queued before the script ran."""
    home = "https://shop.example/"
    faq = "https://shop.example/pricing#/faq"
    pricing = "https://shop.example/pricing"
    assert sent("visit") == [
        ("custom", "early", home),  # queued before load, sent as the script runs
        ("pageview", "", home),
        ("engagement", "", home),  # a navigation leaves the page: its engagement, then ...
        ("pageview", "", pricing),  # pushState; replaceState: none
        ("engagement", "", pricing),
        ("pageview", "", faq),  # a hash route
        ("engagement", "", faq),
        ("pageview", "", "https://shop.example/back"),  # popstate
        ("click", "outbound", "https://shop.example/back"),
        ("click", "download", "https://shop.example/back"),
        ("click", "outbound", "https://shop.example/back"),  # middle click
        ("custom", "signup", "https://shop.example/back"),
    ]
    calls = played(MINIFIED)["visit"]
    first_pageview = calls[1]["event"]
    assert first_pageview["load_time_ms"] == 420  # Navigation Timing, rounded
    assert first_pageview["site_id"] == "shop.example"  # no data-site: the page's host
    assert calls[0]["event"]["props"] == {"queued": True}
    assert calls[-1]["event"]["props"] == {"plan": "pro"}
    assert calls[8]["event"]["props"] == {"url": "https://partner.example/x"}
    assert calls[9]["event"]["props"] == {"url": "https://shop.example/files/manual.pdf"}
    for call in calls:  # a beacon, as text/plain (no CORS preflight), to the script's origin
        assert (call["via"], call["contentType"]) == ("beacon", "text/plain")
        assert call["endpoint"] == "https://stats.example/api/v1/events"


def test_minified_tracker_honours_opt_out_and_do_not_track() -> None:
    assert sent("opt_out") == []  # localStorage.hitstream_ignore = "true"
    assert sent("dnt_respected") == []  # data-respect-dnt and Do Not Track on
    assert sent("dnt_ignored") == sent("visit")[1:]  # DNT alone changes nothing (no queue here)
    assert sent("opt_out") == []  # no engagement either


def test_tracker_reports_visible_time_and_deepest_scroll_then_the_time_after_a_return() -> None:
    """Read 42 s, scroll to 60 % and back up, hide the tab for 5 min, show it for 10 s,
    leave: an engagement event when first hidden (the visible time and the depth), then a
    follow-up with the 10 s after the return; the 5 hidden minutes count nowhere."""
    calls = played(MINIFIED)["engagement"]
    assert [c["event"]["type"] for c in calls] == ["pageview", "engagement", "engagement"]
    first, more = calls[1]["event"], calls[2]["event"]
    assert first["engaged_ms"] == 42_000 and "name" not in first
    assert first["scroll_depth"] == 60  # (scrollY 1400 + 1000 visible) of 4000
    assert first["url"] == calls[0]["event"]["url"]
    assert more["name"] == "follow_up" and more["engaged_ms"] == 10_000
    assert "scroll_depth" not in more and more["url"] == first["url"]
    assert calls[1]["via"] == calls[2]["via"] == "beacon"


def test_a_page_opened_in_the_background_counts_from_when_it_is_shown() -> None:
    [_, engagement] = played(MINIFIED)["background"]
    assert engagement["event"]["engaged_ms"] == 7_000  # not the 60 s it spent hidden
    assert engagement["event"]["scroll_depth"] == 25  # what the first screen shows


def test_tracker_sends_tagged_element_clicks_with_their_props() -> None:
    calls = played(MINIFIED)["clicks"]
    clicks = [c["event"] for c in calls if c["event"]["type"] == "click"]
    assert len(clicks) == 1  # a right click (auxclick, button 2) is no click
    [click] = clicks
    assert click["name"] == "element"
    assert click["props"] == {
        "element_name": "buy",
        "element_id": "buy-button",
        "element_text": ("Buy now " + "x" * 200)[:100],  # whitespace collapsed, trimmed
    }


def test_a_page_back_from_the_page_cache_is_a_view() -> None:
    """Back or forward restores a page from the browser's page cache (no load, no script
    run): a pageview and its engagement, as any other view (none were sent)."""
    calls = played(MINIFIED)["cached"]
    assert [c["event"]["type"] for c in calls] == [
        "pageview",
        "engagement",
        "pageview",  # pageshow, persisted
        "engagement",
    ]
    assert calls[3]["event"]["engaged_ms"] == 3_000


def test_bad_calls_never_throw_and_send_no_junk() -> None:
    """A name that is no text sends nothing (they were events named "undefined", "42",
    "[object Object]"); props the collector would refuse are left out, not the event; the
    callback runs. The harness fails if any call throws."""
    events = [c["event"] for c in played(MINIFIED)["bad_calls"] if c["event"]["type"] == "custom"]
    by_name = {e["name"]: e.get("props") for e in events}
    order = ["circular", "bigint", "text", "list", "mixed", "many", "named"]
    assert list(by_name) == order  # "getter" threw while its props were read: not sent
    assert by_name == {
        "circular": None,
        "bigint": {"ok": 1},
        "text": None,
        "list": None,
        "mixed": {"long": "y" * 512, "yes": False, "n": 2.5},
        "many": {f"p{i}": i for i in range(30)},
        "named": None,
    }


def test_a_route_is_measured_as_it_shows_when_left() -> None:
    """The scroll depth of a single-page-app route is what its own content showed, not the
    previous route's (it was read as the URL changed, before the app rendered: 100)."""
    calls = played(MINIFIED)["spa_scroll"]
    depths = [
        (c["event"]["url"], c["event"]["scroll_depth"])
        for c in calls
        if "scroll_depth" in c["event"]
    ]
    assert depths == [("https://shop.example/", 100), ("https://shop.example/article", 6)]


def test_a_hash_router_writing_its_root_is_one_view() -> None:
    assert [(t, url) for t, _, url in sent("hash_root") if t == "pageview"] == [
        ("pageview", "https://shop.example/"),
        ("pageview", "https://shop.example/#/one"),
    ]


def test_minified_tracker_reads_its_attributes_and_falls_back_to_fetch() -> None:
    [call] = played(MINIFIED)["attributes"]
    assert call["endpoint"] == "https://collect.example/e"
    assert call["event"]["site_id"] == "other.example"
    for scenario in ("beacon_refused", "no_beacon"):
        fetched = [c for c in played(MINIFIED)[scenario] if c["via"] == "fetch"]
        assert [(c["method"], c["keepalive"], c["contentType"]) for c in fetched] == [
            ("POST", True, "text/plain")
        ]


def test_minified_tracker_behaves_as_its_source() -> None:
    assert played(MINIFIED) == played(SOURCE)


def test_tracker_sets_no_cookie_and_stores_no_id() -> None:
    minified = MINIFIED.read_text()
    assert "cookie" not in minified
    assert "setItem" not in minified  # localStorage is only read, for the opt-out flag


async def test_the_served_tracker_is_at_most_2_kb_gzipped() -> None:
    """What browsers download from ``/js/hitstream.js``: the committed build, whole."""
    import httpx
    from starlette.applications import Starlette

    from hitstream.web.dashboard import mount

    app = Starlette()
    mount(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        served = await client.get("/js/hitstream.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/javascript")
    assert served.content == MINIFIED.read_bytes()
    size = len(gzip.compress(served.content, compresslevel=9))
    assert 0 < size <= BUDGET_GZIPPED, f"{size} bytes gzipped"
