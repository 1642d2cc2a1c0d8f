"""Validation: a value back or named reasons, never an exception, for any JSON input."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hitstream.domain.events import AcceptedEvent, Limits, Problem
from hitstream.domain.validation import (
    parse_timestamp,
    readable_path,
    split_location,
    validate_event,
)

NOW = 1_790_000_000_000  # 2026-09-21


def ok(data: dict[str, Any], **kw: Any) -> AcceptedEvent:
    result = validate_event(data, now_ms=NOW, **kw)
    assert isinstance(result, AcceptedEvent), result
    return result


def bad(data: object, **kw: Any) -> dict[str, str]:
    result = validate_event(data, now_ms=NOW, **kw)
    assert isinstance(result, list), result
    return {p.field: p.reason for p in result}


def test_minimal_pageview_defaults() -> None:
    event = ok({"site_id": "example.com", "url": "https://Example.com/pricing?utm_source=x#top"})
    assert event.type == "pageview"
    assert event.hostname == "example.com"
    assert event.path == "/pricing"
    assert event.query == "utm_source=x"
    assert event.timestamp == NOW
    assert event.received_at == NOW


def test_path_wins_over_url_and_hash_routes_are_kept() -> None:
    event = ok({"site_id": "s", "url": "https://a.io/x", "path": "/app#/settings"})
    assert event.path == "/app#/settings"
    assert event.hostname == "a.io"
    assert ok({"site_id": "s", "url": "https://a.io/#!/inbox"}).path == "/#!/inbox"


def test_custom_event_needs_a_name() -> None:
    assert bad({"site_id": "s", "type": "custom"}) == {"name": "is required"}
    event = ok({"site_id": "s", "type": "custom", "name": "signup", "props": {"plan": "pro"}})
    assert event.name == "signup"
    assert event.props == {"plan": "pro"}


@pytest.mark.parametrize(
    ("data", "field", "reason_part"),
    [
        ({"url": "https://a.io/"}, "site_id", "required"),
        ({"site_id": "bad site", "url": "https://a.io/"}, "site_id", "letters"),
        ({"site_id": "s", "type": "view", "url": "https://a.io/"}, "type", "one of"),
        ({"site_id": "s"}, "url", "needs url or path"),
        ({"site_id": "s", "url": "ftp://a.io/"}, "url", "http(s)"),
        ({"site_id": "s", "url": "javascript:alert(1)"}, "url", "http(s)"),
        ({"site_id": "s", "url": "https://a.io:99999/"}, "url", "port"),
        ({"site_id": "s", "url": "https://a.io:x/"}, "url", "port"),
        ({"site_id": "s", "path": "pricing"}, "path", "start with '/'"),
        ({"site_id": "s", "path": "/", "title": 5}, "title", "must be a string"),
        ({"site_id": "s", "path": "/", "title": "x" * 513}, "title", "longer than 512"),
        ({"site_id": "s", "path": "/", "referrer": "a\x00b"}, "referrer", "control"),
        ({"site_id": "s", "path": "/", "load_time_ms": -1}, "load_time_ms", "between 0"),
        ({"site_id": "s", "path": "/", "load_time_ms": True}, "load_time_ms", "number"),
        ({"site_id": "s", "path": "/", "screen_width": "wide"}, "screen_width", "number"),
        ({"site_id": "s", "path": "/", "duration_ms": 10**12}, "duration_ms", "between 0"),
        ({"site_id": "s", "path": "/", "props": []}, "props", "object"),
        ({"site_id": "s", "path": "/", "props": {"a": {"b": 1}}}, "props.a", "string, number"),
        ({"site_id": "s", "path": "/", "props": {"a": "x" * 513}}, "props.a", "longer"),
        ({"site_id": "s", "path": "/", "props": {"a": "x\x00y"}}, "props.a", "NUL"),
        ({"site_id": "s", "path": "/", "props": {str(i): i for i in range(31)}}, "props", "30"),
        ({"site_id": "s", "path": "/", "paht": "/"}, "paht", "not a known field"),
        ({"site_id": "s", "path": "/", "event_id": "a b"}, "event_id", "letters"),
        ({"site_id": "s", "path": "/", "timestamp": "yesterday"}, "timestamp", "ISO 8601"),
        ({"site_id": "s", "path": "/", "timestamp": "2026-09-21T10:00:00"}, "timestamp", "ISO"),
    ],
)
def test_each_bad_field_is_named_with_its_reason(
    data: dict[str, Any], field: str, reason_part: str
) -> None:
    problems = bad(data)
    assert field in problems, problems
    assert reason_part in problems[field]


def test_all_problems_of_an_event_are_reported_at_once() -> None:
    problems = bad({"site_id": "", "type": "nope", "title": 1, "extra": True})
    assert set(problems) >= {"site_id", "type", "title", "extra"}


def test_timestamp_skew_is_bounded_both_ways() -> None:
    limits = Limits(max_past_ms=3_600_000, max_future_ms=60_000)
    base = {"site_id": "s", "path": "/"}
    assert ok({**base, "timestamp": NOW - 3_599_000}, limits=limits).timestamp == NOW - 3_599_000
    assert "past" in bad({**base, "timestamp": NOW - 3_601_000}, limits=limits)["timestamp"]
    assert "future" in bad({**base, "timestamp": NOW + 61_000}, limits=limits)["timestamp"]
    iso = ok({**base, "timestamp": "2026-09-21T13:53:20+02:00"}).timestamp
    assert iso == parse_timestamp("2026-09-21T11:53:20Z")


def test_a_number_out_of_any_range_reads_as_too_old_or_too_new() -> None:
    """Epoch ms beyond what a timestamp can be (1e30, negative) is still epoch ms: the
    answer says which way it is off, not that the format is wrong."""
    base = {"site_id": "s", "path": "/"}
    for value in (1e30, 2**60, 10.0**300, 10**400):
        assert bad({**base, "timestamp": value})["timestamp"] == "is more than 300 s in the future"
    for value in (-5, -1e30, -0.5, -(10**400)):
        assert bad({**base, "timestamp": value})["timestamp"] == "is more than 86400 s in the past"
    for other in (True, [1], {"ms": 1}):
        assert "ISO 8601" in bad({**base, "timestamp": other})["timestamp"]


def test_non_object_is_refused() -> None:
    assert validate_event([1, 2], now_ms=NOW) == [
        Problem("event", "each event must be a JSON object")
    ]


def test_split_location_handles_path_with_query() -> None:
    assert split_location("", "/a?utm_source=x") == ("", "/a", "utm_source=x")
    assert split_location("https://h.io", "") == ("h.io", "/", "")
    assert split_location("", "") == ("", "", "")  # no page at all: not the home page


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
fields = st.sampled_from(
    ["site_id", "type", "name", "url", "path", "props", "timestamp", "load_time_ms", "title"]
)


@given(st.dictionaries(fields, json_values, max_size=8) | json_values)
def test_validation_is_total(data: object) -> None:
    result = validate_event(data, now_ms=NOW)
    assert isinstance(result, AcceptedEvent) or (
        isinstance(result, list) and result and all(isinstance(p, Problem) for p in result)
    )


def test_engagement_event_carries_time_and_scroll() -> None:
    event = ok(
        {
            "site_id": "s",
            "type": "engagement",
            "url": "https://a.io/docs",
            "engaged_ms": 12_345.9,
            "scroll_depth": 80,
        }
    )
    assert (event.type, event.path, event.engaged_ms, event.scroll_depth) == (
        "engagement",
        "/docs",
        12_345,
        80,
    )


@pytest.mark.parametrize(
    ("data", "field", "reason"),
    [
        ({"type": "engagement", "url": "https://a.io/"}, "engaged_ms", "required"),
        ({"type": "engagement", "engaged_ms": 5}, "url", "engagement needs url or path"),
        ({"type": "engagement", "path": "/", "engaged_ms": -1}, "engaged_ms", "between 0 and"),
        (
            {"type": "engagement", "path": "/", "engaged_ms": 6 * 3600 * 1000 + 1},
            "engaged_ms",
            "between 0 and 21600000",
        ),
        (
            {"type": "engagement", "path": "/", "engaged_ms": 1, "scroll_depth": 101},
            "scroll_depth",
            "between 0 and 100",
        ),
        ({"type": "engagement", "path": "/", "engaged_ms": "5"}, "engaged_ms", "must be a number"),
        ({"path": "/", "engaged_ms": 5}, "engaged_ms", "only allowed on engagement events"),
        ({"type": "click", "path": "/", "scroll_depth": 5}, "scroll_depth", "only allowed on"),
        (
            {
                "type": "engagement",
                "name": "follow_up",
                "path": "/",
                "engaged_ms": 1,
                "scroll_depth": 5,
            },
            "scroll_depth",
            "is not taken on a follow_up report",
        ),
    ],
)
def test_engagement_fields_are_checked(data: dict[str, Any], field: str, reason: str) -> None:
    problems = bad({"site_id": "s", **data})
    assert reason in problems[field], problems


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("/%C3%BCber/%F0%9F%8E%89", "/über/🎉"),  # what location.href sends for /über/🎉
        ("/caf%c3%a9/日本語", "/café/日本語"),
        ("/%41%62c-%7E", "/Abc-~"),  # unreserved ASCII: the same characters (RFC 3986)
        ("/a%2fb", "/a%2Fb"),  # a slash inside a segment stays one, escapes in capitals
        ("/hello%20world", "/hello%20world"),
        ("/100%25", "/100%25"),
        ("/%e2%80%8b", "/%E2%80%8B"),  # an invisible character stays escaped
        ("/%ff%c3", "/%FF%C3"),  # bytes that are not UTF-8 stay escaped
        ("/plain/path", "/plain/path"),
    ],
)
def test_paths_are_stored_as_people_read_them(sent: str, stored: str) -> None:
    assert readable_path(sent) == stored
    assert split_location(f"https://shop.example{sent}?a=1", "") == ("shop.example", stored, "a=1")
    assert split_location("", sent)[1] == stored


_READABLE = st.text(
    st.characters(categories=["L", "N"]) | st.sampled_from("/-._~"), min_size=1, max_size=30
)


@given(_READABLE)
def test_an_escaped_page_and_the_same_page_sent_plain_are_one_path(text: str) -> None:
    assert readable_path("/" + quote(text, safe="/")) == "/" + text


@given(st.binary(max_size=40))
def test_a_readable_path_names_the_same_bytes_and_reads_the_same_again(raw: bytes) -> None:
    sent = "/" + "".join(f"%{b:02x}" for b in raw)
    once = readable_path(sent)
    assert readable_path(once) == once
    assert unquote_to_bytes(once) == b"/" + raw
