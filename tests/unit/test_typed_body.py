"""The typed pass answers as the generic path does: the same statuses, the same named
refusals by index, the same events in the log, for generated bodies good and bad."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from unittest.mock import patch

import msgspec
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hitstream.domain.events import DEFAULT_LIMITS, AcceptedEvent
from hitstream.domain.validation import validate_fields
from hitstream.log.memory import MemoryLog
from hitstream.metrics import Metrics
from hitstream.salts.memory import MemorySaltKeeper
from hitstream.services import collector as collector_module
from hitstream.services import wire
from hitstream.services.collector import Collector
from hitstream.services.typed_body import EventIn, accept_fast, decode_typed
from tests.access import Sites

NOW = 1_790_000_000_000
IP = "81.2.69.142"
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


class NoCountries:
    def country(self, ip: str) -> str:
        return "GB" if ip == IP else ""


texts = st.one_of(
    st.sampled_from(["", " ", "a.io", "b.io", "x" * 300, "ok_key-1", "bad key", "tab\there"]),
    st.text(max_size=12),
)
urls = st.sampled_from(
    [
        "https://a.io/x?q=1#/route",
        "http://A.IO/",
        "https://evil.example/x",
        "ftp://a.io/",
        "https://[::1/",
        "a.io/x",
        "https://a.io/" + "p" * 2100,
        "",
    ]
)
paths = st.sampled_from(["/", "/a?x=1", "/b#!/c", "nope", "", "/" + "q" * 2100])
numbers = st.one_of(
    st.integers(min_value=-10, max_value=2**60),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e16),
)
json_scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
props = st.dictionaries(st.text(max_size=45), st.one_of(st.booleans(), numbers, texts), max_size=32)
timestamps = st.one_of(
    st.none(),
    st.integers(min_value=NOW - 100_000_000, max_value=NOW + 1_000_000),
    st.sampled_from(["2026-09-21T12:00:00+00:00", "2026-09-21T12:00:00", "yesterday"]),
    st.floats(min_value=0, max_value=NOW * 2, allow_nan=False),
)
FIELDS: dict[str, Any] = {
    "site_id": st.one_of(st.sampled_from(["a.io", "b.io", "nope.io", "bad site"]), json_scalars),
    "type": st.sampled_from([None, "pageview", "custom", "engagement", "other", 5]),
    "name": st.one_of(texts, json_scalars, st.just("follow_up")),
    "url": st.one_of(urls, json_scalars),
    "path": st.one_of(paths, json_scalars),
    "referrer": texts,
    "title": texts,
    "user_id": texts,
    "session_id": texts,
    "event_id": st.one_of(texts, st.sampled_from(["k-1", "k 2"])),
    "props": st.one_of(props, json_scalars, st.just({"n": {"deep": 1}})),
    "timestamp": timestamps,
    "duration_ms": st.one_of(numbers, json_scalars),
    "load_time_ms": numbers,
    "screen_width": numbers,
    "engaged_ms": st.one_of(st.integers(0, 10_000), numbers),
    "scroll_depth": st.one_of(st.integers(0, 100), numbers),
    "ip": st.sampled_from(["203.0.113.9", "not-an-ip", ""]),
    "user_agent": texts,
    "unknown": json_scalars,
}
events = st.fixed_dictionaries(
    {"site_id": FIELDS["site_id"]},
    optional={name: strategy for name, strategy in FIELDS.items() if name != "site_id"},
)
valid_events = st.fixed_dictionaries(
    {"site_id": st.just("a.io")},
    optional={
        "type": st.sampled_from(["pageview", "custom"]),
        "name": st.sampled_from(["signup", "Buy now", ""]),
        "url": st.sampled_from(["https://a.io/x?q=1#/route", "http://A.IO/"]),
        "path": st.sampled_from(["/", "/a?x=1", "/b#!/c"]),
        "referrer": st.sampled_from(["", "https://b.io/r"]),
        "props": st.dictionaries(
            st.sampled_from(["plan", "n"]),
            st.one_of(st.booleans(), st.integers(0, 9), st.text(max_size=5)),
            max_size=2,
        ),
        "timestamp": st.integers(min_value=NOW - 100_000, max_value=NOW),
        "duration_ms": st.integers(min_value=0, max_value=10_000),
    },
)
"""Events the collector mostly accepts: without them nearly every body above is rejected, and
the accepted path (visitor ids, stamping, the log) would go untested."""
bodies = st.one_of(
    events,
    valid_events,
    st.lists(st.one_of(events, valid_events, valid_events, json_scalars), max_size=6),
)


def run(body: bytes, *, typed: bool, salts: MemorySaltKeeper) -> tuple[object, ...]:
    """``salts``: the same keeper for both paths (a keeper draws random salts, and the
    visitor ids hash with them)."""
    log = MemoryLog()
    collector = Collector(
        log, salts, NoCountries(), Metrics(), sites=Sites("a.io"), clock=lambda: NOW
    )
    generic = patch.object(collector_module, "decode_typed", lambda body: None)
    with generic if not typed else contextlib.nullcontext():
        result = asyncio.run(collector.collect(body, "application/json", IP, UA))
    logged = [wire.decode(m.value) for m in log.messages()]
    for event, given_id in zip(logged, result.ids, strict=True):
        assert event.event_id == given_id
        event.event_id = ""  # random unless the client sent a key: compared apart
    return result.status, result.body() if not result.ids else result.rejected, logged


FOLLOW_UP: dict[str, object] = {
    "site_id": "a.io",
    "type": "engagement",
    "name": "follow_up",
    "path": "/",
    "engaged_ms": 5,
}
"""A follow-up engagement report (decision 0063)."""


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies)
@example(body={**FOLLOW_UP, "scroll_depth": 5})  # takes no depth: the typed pass refuses too
@example(body=FOLLOW_UP)
def test_the_typed_pass_answers_as_the_generic_path(body: object) -> None:
    raw = msgspec.json.encode(body)
    salts = MemorySaltKeeper()
    assert run(raw, typed=True, salts=salts) == run(raw, typed=False, salts=salts)


def test_well_formed_events_take_the_typed_pass_and_anything_else_does_not() -> None:
    good = decode_typed(b'[{"site_id": "a.io", "path": "/", "props": {"a": 1, "b": true}}]')
    assert good is not None
    assert good[1] is True and isinstance(good[0][0], EventIn)
    assert good[0][0].props == {"a": 1, "b": True}
    single = decode_typed(b'{"site_id": "a.io", "site_id": "b.io"}')
    assert single is not None and single[1] is False
    assert single[0][0].site_id == "b.io"  # the last duplicate wins, as in a dict
    for body in (
        b'{"site_id": "a.io", "colour": "red"}',  # unknown field: named by the generic path
        b'{"site_id": 5}',
        b'[{"site_id": "a.io"}, null]',
        b'{"site_id": "a.io", "props": {"n": {"deep": 1}}}',
        b'{"duration_ms": true}',
        b'{"duration_ms": 1e400}',
        b"not json",
        b"\xff",
    ):
        assert decode_typed(body) is None, body


typed_events = st.one_of(events, valid_events).filter(
    lambda e: decode_typed(msgspec.json.encode(e)) is not None
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event=st.one_of(typed_events, valid_events))
def test_the_fast_pass_accepts_only_what_the_field_rules_accept_and_the_same_event(
    event: dict[str, object],
) -> None:
    decoded = decode_typed(msgspec.json.encode(event))
    if decoded is None:
        return
    item = decoded[0][0]
    slow = validate_fields(item.field, now_ms=NOW, limits=DEFAULT_LIMITS, problems=[])
    fast = accept_fast(item, NOW, DEFAULT_LIMITS)
    if fast is not None:
        assert isinstance(slow, AcceptedEvent)
        assert fast == wire.from_accepted(slow)
    if isinstance(slow, AcceptedEvent):  # the well-formed events must not fall back
        assert fast == wire.from_accepted(slow)


def test_the_fast_pass_falls_back_on_each_broken_rule() -> None:
    """Each of these breaks one field rule: the fast pass must not accept it."""
    good = {"site_id": "a.io", "url": "https://a.io/x", "title": "T"}
    assert accept_fast(EventIn(**good), NOW, DEFAULT_LIMITS) is not None  # type: ignore[arg-type]
    for change in (
        {"site_id": "bad site"},
        {"site_id": "a.io\n"},
        {"site_id": ""},
        {"type": "other"},
        {"type": "custom"},
        {"type": "custom", "name": "  "},
        {"title": "tab\there"},
        {"referrer": "x" * 3000},
        {"event_id": "k 2"},
        {"url": "ftp://a.io/"},
        {"url": None, "path": "nope"},
        {"url": None},
        {"props": {"": 1}},
        {"props": {"n": 2**60}},
        {"timestamp": "yesterday"},
        {"timestamp": NOW + 10**9},
        {"duration_ms": -1},
        {"screen_width": 10**9},
        {"engaged_ms": 5},
        {"type": "engagement"},
        {"type": "engagement", "engaged_ms": 5, "scroll_depth": 101},
    ):
        item = EventIn(**{**good, **change})  # type: ignore[arg-type]
        assert accept_fast(item, NOW, DEFAULT_LIMITS) is None, change
        assert isinstance(
            validate_fields(item.field, now_ms=NOW, limits=DEFAULT_LIMITS, problems=[]), list
        ), change
