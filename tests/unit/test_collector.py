"""The collector service: decode, validate, stamp, append; bad input never escapes as 5xx."""

from __future__ import annotations

import msgspec
import pytest

from hitstream.domain.events import AcceptedEvent, Limits
from hitstream.errors import LogUnavailable
from hitstream.log.memory import MemoryLog
from hitstream.metrics import Metrics
from hitstream.salts.memory import MemorySaltKeeper
from hitstream.services.collector import Collector, client_event_id
from tests.access import Sites

NOW = 1_790_000_000_000
IP = "81.2.69.142"  # a GB address in iptocc's table
UA = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"


class FakeCountries:
    def country(self, ip: str) -> str:
        return "GB" if ip == IP else ""


@pytest.fixture
def log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
def collector(log: MemoryLog) -> Collector:
    return Collector(
        log, MemorySaltKeeper(), FakeCountries(), Metrics(), sites=Sites("a.io"), clock=lambda: NOW
    )


def stored(log: MemoryLog) -> list[AcceptedEvent]:
    return [msgspec.json.decode(m.value, type=AcceptedEvent) for m in log.messages()]


async def test_single_event_is_stamped_and_appended(collector: Collector, log: MemoryLog) -> None:
    body = b'{"site_id": "a.io", "url": "https://a.io/x"}'
    result = await collector.collect(body, "application/json", IP, UA)
    assert result.status == 202
    assert result.body() == {"accepted": 1, "ids": result.ids}
    (event,) = stored(log)
    assert event.event_id == result.ids[0]
    assert event.country == "GB"
    assert event.user_agent == UA
    assert len(event.visitor_id) == 16
    assert IP not in log.messages()[0].value.decode()  # the raw IP goes no further


async def test_same_visitor_same_hash_other_ip_other_hash(
    collector: Collector, log: MemoryLog
) -> None:
    body = b'{"site_id": "a.io", "path": "/"}'
    for ip in (IP, IP, "203.0.113.7"):
        await collector.collect(body, "application/json", ip, UA)
    a, b, c = (e.visitor_id for e in stored(log))
    assert a == b != c


async def test_batch_accepts_good_and_reports_bad_by_index(
    collector: Collector, log: MemoryLog
) -> None:
    body = b'[{"site_id": "a.io", "path": "/"}, {"site_id": "a.io"}, {"site_id": "a.io", "path": "/b"}]'
    result = await collector.collect(body, "application/json", IP, UA)
    assert result.status == 202
    assert len(result.ids) == 2
    assert result.rejected == [
        {"index": 1, "errors": [{"field": "url", "reason": "a pageview needs url or path"}]}
    ]
    assert [e.path for e in stored(log)] == ["/", "/b"]


async def test_ndjson_and_text_plain(collector: Collector, log: MemoryLog) -> None:
    nd = b'{"site_id": "a.io", "path": "/1"}\n\n{"site_id": "a.io", "path": "/2"}\n'
    assert (await collector.collect(nd, "application/x-ndjson", IP, UA)).status == 202
    beacon = b'{"site_id": "a.io", "path": "/3"}'
    assert (await collector.collect(beacon, "text/plain", IP, UA)).status == 202
    assert [e.path for e in stored(log)] == ["/1", "/2", "/3"]


@pytest.mark.parametrize(
    ("body", "media", "status", "field"),
    [
        (b"{nope", "application/json", 400, "body"),
        (b'{"a": 1}\nnope', "application/x-ndjson", 400, "body"),
        (b"<xml/>", "application/xml", 415, "content-type"),
        (b"[]", "application/json", 422, "body"),
        (
            b"[" + b",".join([b'{"site_id":"a","path":"/"}'] * 501) + b"]",
            "application/json",
            413,
            "body",
        ),
    ],
)
async def test_whole_request_errors(
    collector: Collector, log: MemoryLog, body: bytes, media: str, status: int, field: str
) -> None:
    result = await collector.collect(body, media, IP, UA)
    assert result.status == status
    assert result.body()["error"]["field"] == field  # type: ignore[index]
    assert log.messages() == []
    assert collector.rejections


async def test_all_invalid_is_422_naming_fields(collector: Collector, log: MemoryLog) -> None:
    result = await collector.collect(
        b'{"site_id": "a.io", "type": "x", "path": "/"}', "application/json", IP, UA
    )
    assert result.status == 422
    body = result.body()
    assert body["accepted"] == 0
    assert body["error"] == {
        "field": "type",
        "reason": "must be one of click, custom, pageview, session",
    }
    assert log.messages() == []
    assert (
        collector.rejections[("a.io", "type: must be one of click, custom, pageview, session")] == 1
    )


async def test_single_event_over_64k_is_413(log: MemoryLog) -> None:
    collector = Collector(
        log,
        MemorySaltKeeper(),
        FakeCountries(),
        Metrics(),
        sites=Sites("a.io"),
        limits=Limits(max_body_bytes=100),
        clock=lambda: NOW,
    )
    body = b'{"site_id": "a.io", "path": "/", "title": "' + b"x" * 100 + b'"}'
    assert (await collector.collect(body, "application/json", IP, UA)).status == 413


async def test_client_event_id_is_an_idempotency_key(collector: Collector, log: MemoryLog) -> None:
    body = b'{"site_id": "a.io", "path": "/", "event_id": "retry-1"}'
    first = await collector.collect(body, "application/json", IP, UA)
    second = await collector.collect(body, "application/json", IP, UA)
    assert first.ids == second.ids == [client_event_id("a.io", "retry-1")]
    assert client_event_id("b.io", "retry-1") != first.ids[0]


async def test_log_down_raises_and_nothing_is_acknowledged(
    collector: Collector, log: MemoryLog
) -> None:
    log.available = False
    with pytest.raises(LogUnavailable):
        await collector.collect(b'{"site_id": "a.io", "path": "/"}', "application/json", IP, UA)
    assert collector.metrics.events_accepted._value.get() == 0
