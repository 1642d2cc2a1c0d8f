"""domain.exports: safe CSV cells, stats tables, event records and the visits rebuilt."""

from __future__ import annotations

import csv
import io
import random
from dataclasses import asdict

import pytest

from hitstream.domain.errors import QueryError
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.exports import (
    EVENT_FIELDS,
    Visits,
    event_from_record,
    event_record,
    safe_cell,
    to_csv,
)
from hitstream.domain.sessions import Sessionizer


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+49 30", "'+49 30"),
        ("-x", "'-x"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("/a=b", "/a=b"),
        ("", ""),
    ],
)
def test_cells_that_a_spreadsheet_would_run_get_a_quote(text: str, shown: str) -> None:
    assert safe_cell(text) == shown


def test_csv_is_rfc_4180_and_numbers_keep_their_sign() -> None:
    text = to_csv(["value", "change"], [['a "b", c\nd', -12.5], ["=x", None]])
    assert text == 'value,change\r\n"a ""b"", c\nd",-12.5\r\n\'=x,\r\n'
    assert list(csv.reader(io.StringIO(text, newline=""))) == [
        ["value", "change"],
        ['a "b", c\nd', "-12.5"],
        ["'=x", ""],
    ]


def sample(rng: random.Random, number: int, ts: int) -> ProcessedEvent:
    kind = rng.choice(["pageview", "pageview", "click", "session", "custom"])
    return ProcessedEvent(
        event_id=f"e{number}",
        site_id="s",
        type=kind,
        name="",
        timestamp=ts,
        received_at=ts,
        visitor_id=f"v{rng.randrange(3)}",
        path=rng.choice(["/", "/a", "/b"]),
        duration_ms=rng.randrange(1, 3_000_000) if kind == "session" else None,
        props={"k": "1"},
    )


def test_records_round_trip_and_visits_match_the_sessionizer() -> None:
    rng = random.Random(5)
    sessionizer = Sessionizer()
    events = []
    for number, ts in enumerate(sorted(rng.randrange(10 * 3_600_000) for _ in range(300))):
        event = sample(rng, number, ts)
        sessionizer.assign(event)
        events.append(event)
    rebuilt = Visits()
    for event in events:
        record = event_record(event)
        assert list(record) == list(EVENT_FIELDS)
        back = event_from_record(record, "s", "line 1")
        assert asdict(back) == asdict(event)
        rebuilt.add(back)
    want = {v.session_id: asdict(v) for v in sessionizer.drain_touched()}
    assert {v.session_id: asdict(v) for v in rebuilt.all()} == want


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"timestamp": "1"}, "line 3: timestamp"),
        ({"timestamp": True}, "line 3: timestamp"),
        ({"load_time_ms": 1.5}, "line 3: load_time_ms"),
        ({"props": {"a": [1]}}, "line 3: props"),
        ({"path": 5}, "line 3: path"),
        ({"type": "hack"}, "line 3: type"),
        ({"event_id": ""}, "line 3: event_id"),
    ],
)
def test_bad_records_name_the_line_and_field(change: dict[str, object], field: str) -> None:
    record = event_record(sample(random.Random(1), 1, 1000))
    with pytest.raises(QueryError) as caught:
        event_from_record({**record, **change}, "s", "line 3")
    assert caught.value.field == field
    with pytest.raises(QueryError):
        event_from_record([1, 2], "s", "line 3")
