"""The log message format (``services/wire.py``, decision 0049): the array the collector writes,
the object every earlier message holds, and a processor reading a log holding both."""

from __future__ import annotations

import dataclasses
import typing

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hitstream.domain.events import AcceptedEvent
from hitstream.log.memory import MemoryLog
from hitstream.services import wire
from hitstream.stores.memory import MemoryStore
from tests.unit.test_processor import T0, accepted, everything, make

texts = st.text(max_size=40)
numbers = st.none() | st.integers(min_value=0, max_value=2**53)
prop_values = st.one_of(
    st.text(max_size=20),
    st.integers(-(2**53), 2**53),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
)
events = st.builds(
    AcceptedEvent,
    event_id=texts,
    site_id=texts,
    type=st.sampled_from(["pageview", "custom", "engagement", "click", "session"]),
    timestamp=st.integers(-(2**62), 2**62),
    received_at=st.integers(0, 2**62),
    visitor_id=texts,
    visitor_id_prev=texts,
    name=texts,
    url=texts,
    hostname=texts,
    path=texts,
    query=texts,
    referrer=texts,
    title=texts,
    user_id=texts,
    session_id=texts,
    props=st.dictionaries(st.text(max_size=10), prop_values, max_size=5),
    duration_ms=numbers,
    load_time_ms=numbers,
    screen_width=numbers,
    engaged_ms=numbers,
    scroll_depth=numbers,
    user_agent=texts,
    country=texts,
)


def test_the_array_has_the_events_fields_in_order_with_its_defaults() -> None:
    """The positional struct must follow ``AcceptedEvent``: a field added to one and not the
    other, or in another place, would shift every value after it."""
    ours = msgspec.structs.fields(wire.Event)
    theirs = dataclasses.fields(AcceptedEvent)
    assert [f.name for f in ours] == [f.name for f in theirs]
    hints = typing.get_type_hints(AcceptedEvent)
    for mine, field in zip(ours, theirs, strict=True):
        assert mine.type == hints[field.name], field.name
        if field.default is not dataclasses.MISSING:
            assert mine.default == field.default, field.name
        elif field.default_factory is not dataclasses.MISSING:
            assert mine.default_factory() == field.default_factory(), field.name
        else:
            assert mine.required, field.name


@settings(max_examples=300, deadline=None)
@given(event=events)
def test_every_event_reads_back_the_same_from_either_format(event: AcceptedEvent) -> None:
    written = wire.encode(event)
    assert written[:1] == b"["
    assert wire.decode(written) == event
    by_name = msgspec.json.encode(event)  # every message written before decision 0049
    assert by_name[:1] == b"{"
    assert wire.decode(by_name) == event


def test_the_array_is_much_smaller_than_the_object() -> None:
    event = accepted(1, url="https://a.io/p1", title="A page", country="DE")
    assert len(wire.encode(event)) < 0.6 * len(msgspec.json.encode(event))


def test_an_older_shorter_array_takes_the_defaults_of_the_fields_it_lacks() -> None:
    """Fields added later go at the end: an array written before them still reads."""
    event = accepted(1)
    first = list(msgspec.json.decode(wire.encode(event)))[:7]
    read = wire.decode(msgspec.json.encode(first))
    defaults = AcceptedEvent(*first)
    assert read == defaults
    assert read.path == "/" and read.props == {} and read.duration_ms is None


@pytest.mark.parametrize(
    "value",
    [b"", b"nope", b"[]", b'["id", "a.io"]', b'[1, "a.io", "pageview", 1, 1, "v", "v"]', b"{}"],
)
def test_anything_else_is_a_decode_error(value: bytes) -> None:
    with pytest.raises(wire.DecodeErrors):
        wire.decode(value)


async def test_a_processor_reads_a_log_holding_both_formats() -> None:
    """A log written before the upgrade and after it: every event is stored once."""
    log, store = MemoryLog(), MemoryStore()
    old = [accepted(1), accepted(2, ts=T0 + 60_000)]
    new = [accepted(3, ts=T0 + 120_000), accepted(4, visitor="v2")]
    await log.append([(e.visitor_id.encode(), msgspec.json.encode(e)) for e in old])
    await log.append([(e.visitor_id.encode(), wire.encode(e)) for e in new])
    processor = make(log, store)
    await processor.start()
    assert await processor.process_once() == 4
    result = await store.aggregate(everything())
    assert (result["pageviews"], result["visitors"], result["visits"]) == (4, 2, 2)
    assert await store.count_events() == 4
