"""The collector service: decode, validate, stamp, append; bad input never escapes as 5xx."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import cast

import msgspec
import pytest

from hitstream.domain import access
from hitstream.domain.events import AcceptedEvent, Limits
from hitstream.domain.ratelimit import Buckets
from hitstream.domain.sites import Site
from hitstream.errors import LogUnavailable
from hitstream.log.memory import MemoryLog
from hitstream.metrics import Metrics
from hitstream.salts.memory import MemorySaltKeeper
from hitstream.services import collector as collector_module
from hitstream.services import wire
from hitstream.services.collector import Collector, CollectResult, client_event_id
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
    return [wire.decode(m.value) for m in log.messages()]


async def test_single_event_is_stamped_and_appended(collector: Collector, log: MemoryLog) -> None:
    body = b'{"site_id": "a.io", "url": "https://a.io/x"}'
    result = await collector.collect(body, "application/json", IP, UA)
    assert result.status == 202
    assert result.body() == {"accepted": 1, "ids": result.ids}
    (event,) = stored(log)
    assert event.event_id == result.ids[0]
    assert event.country == "GB"
    assert event.user_agent == UA
    # the day of the salt (today's, UTC) then 16 hex digits of hash
    assert re.fullmatch(r"[0-9a-f]{20}", event.visitor_id)
    assert int(event.visitor_id[:4], 16) == event.received_at // 86_400_000
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


async def test_an_event_sent_without_a_page_has_none(collector: Collector, log: MemoryLog) -> None:
    """A server-side custom event (no url, no path) is on no page: it was stored on "/", and
    the home page's row of the page breakdown counted its visitors."""
    typed = b'{"site_id": "a.io", "type": "custom", "name": "signup"}'
    with_url = b'{"site_id": "a.io", "type": "custom", "name": "b", "url": "https://a.io"}'
    sent = [(typed, "application/json"), (typed, "text/plain"), (with_url, "application/json")]
    for body, media in sent:  # text/plain: the generic validation, not the typed pass
        assert (await collector.collect(body, media, IP, UA)).status == 202
    assert [(e.hostname, e.path) for e in stored(log)] == [("", ""), ("", ""), ("a.io", "/")]


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
    assert field_of(result) == field
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
        "reason": "must be one of click, custom, engagement, pageview, session",
    }
    assert log.messages() == []
    assert (
        collector.rejections[
            ("a.io", "type: must be one of click, custom, engagement, pageview, session")
        ]
        == 1
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


# -- sites and limits ---------------------------------------------------------------------


def field_of(result: CollectResult) -> str:
    error = cast(dict[str, str], result.body()["error"])
    return error["field"]


def limited(log: MemoryLog, now: list[float], **buckets: Buckets) -> Collector:
    return Collector(
        log,
        MemorySaltKeeper(),
        FakeCountries(),
        Metrics(),
        sites=Sites("a.io", "b.io"),
        clock=lambda: NOW,
        monotonic=lambda: now[0],
        **buckets,  # type: ignore[arg-type]
    )


async def test_per_ip_limit_refuses_whole_requests_with_retry_after(log: MemoryLog) -> None:
    now = [100.0]
    collector = limited(log, now, per_ip=Buckets(rate=2, burst=4))
    batch = b'[{"site_id": "a.io", "path": "/"}, {"site_id": "a.io", "path": "/x"}]'
    assert (await collector.collect(batch, "application/json", IP, UA)).status == 202
    assert (await collector.collect(batch, "application/json", IP, UA)).status == 202
    refused = await collector.collect(batch, "application/json", IP, UA)
    assert (refused.status, refused.retry_after) == (429, 1)  # two events at 2/s: 1 s
    assert field_of(refused) == "rate"
    assert len(log.messages()) == 4  # nothing of the refused request was appended
    assert (await collector.collect(batch, "application/json", "203.0.113.7", UA)).status == 202
    now[0] += 1.0
    assert (await collector.collect(batch, "application/json", IP, UA)).status == 202
    assert collector.rejections[("a.io", "rate limit: this client address")] == 1


async def test_a_write_key_is_not_limited_per_ip_but_per_site(log: MemoryLog) -> None:
    now = [0.0]
    collector = limited(log, now, per_ip=Buckets(1, 1), per_site=Buckets(1, 3))
    writer = access.key("k", "a.io", "write")
    body = b'{"site_id": "a.io", "path": "/"}'
    results = [
        (await collector.collect(body, "application/json", IP, UA, principal=writer)).status
        for _ in range(4)
    ]
    assert results == [202, 202, 202, 429]  # the site's burst of 3, whatever the IP's
    other = b'{"site_id": "b.io", "path": "/"}'
    assert (await collector.collect(other, "application/json", "1.1.1.1", UA)).status == 202


async def test_sites_hosts_and_origins_are_checked_per_event(log: MemoryLog) -> None:
    collector = Collector(
        log,
        MemorySaltKeeper(),
        FakeCountries(),
        Metrics(),
        sites=Sites(shop=Site("shop", allowed_hosts=("shop.example",))),
        clock=lambda: NOW,
    )
    body = (
        b'[{"site_id": "shop", "url": "https://shop.example/"},'
        b' {"site_id": "nope", "path": "/"},'
        b' {"site_id": "shop", "url": "https://evil.example/"},'
        # the same places again: each event gets its verdict, once worked out per request
        b' {"site_id": "nope", "path": "/x"},'
        b' {"site_id": "shop", "url": "https://evil.example/y"},'
        b' {"site_id": "shop", "url": "https://shop.example/z"}]'
    )
    result = await collector.collect(body, "application/json", IP, UA)
    assert result.status == 202 and len(result.ids) == 2
    refusals = [
        (r["index"], cast(list[dict[str, str]], r["errors"])[0]["field"]) for r in result.rejected
    ]
    assert refusals == [(1, "site_id"), (2, "url"), (3, "site_id"), (4, "url")]
    assert [e.path for e in stored(log)] == ["/", "/z"]
    assert sum(collector.rejections.values()) == 4
    foreign = await collector.collect(
        b'{"site_id": "shop", "path": "/"}', "application/json", IP, UA, origin="https://x.io"
    )
    assert foreign.status == 422 and field_of(foreign) == "origin"
    own = await collector.collect(
        b'{"site_id": "shop", "path": "/"}',
        "application/json",
        IP,
        UA,
        origin="https://shop.example:443",
    )
    assert own.status == 202


async def test_ip_and_user_agent_fields_need_a_write_key_and_are_never_stored(
    log: MemoryLog,
) -> None:
    collector = Collector(
        log, MemorySaltKeeper(), FakeCountries(), Metrics(), sites=Sites("a.io"), clock=lambda: NOW
    )
    body = b'{"site_id": "a.io", "path": "/", "ip": "81.2.69.142", "user_agent": "Given/1.0"}'
    refused = await collector.collect(body, "application/json", "10.0.0.1", UA)
    assert refused.status == 422
    errors = cast(list[dict[str, str]], refused.rejected[0]["errors"])
    assert {e["field"] for e in errors} == {"ip", "user_agent"}
    writer = access.key("k", "a.io", "write")
    ok = await collector.collect(body, "application/json", "10.0.0.1", UA, principal=writer)
    assert ok.status == 202
    (event,) = stored(log)
    assert (event.country, event.user_agent) == ("GB", "Given/1.0")  # the given visitor's
    assert "81.2.69.142" not in log.messages()[0].value.decode()
    bad = b'{"site_id": "a.io", "path": "/", "ip": "not-an-ip"}'
    answer = await collector.collect(bad, "application/json", "10.0.0.1", UA, principal=writer)
    assert answer.status == 422 and field_of(answer) == "ip"


async def test_a_reason_quoting_the_senders_text_makes_one_metric_series(
    collector: Collector,
) -> None:
    """Bad props keys of any text are one series of ``hitstream_events_rejected_total``
    (anyone may send them: a series per text would grow the metrics without bound), while
    the answer still names the key."""
    keys = ["", "k" * 70, "it's" + "x" * 70, 'q"' + "y" * 70]
    for key in keys:
        result = await collector.collect(
            msgspec.json.encode({"site_id": "a.io", "url": "https://a.io/", "props": {key: 1}}),
            "application/json",
            "81.2.69.142",
            "Firefox",
        )
        assert result.status == 422
        errors = cast(list[dict[str, object]], result.rejected[0]["errors"])
        assert repr(key[:20]) in str(errors[0]["reason"])
    series = [
        sample
        for metric in collector.metrics.registry.collect()
        if metric.name == "hitstream_events_rejected"
        for sample in metric.samples
        if sample.name.endswith("_total") and sample.labels["field"] == "props"
    ]
    assert [(s.labels["reason"], s.value) for s in series] == [
        ("key … must be 1 to 64 characters", float(len(keys)))
    ]


async def test_a_batch_without_timestamps_keeps_its_order_in_timestamp_then_id(
    collector: Collector, log: MemoryLog
) -> None:
    """Events sent together share the request's time; their ids then order them as sent,
    so a funnel ``/`` -> ``/pricing`` sent in one batch is reached in that order."""
    paths = [f"/p{n}" for n in range(40)]
    body = msgspec.json.encode([{"site_id": "a.io", "path": path} for path in paths])
    result = await collector.collect(body, "application/json", IP, UA)
    assert result.status == 202
    events = stored(log)
    assert {e.timestamp for e in events} == {NOW}
    assert [e.path for e in sorted(events, key=lambda e: (e.timestamp, e.event_id))] == paths


@pytest.mark.parametrize("mode", ["campaign", "all"])
async def test_a_page_urls_query_is_kept_as_the_setting_says(log: MemoryLog, mode: str) -> None:
    """By default nothing of a page URL's query reaches the log but its campaign tags (an
    email or a token in a confirmation link is not analytics); ``all`` keeps it as sent."""
    collector = Collector(
        log, MemorySaltKeeper(), FakeCountries(), Metrics(), sites=Sites("a.io"),
        clock=lambda: NOW, url_query=mode,
    )  # fmt: skip
    url = "https://a.io/welcome?email=ann%40x.io&utm_source=news#token=abc"
    body = msgspec.json.encode({"site_id": "a.io", "url": url})
    assert (await collector.collect(body, "application/json", IP, UA)).status == 202
    link = "https://files.example/invoice.pdf?sig=s3cr3t"  # the tracker's download click
    click = {"site_id": "a.io", "type": "click", "name": "download", "url": url}
    body = msgspec.json.encode({**click, "props": {"url": link, "plan": "pro"}})
    assert (await collector.collect(body, "application/json", IP, UA)).status == 202
    event, download = stored(log)
    assert event.path == "/welcome"
    if mode == "all":
        assert (event.url, event.query) == (url, "email=ann%40x.io&utm_source=news")
        assert download.props == {"url": link, "plan": "pro"}
    else:
        assert (event.url, event.query) == (
            "https://a.io/welcome?utm_source=news",
            "utm_source=news",
        )
        assert download.props == {"url": "https://files.example/invoice.pdf", "plan": "pro"}
        assert b"s3cr3t" not in b"".join(m.value for m in log.messages())
    with pytest.raises(ValueError, match="url_query"):
        Collector(log, MemorySaltKeeper(), FakeCountries(), Metrics(), sites=Sites("a.io"),
                  url_query="none")  # fmt: skip


@pytest.mark.parametrize("body", [b"", b"  \n"])
async def test_an_empty_body_is_called_empty(collector: Collector, body: bytes) -> None:
    result = await collector.collect(body, "application/json", IP, UA)
    assert (result.status, field_of(result)) == (400, "body")
    assert result.error is not None and str(result.error["reason"]).startswith("is empty")
    assert collector.rejections[("", "request 400: body: empty")] == 1


class Registry:
    """A site book whose registry changes as the Gatekeeper's does: a new mapping each time."""

    def __init__(self, *sites: Site) -> None:
        self.current: Mapping[str, Site] = {site.site_id: site for site in sites}

    async def sites(self) -> Mapping[str, Site]:
        return self.current

    async def forgotten_users(self) -> Mapping[tuple[str, str], int]:
        return {}


async def test_site_checks_kept_across_requests_follow_the_registry(log: MemoryLog) -> None:
    """An anonymous sender's site checks are kept from one request to the next; a changed
    registry (a host no longer allowed, a site removed) is checked anew at once."""
    book = Registry(Site("a.io"))
    collector = Collector(
        log, MemorySaltKeeper(), FakeCountries(), Metrics(), sites=book, clock=lambda: NOW
    )
    body = b'{"site_id": "a.io", "url": "https://www.a.io/x"}'

    async def status(origin: str = "") -> int:
        return (await collector.collect(body, "application/json", IP, UA, origin=origin)).status

    assert [await status(), await status(), await status("https://a.io")] == [202, 202, 202]
    assert await status("https://evil.example") == 422
    book.current = {"a.io": Site("a.io", allowed_hosts=("a.io",))}  # www. no longer allowed
    assert await status() == 422
    book.current = {}
    assert await status() == 422
    book.current = {"a.io": Site("a.io")}
    assert await status("https://a.io") == 202
    assert len(stored(log)) == 4


async def test_site_checks_kept_across_requests_are_bounded(log: MemoryLog) -> None:
    """Hosts and origins are the sender's text: what is kept of them stays bounded."""
    collector = Collector(
        log, MemorySaltKeeper(), FakeCountries(), Metrics(), sites=Sites("a.io"), clock=lambda: NOW
    )
    limit = collector_module.MAX_KEPT_VERDICTS
    for n in range(limit + 10):
        body = f'{{"site_id": "a.io", "url": "https://h{n}.a.io/"}}'.encode()
        origin = f"https://o{n % 3}.a.io"
        assert (
            await collector.collect(body, "application/json", IP, UA, origin=origin)
        ).status == 202
    for n in range(limit + 10):
        await collector.collect(
            b'{"site_id": "a.io", "path": "/"}',
            "application/json",
            IP,
            UA,
            origin=f"https://x{n}.a.io",
        )
    kept = collector._verdicts
    assert len(kept) <= limit
    assert all(len(by_place) <= limit for by_place in kept.values())


async def test_a_site_id_in_another_case_names_the_registered_site(log: MemoryLog) -> None:
    """A domain is one site whatever its case: ``Shop.Example`` registered, the tracker's
    default (``location.hostname``) sends ``shop.example``; it was refused as "not a
    registered site". The event takes the registered id, as stored and read."""
    collector = Collector(
        log, MemorySaltKeeper(), FakeCountries(), Metrics(), sites=Sites("Shop.Example"),
        clock=lambda: NOW,
    )  # fmt: skip
    for sent in ("shop.example", "SHOP.EXAMPLE", "Shop.Example"):
        body = msgspec.json.encode({"site_id": sent, "url": "https://shop.example/"})
        for typed in (True, False):  # the typed pass and the generic one
            if typed:
                result = await collector.collect(body, "application/json", "1.2.3.4", "UA")
            else:
                with pytest.MonkeyPatch.context() as patch:
                    patch.setattr(collector_module, "decode_typed", lambda body: None)
                    result = await collector.collect(body, "application/json", "1.2.3.4", "UA")
            assert result.status == 202, result.body()
    events = stored(log)
    assert {e.site_id for e in events} == {"Shop.Example"} and len(events) == 6
    assert len({e.visitor_id for e in events}) == 1  # one visitor: hashed with one site id
    other = msgspec.json.encode({"site_id": "shop.example.org", "url": "https://shop.example/"})
    refused = await collector.collect(other, "application/json", "1.2.3.4", "UA")
    assert refused.status == 422
