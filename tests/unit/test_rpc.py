"""The gRPC stats service in process: every role on memory adapters, events sent through the
real collector and processor, a real ``grpc.aio`` server on loopback, a client made from the
generated stubs. Each answer is checked against counts made here from the events sent, and
against the HTTP Stats API's answer to the same question; then access, bad fields, health and
reflection."""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hitstream.bootstrap import Runtime, build
from hitstream.errors import ConfigError, StoreUnavailable
from hitstream.rpc.server import STATS_SERVICE, GrpcServer, Served
from hitstream.rpc.v1 import stats_pb2 as pb
from hitstream.rpc.v1.stats_pb2_grpc import StatsStub
from hitstream.services.accounts import Accounts
from hitstream.settings import Settings
from hitstream.web.app import create_app
from tests.access import admin_key, bearer

if TYPE_CHECKING:
    from hitstream.rpc.v1.stats_pb2_grpc import StatsAsyncStub  # in the .pyi only

SITE = "shop.test"
PUBLIC = "open.test"
OTHER = "other.test"
CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36"
USERS = ("ann", "bob", "cy", "")  # "" sends no user_id: an anonymous visitor
PAGES = ("/", "/pricing", "/docs|v2")  # a '|' in a path is a value, not filter syntax


@dataclass(frozen=True)
class Sent:
    user: str
    path: str
    type: str
    ip: str

    @property
    def visitor(self) -> str:
        """Who the processor will count: the user id, or the anonymous address."""
        return self.user or self.ip


def traffic() -> list[Sent]:
    """A fixed mix: each user on each page, with an uneven number of events of each type."""
    sent: list[Sent] = []
    for u, user in enumerate(USERS):
        for p, path in enumerate(PAGES):
            for n in range((u + 2 * p) % 4 + 1):
                kind = ("pageview", "click", "custom")[(u + p + n) % 3]
                sent.append(Sent(user, path, kind, f"81.2.69.{10 + u}"))
    return sent


def body(item: Sent, site: str = SITE) -> dict[str, Any]:
    event: dict[str, Any] = {"site_id": site, "type": item.type, "url": f"https://{site}/x"}
    event["path"] = item.path
    if item.type == "custom":
        event["name"] = "signup"
    if item.user:
        event["user_id"] = item.user
    return event


@dataclass
class Rig:
    runtime: Runtime
    http: httpx.AsyncClient
    stub: StatsAsyncStub
    channel: grpc.aio.Channel
    server: GrpcServer
    admin: str
    sent: list[Sent]
    switch: StoreSwitch
    days: dict[str, Any] = field(default_factory=dict)
    """A custom period around now (yesterday to tomorrow, UTC: the sites' zone), fixed at
    setup: every event sent is in it, and its range does not move with the clock."""

    @property
    def http_days(self) -> dict[str, str]:
        return {"period": "custom", "from": self.days["date_from"], "to": self.days["date_to"]}

    def auth(self, key: str | None = None) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {key or self.admin}"),)

    async def get(self, kind: str, **params: Any) -> dict[str, Any]:
        answer = await self.http.get(
            f"/api/v1/stats/{kind}", params=params, headers=bearer(self.admin)
        )
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


class StoreSwitch:
    """The store as health asks it, with a switch: down means ``check`` fails."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.down = False

    async def check(self) -> None:
        if self.down:
            raise StoreUnavailable("memory", "switched off by the test")
        await self.runtime.store.check()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    settings = Settings(
        data_dir=tmp_path,
        log_url="memory://",
        store_url="memory://",
        cache_url="memory://",
        trusted_proxies=["127.0.0.1/32"],
        sites=json.dumps(
            [{"site_id": SITE}, {"site_id": PUBLIC, "public": True}, {"site_id": OTHER}]
        ),
        batch_max_wait_ms=20,
    )
    runtime = build(settings)
    await runtime.start()
    store = StoreSwitch(runtime)
    assert runtime.stats is not None and runtime.gate is not None
    server = GrpcServer(
        runtime.stats, runtime.gate, runtime.metrics, store, host="127.0.0.1", port=0
    )
    await server.start()
    transport = httpx.ASGITransport(app=create_app(runtime.services))
    sent = traffic()
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://hitstream.test") as http,
        grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
    ):
        rig = Rig(
            runtime,
            http,
            StatsStub(channel),
            channel,
            server,
            await admin_key(runtime.store),
            sent,
            store,
        )
        today = datetime.now(UTC).date()
        rig.days = {
            "period": "custom",
            "date_from": str(today - timedelta(days=1)),
            "date_to": str(today + timedelta(days=1)),
        }
        for site in (SITE, PUBLIC):
            for item in sent:
                answer = await http.post(
                    "/api/v1/events",
                    json=body(item, site),
                    headers={"user-agent": CHROME, "x-forwarded-for": item.ip},
                )
                assert answer.status_code == 202, answer.text
        await processed(rig, len(sent))
        yield rig
    await server.stop()
    await runtime.stop()


async def processed(rig: Rig, count: int) -> None:
    """Wait (bounded) until the processor stored every event sent to both sites."""
    for _ in range(400):
        done = [
            (await rig.get("aggregate", site_id=site, **rig.http_days, metrics="events"))[
                "results"
            ]["events"]["value"]
            for site in (SITE, PUBLIC)
        ]
        if done == [count, count]:
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"the processor stored {done} of {count} events")


def rows(reply: pb.BreakdownReply | pb.TimeseriesReply) -> list[dict[str, Any]]:
    """A reply's rows in the HTTP API's JSON shape."""
    if isinstance(reply, pb.BreakdownReply):
        return [{"value": r.value, **dict(r.metrics)} for r in reply.results]
    return [{"bucket": p.bucket, **dict(p.metrics)} for p in reply.results]


async def test_aggregate_is_the_http_answer_and_the_count_of_what_was_sent(rig: Rig) -> None:
    metrics = ["events", "pageviews", "visitors", "visits"]
    reply = await rig.stub.Aggregate(
        pb.AggregateRequest(site_id=SITE, **rig.days, metrics=metrics, compare="previous_period"),
        metadata=rig.auth(),
    )
    http = await rig.get(
        "aggregate",
        site_id=SITE,
        **rig.http_days,
        metrics=",".join(metrics),
        compare="previous_period",
    )
    got = {
        name: {
            "value": v.value,
            "previous": v.previous,
            "change": v.change if v.HasField("change") else None,
        }
        for name, v in reply.results.items()
    }
    assert got == http["results"]
    assert (reply.site_id, reply.range.from_ms, reply.range.to_ms) == (
        http["site_id"],
        http["from"],
        http["to"],
    )
    assert (reply.compare.from_ms, reply.compare.to_ms) == (
        http["compare"]["from"],
        http["compare"]["to"],
    )
    assert reply.results["events"].value == len(rig.sent)
    assert reply.results["pageviews"].value == sum(s.type == "pageview" for s in rig.sent)
    assert reply.results["visitors"].value == len({s.visitor for s in rig.sent})
    assert reply.results["events"].previous == 0 and not reply.results["events"].HasField("change")


async def test_default_metrics_and_a_custom_day_are_the_http_ones(rig: Rig) -> None:
    http_default = await rig.get("aggregate", site_id=SITE)  # 30d, the default metrics
    default = await rig.stub.Aggregate(pb.AggregateRequest(site_id=SITE), metadata=rig.auth())
    assert {name: {"value": v.value} for name, v in default.results.items()} == http_default[
        "results"
    ]
    assert set(default.results) == {
        "visitors",
        "visits",
        "pageviews",
        "bounce_rate",
        "visit_duration",
    }
    first = await rig.stub.Aggregate(
        pb.AggregateRequest(site_id=SITE, date="2026-01-31", metrics=["events"]),
        metadata=rig.auth(),
    )
    http = await rig.get(
        "aggregate",
        site_id=SITE,
        period="custom",
        to="2026-01-31",
        metrics="events",
        **{"from": "2026-01-31"},
    )
    assert (first.range.from_ms, first.range.to_ms) == (http["from"], http["to"])
    assert first.results["events"].value == http["results"]["events"]["value"] == 0


async def test_timeseries_is_the_http_answer(rig: Rig) -> None:
    reply = await rig.stub.Timeseries(
        pb.TimeseriesRequest(
            site_id=SITE, **rig.days, interval="hour", metrics=["events", "visitors"]
        ),
        metadata=rig.auth(),
    )
    http = await rig.get(
        "timeseries", site_id=SITE, **rig.http_days, interval="hour", metrics="events,visitors"
    )
    assert reply.interval == http["interval"] == "hour"
    assert rows(reply) == http["results"]
    assert sum(p.metrics["events"] for p in reply.results) == len(rig.sent)


async def test_breakdown_is_the_http_answer_with_filters(rig: Rig) -> None:
    reply = await rig.stub.Breakdown(
        pb.BreakdownRequest(
            site_id=SITE,
            **rig.days,
            property="user_id",
            metrics=["events"],
            filters="event_type==click;page==/pricing",
        ),
        metadata=rig.auth(),
    )
    http = await rig.get(
        "breakdown",
        site_id=SITE,
        **rig.http_days,
        property="user_id",
        metrics="events",
        filters="event_type==click;page==/pricing",
    )
    assert reply.property == "user_id" and rows(reply) == http["results"]
    clicks = Counter(s.user for s in rig.sent if s.type == "click" and s.path == "/pricing")
    assert {r.value: r.metrics["events"] for r in reply.results} == clicks
    limited = await rig.stub.Breakdown(
        pb.BreakdownRequest(site_id=SITE, **rig.days, property="page", limit=2),
        metadata=rig.auth(),
    )
    assert len(limited.results) == 2


async def test_realtime_is_the_http_answer(rig: Rig) -> None:
    reply = await rig.stub.Realtime(pb.RealtimeRequest(site_id=SITE), metadata=rig.auth())
    http = await rig.get("realtime", site_id=SITE)
    assert reply.visitors == http["visitors"] == len({s.visitor for s in rig.sent})


async def test_user_events_count_each_user_as_the_user_id_breakdown(rig: Rig) -> None:
    reply = await rig.stub.UserEvents(
        pb.UserEventsRequest(site_id=SITE, **rig.days), metadata=rig.auth()
    )
    http = await rig.get(
        "breakdown", site_id=SITE, **rig.http_days, property="user_id", metrics="events,visitors"
    )
    assert reply.property == "user_id"
    assert [(r.value, r.events, r.visitors) for r in reply.results] == [
        (r["value"], r["events"], r["visitors"]) for r in http["results"]
    ]
    events = Counter(s.user for s in rig.sent)
    assert {r.value: r.events for r in reply.results} == events
    assert [r.events for r in reply.results] == sorted(events.values(), reverse=True)
    one = await rig.stub.UserEvents(
        pb.UserEventsRequest(site_id=SITE, **rig.days, user_id="bob"), metadata=rig.auth()
    )
    assert [(r.value, r.events, r.visitors) for r in one.results] == [("bob", events["bob"], 1)]


async def test_page_events_count_each_page_as_the_page_breakdown(rig: Rig) -> None:
    reply = await rig.stub.PageEvents(
        pb.PageEventsRequest(site_id=SITE, **rig.days), metadata=rig.auth()
    )
    http = await rig.get(
        "breakdown", site_id=SITE, **rig.http_days, property="page", metrics="events,visitors"
    )
    assert [(r.value, r.events, r.visitors) for r in reply.results] == [
        (r["value"], r["events"], r["visitors"]) for r in http["results"]
    ]
    visitors: dict[str, set[str]] = defaultdict(set)
    for s in rig.sent:
        visitors[s.path].add(s.visitor)
    events = Counter(s.path for s in rig.sent)
    assert {r.value: (r.events, r.visitors) for r in reply.results} == {
        path: (events[path], len(visitors[path])) for path in PAGES
    }
    for page_url in ("/docs|v2", f"https://{SITE}/docs|v2?ref=x"):
        one = await rig.stub.PageEvents(
            pb.PageEventsRequest(site_id=SITE, **rig.days, page_url=page_url),
            metadata=rig.auth(),
        )
        assert [(r.value, r.events) for r in one.results] == [("/docs|v2", events["/docs|v2"])]
    elsewhere = await rig.stub.PageEvents(
        pb.PageEventsRequest(site_id=SITE, **rig.days, page_url="https://elsewhere.test/"),
        metadata=rig.auth(),
    )
    assert list(elsewhere.results) == []  # the host is part of an absolute URL


async def code_of(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = caught.value
    trailing = {k: str(v) for k, v in (error.trailing_metadata() or ())}
    return error.code(), error.details() or "", trailing


async def test_a_call_without_a_key_on_a_private_site_is_refused(rig: Rig) -> None:
    request = pb.AggregateRequest(site_id=SITE, period="day")
    code, details, trailing = await code_of(rig.stub.Aggregate(request))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert details == "authorization: credentials are required"
    assert trailing["error-field"] == "authorization"
    for metadata in ((("authorization", "Bearer hs_key_nope"),), (("authorization", "Basic x"),)):
        code, _, trailing = await code_of(rig.stub.Aggregate(request, metadata=metadata))
        assert (
            code == grpc.StatusCode.UNAUTHENTICATED and trailing["error-field"] == "authorization"
        )
    # every method asks the gatekeeper
    for call in (
        rig.stub.Realtime(pb.RealtimeRequest(site_id=SITE)),
        rig.stub.UserEvents(pb.UserEventsRequest(site_id=SITE)),
        rig.stub.PageEvents(pb.PageEventsRequest(site_id=SITE)),
        rig.stub.Breakdown(pb.BreakdownRequest(site_id=SITE, property="page")),
        rig.stub.Timeseries(pb.TimeseriesRequest(site_id=SITE)),
    ):
        assert (await code_of(call))[0] == grpc.StatusCode.UNAUTHENTICATED


async def test_keys_reach_what_they_reach_over_http(rig: Rig) -> None:
    accounts = Accounts(rig.runtime.store)
    reader, _ = await accounts.create_key(SITE, "read", "grpc reader")
    writer, _ = await accounts.create_key(SITE, "write", "grpc writer")
    elsewhere, _ = await accounts.create_key(OTHER, "read", "other reader")
    request = pb.RealtimeRequest(site_id=SITE)
    ok = await rig.stub.Realtime(request, metadata=rig.auth(reader))
    assert ok.visitors == len({s.visitor for s in rig.sent})
    for key in (writer, elsewhere):
        code, _, trailing = await code_of(rig.stub.Realtime(request, metadata=rig.auth(key)))
        assert code == grpc.StatusCode.PERMISSION_DENIED and trailing["error-field"] == "site_id"
        http = await rig.http.get(
            "/api/v1/stats/realtime", params={"site_id": SITE}, headers=bearer(key)
        )
        assert http.status_code == 403
    # a public site needs no key, and answers the same numbers
    public = await rig.stub.UserEvents(pb.UserEventsRequest(site_id=PUBLIC, **rig.days))
    assert {r.value: r.events for r in public.results} == Counter(s.user for s in rig.sent)
    # a site that does not exist, to one who could read it
    code, _, _ = await code_of(
        rig.stub.Realtime(pb.RealtimeRequest(site_id="nope.test"), metadata=rig.auth())
    )
    assert code == grpc.StatusCode.NOT_FOUND


BAD_FIELDS: list[tuple[Any, str]] = [
    (pb.AggregateRequest(site_id=SITE, metrics=["visitors", "nope"]), "metrics"),
    (pb.AggregateRequest(site_id=SITE, period="week"), "period"),
    (pb.AggregateRequest(site_id=SITE, period="custom", date_to="2026-01-02"), "date_from"),
    (
        pb.AggregateRequest(
            site_id=SITE, period="custom", date_from="2026-01-02", date_to="2026-13-01"
        ),
        "date_to",
    ),
    (pb.AggregateRequest(site_id=SITE, date="2026-01-02", date_from="2026-01-01"), "date"),
    (pb.AggregateRequest(site_id=SITE, date="2026-01-02", period="7d"), "date"),
    (pb.AggregateRequest(site_id=SITE, date="yesterday"), "date"),
    (pb.AggregateRequest(site_id=SITE, tz="Mars/Olympus"), "tz"),
    (pb.AggregateRequest(site_id=SITE, compare="last_year"), "compare"),
    (pb.AggregateRequest(site_id=SITE, filters="page"), "filters"),
    (pb.AggregateRequest(site_id=SITE, filters="nope==1"), "filters"),
    (pb.AggregateRequest(site_id=SITE, filters="page~" + "x" * 2001), "filters"),
    (pb.AggregateRequest(site_id=""), "site_id"),
    (pb.AggregateRequest(site_id="bad site"), "site_id"),
    (pb.TimeseriesRequest(site_id=SITE, interval="week"), "interval"),
    (pb.TimeseriesRequest(site_id=SITE, period="30d", interval="minute"), "interval"),
    (pb.BreakdownRequest(site_id=SITE), "property"),
    (pb.BreakdownRequest(site_id=SITE, property="colour"), "property"),
    (pb.BreakdownRequest(site_id=SITE, property="page", limit=1001), "limit"),
    (pb.BreakdownRequest(site_id=SITE, property="page", limit=-1), "limit"),
    (pb.UserEventsRequest(site_id=SITE, limit=5000), "limit"),
    (pb.PageEventsRequest(site_id=SITE, page_url="pricing"), "page_url"),
    (pb.PageEventsRequest(site_id=SITE, page_url="https:///x"), "page_url"),
    (pb.RealtimeRequest(site_id="x" * 101), "site_id"),
]


async def test_a_bad_field_is_invalid_argument_naming_it(rig: Rig) -> None:
    methods: dict[type, tuple[str, Callable[..., Any]]] = {
        pb.AggregateRequest: ("Aggregate", rig.stub.Aggregate),
        pb.TimeseriesRequest: ("Timeseries", rig.stub.Timeseries),
        pb.BreakdownRequest: ("Breakdown", rig.stub.Breakdown),
        pb.UserEventsRequest: ("UserEvents", rig.stub.UserEvents),
        pb.PageEventsRequest: ("PageEvents", rig.stub.PageEvents),
        pb.RealtimeRequest: ("Realtime", rig.stub.Realtime),
    }
    registry = rig.runtime.metrics.registry
    for request, named in BAD_FIELDS:
        name, method = methods[type(request)]
        labels = {"method": name, "code": "INVALID_ARGUMENT"}
        calls_before = registry.get_sample_value("hitstream_grpc_calls_total", labels) or 0
        rejected = {"status": "400", "reason": named}
        before = registry.get_sample_value("hitstream_requests_rejected_total", rejected) or 0
        code, details, trailing = await code_of(method(request, metadata=rig.auth()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (request, details)
        assert details.startswith(f"{named}: ") and trailing["error-field"] == named, details
        assert trailing["error-reason"] and trailing["error-reason"] in details
        # counted by reason, as over HTTP, and by method and code
        after = registry.get_sample_value("hitstream_requests_rejected_total", rejected)
        assert after == before + 1
        assert registry.get_sample_value("hitstream_grpc_calls_total", labels) == calls_before + 1


async def test_health_follows_the_store(rig: Rig) -> None:
    health = health_pb2_grpc.HealthStub(rig.channel)

    async def status(service: str) -> Any:
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        return reply.status

    for service in ("", STATS_SERVICE):
        assert await status(service) == health_pb2.HealthCheckResponse.SERVING
    rig.switch.down = True
    assert await rig.server.probe() is False
    for service in ("", STATS_SERVICE):
        assert await status(service) == health_pb2.HealthCheckResponse.NOT_SERVING
    rig.switch.down = False
    assert await rig.server.probe() is True
    assert await status(STATS_SERVICE) == health_pb2.HealthCheckResponse.SERVING
    code, _, _ = await code_of(health.Check(health_pb2.HealthCheckRequest(service="nope.Svc")))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_services_and_describes_stats(rig: Rig) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(rig.channel)
    asks = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=STATS_SERVICE),
    ]
    answers = [answer async for answer in stub.ServerReflectionInfo(iter(asks))]
    listed = {s.name for s in answers[0].list_services_response.service}
    assert listed == {
        "hitstream.v1.Stats",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }
    described = descriptor_pb2.FileDescriptorProto.FromString(
        answers[1].file_descriptor_response.file_descriptor_proto[0]
    )
    assert described.package == "hitstream.v1"
    methods = {m.name for m in described.service[0].method}
    assert methods == {
        "Aggregate",
        "Timeseries",
        "Breakdown",
        "Realtime",
        "UserEvents",
        "PageEvents",
    }


async def test_a_store_that_is_down_is_unavailable(rig: Rig) -> None:
    await rig.runtime.store.close()  # the memory store refuses every call until started
    try:
        code, details, trailing = await code_of(
            rig.stub.Aggregate(pb.AggregateRequest(site_id=SITE, **rig.days), metadata=rig.auth())
        )
    finally:
        await rig.runtime.store.start()
    assert code == grpc.StatusCode.UNAVAILABLE and trailing["error-field"] == "service"
    assert details.startswith("service: ")
    again = await rig.stub.Realtime(pb.RealtimeRequest(site_id=SITE), metadata=rig.auth())
    assert again.visitors == len({s.visitor for s in rig.sent})


async def test_a_bug_is_internal_counted_and_names_no_exception(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a call raises that no rule names (a bug) ends it as INTERNAL "internal error",
    counted; it ended as UNKNOWN with the Python exception's class and text, uncounted."""

    async def broken(*_: Any, **__: Any) -> Any:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(rig.runtime.services.stats, "aggregate", broken)
    registry = rig.runtime.metrics.registry
    labels = {"method": "Aggregate", "code": "INTERNAL"}
    before = registry.get_sample_value("hitstream_grpc_calls_total", labels) or 0
    code, details, trailing = await code_of(
        rig.stub.Aggregate(pb.AggregateRequest(site_id=SITE, **rig.days), metadata=rig.auth())
    )
    assert (code, details) == (grpc.StatusCode.INTERNAL, "service: internal error")
    assert trailing["error-field"] == "service" and "Overflow" not in str(trailing)
    assert registry.get_sample_value("hitstream_grpc_calls_total", labels) == before + 1


class Steps:
    """A lifecycle that records its starts and stops."""

    def __init__(self) -> None:
        self.done: list[str] = []

    async def start(self) -> None:
        self.done.append("start")

    async def stop(self) -> None:
        self.done.append("stop")


async def test_a_taken_port_stops_startup_and_what_it_started(rig: Rig) -> None:
    assert rig.runtime.stats is not None and rig.runtime.gate is not None
    second = GrpcServer(
        rig.runtime.stats,
        rig.runtime.gate,
        rig.runtime.metrics,
        rig.switch,
        host="127.0.0.1",
        port=rig.server.port,  # the rig's server has it
    )
    runtime = Steps()
    with pytest.raises(ConfigError, match="HITSTREAM_GRPC_PORT"):
        await Served(runtime, second).start()
    assert runtime.done == ["start", "stop"]
    still = await rig.stub.Realtime(pb.RealtimeRequest(site_id=SITE), metadata=rig.auth())
    assert still.site_id == SITE  # the first server was not disturbed
