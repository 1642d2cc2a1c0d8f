"""Whatever body or query string arrives, the answer is a success or a 4xx naming a field.

Hypothesis drives the whole ASGI app (memory adapters, no network) with the inputs that made
500s before: JSON nested a hundred thousand deep, invalid UTF-8, a 400-digit timestamp,
``1e999``, empty and odd query parameters. ``raise_app_exceptions`` makes any exception that
escapes a handler fail the test, so "never an exception" is checked, not assumed.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hitstream.bootstrap import build
from hitstream.domain.stats import EVENT_PROPERTIES, INTERVALS, METRICS, PERIODS
from hitstream.domain.validation import KNOWN_FIELDS
from hitstream.settings import Settings
from hitstream.web.app import create_app
from tests.access import admin_key, bearer, register

Call = Callable[..., httpx.Response]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
EVENT_STATUSES = {202, 400, 413, 415, 422}


@pytest.fixture(scope="module")
def call(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Call]:
    """A function that sends one request to a full app (every role, memory adapters)."""
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    runtime = build(
        Settings(
            data_dir=data_dir, log_url="memory://", store_url="memory://", cache_url="memory://"
        )
    )
    loop = asyncio.new_event_loop()
    loop.run_until_complete(runtime.start(run_processor=False))
    loop.run_until_complete(register(runtime.store, "a.io", "a"))
    key = loop.run_until_complete(admin_key(runtime.store))
    app = create_app(runtime.services)
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=True),
        base_url="http://hitstream.test",
        headers=bearer(key),  # an admin: every query reaches the rules and the store
    )

    def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
        return loop.run_until_complete(client.request(method, url, **kwargs))

    yield send
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(runtime.stop())
    loop.close()


def assert_named_refusal(response: httpx.Response, allowed: set[int]) -> None:
    assert response.status_code in allowed, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["field"], str) and error["field"], error
        assert isinstance(error["reason"], str) and error["reason"], error


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + b"1" + closer * depth


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)
events = st.dictionaries(
    st.sampled_from(sorted(KNOWN_FIELDS)) | st.text(max_size=10), json_values, max_size=8
)


@FUZZ
@given(body=st.one_of(events, st.lists(events, max_size=5), json_values))
def test_any_json_event_or_batch_is_accepted_or_refused_by_name(call: Call, body: object) -> None:
    response = call("POST", "/api/v1/events", json=body)
    assert_named_refusal(response, EVENT_STATUSES)
    if response.status_code == 422 and "rejected" in response.json():
        for refusal in response.json()["rejected"]:
            assert all(error["field"] for error in refusal["errors"]), refusal


@FUZZ
@given(
    depth=st.integers(min_value=1, max_value=200_000),
    brackets=st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'{"props":[', b"]}")]),
)
@example(depth=100_000, brackets=(b"[", b"]"))
@example(depth=9, brackets=(b"[", b"]"))
def test_deep_nesting_is_a_400_not_a_recursion_error(
    call: Call, depth: int, brackets: tuple[bytes, bytes]
) -> None:
    response = call(
        "POST",
        "/api/v1/events",
        content=nested(depth, *brackets),
        headers={"content-type": "application/json"},
    )
    assert_named_refusal(response, {400, 413, 422})
    if depth > 8 and response.status_code == 400:
        assert response.json()["error"] == {
            "field": "body",
            "reason": response.json()["error"]["reason"],
        }
        assert "nests deeper than 8 levels" in response.json()["error"]["reason"]


@FUZZ
@given(
    prefix=st.binary(max_size=20),
    bad=st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]),
    suffix=st.binary(max_size=20),
    media=st.sampled_from(["application/json", "text/plain", "application/x-ndjson"]),
)
@example(prefix=b"", bad=b"\xff", suffix=b"", media="application/json")
def test_invalid_utf8_is_a_400_naming_the_body(
    call: Call, prefix: bytes, bad: bytes, suffix: bytes, media: str
) -> None:
    def clean(part: bytes) -> bytes:
        return part.replace(b'"', b"").replace(b"\\", b"")

    # ASCII on both sides, so that ``bad`` never completes a valid sequence with a neighbour
    body = b'{"site_id": "a.io", "path": "/' + clean(prefix) + b"|" + bad + b"|"
    body += clean(suffix) + b'"}'
    response = call("POST", "/api/v1/events", content=body, headers={"content-type": media})
    assert_named_refusal(response, {400, 422})
    assert response.status_code != 202


@FUZZ
@given(
    digits=st.text(alphabet="0123456789", min_size=1, max_size=5000),
    field=st.sampled_from(["timestamp", "duration_ms", "load_time_ms", "screen_width", "props"]),
    sign=st.sampled_from(["", "-"]),
    exponent=st.sampled_from(["", "e999", "E-999", ".5e400"]),
)
@example(digits="9" * 400, field="timestamp", sign="", exponent="")
@example(digits="1", field="timestamp", sign="", exponent="e999")
def test_huge_numbers_are_refused_by_name(
    call: Call, digits: str, field: str, sign: str, exponent: str
) -> None:
    number = f"{sign}{digits}{exponent}"
    value = f'{{"n": {number}}}' if field == "props" else number
    body = f'{{"site_id": "a.io", "path": "/", "{field}": {value}}}'.encode()
    response = call(
        "POST", "/api/v1/events", content=body, headers={"content-type": "application/json"}
    )
    assert_named_refusal(response, {202, 400, 422})
    if len(digits.lstrip("0")) > 16 and not exponent.startswith("E-"):
        assert response.status_code in (400, 422), response.text  # never stored as inf/rounded


@FUZZ
@given(
    encoding=st.sampled_from(["gzip", "deflate", "br", "zstd", "gzip, gzip", "identity", "x"]),
    body=st.binary(max_size=200),
    compress=st.booleans(),
)
def test_any_content_encoding_is_inflated_or_refused_by_name(
    call: Call, encoding: str, body: bytes, compress: bool
) -> None:
    content = gzip.compress(body) if compress and encoding == "gzip" else body
    response = call(
        "POST",
        "/api/v1/events",
        content=content,
        headers={"content-type": "application/json", "content-encoding": encoding},
    )
    assert_named_refusal(response, EVENT_STATUSES)
    if encoding in ("br", "zstd", "gzip, gzip", "x"):
        assert response.status_code == 415
        assert response.json()["error"]["field"] == "content-encoding"


QUERY_KEYS = ["site_id", "period", "from", "to", "metrics", "filters", "interval", "tz"]
QUERY_KEYS += ["compare", "property", "limit"]
odd_text = st.one_of(
    st.just(""),
    st.text(max_size=30),
    st.sampled_from([*PERIODS, *INTERVALS, *METRICS, *EVENT_PROPERTIES, "prop:", "prop:x"]),
    st.sampled_from(["2026-02-30", "9999-12-31", "0001-01-01", "-1", "1e9", "99999999999999999"]),
    st.sampled_from(["page==", "page~", ";;", "page==a|", "Europe/../UTC", "UTC\x00"]),
)


@FUZZ
@given(
    kind=st.sampled_from(
        ["stats/aggregate", "stats/timeseries", "stats/breakdown", "stats/realtime", "quality"]
    ),
    params=st.dictionaries(st.sampled_from(QUERY_KEYS), odd_text, max_size=8),
)
@example(kind="stats/breakdown", params={"site_id": "a.io", "property": ""})
@example(kind="stats/breakdown", params={"site_id": "a.io", "property": "prop:"})
@example(kind="stats/aggregate", params={"site_id": "", "period": ""})
@example(
    kind="stats/timeseries",
    params={"site_id": "a", "period": "custom", "from": "0001-01-01", "to": "9999-12-31"},
)
def test_any_query_is_answered_or_refused_by_name(
    call: Call, kind: str, params: dict[str, str]
) -> None:
    response = call("GET", f"/api/v1/{kind}", params=params)
    assert_named_refusal(response, {200, 400, 404})  # 404: a site that is not registered
    if response.status_code == 400:
        assert response.json()["error"]["field"] in {*QUERY_KEYS, "request"}


@FUZZ
@given(
    kind=st.sampled_from(["stats/aggregate", "stats/breakdown", "alerts", "quality"]),
    keys=st.lists(st.sampled_from(QUERY_KEYS), min_size=1, max_size=4),
    values=st.lists(st.binary(max_size=12), min_size=4, max_size=4),
)
@example(kind="stats/aggregate", keys=["site_id", "tz"], values=[b"a", b"\xff\xfe", b"", b""])
def test_raw_query_bytes_invalid_utf8_included_are_answered_or_refused_by_name(
    call: Call, kind: str, keys: list[str], values: list[bytes]
) -> None:
    query = b"&".join(
        key.encode() + b"=" + quote_from_bytes(value, safe="").encode()
        for key, value in zip(keys, values, strict=False)
    )
    url = httpx.URL(f"http://hitstream.test/api/v1/{kind}", query=query)
    response = call("GET", url)
    assert_named_refusal(response, {200, 400, 404})  # 404: a site that is not registered


def test_an_empty_property_is_a_400_naming_it(call: Call) -> None:
    """The schemathesis find: ``property=`` reached the store, whose QueryError had no handler."""
    response = call("GET", "/api/v1/stats/breakdown", params={"site_id": "a.io", "property": ""})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "property"


@pytest.mark.parametrize(
    ("escape", "said"),
    [("\\ud800", "\\ud800, half of a surrogate pair"), ("\\uDBFF x", "\\uDBFF, half of")],
)
def test_a_lone_surrogate_escape_is_named_not_called_truncated(
    call: Call, escape: str, said: str
) -> None:
    body = (
        '{"site_id": "a.io", "type": "pageview", "url": "https://a.io/' + escape + '"}'
    ).encode()
    response = call(
        "POST", "/api/v1/events", content=body, headers={"content-type": "application/json"}
    )
    assert (response.status_code, response.json()["error"]["field"]) == (400, "body")
    assert said in response.json()["error"]["reason"]
    whole = call(
        "POST",
        "/api/v1/events",
        content=body.replace(escape.encode(), b"\\ud83d\\ude00"),
        headers={"content-type": "application/json"},
    )
    assert whole.status_code != 400 or whole.json()["error"]["field"] != "body"
