"""The load client: request shape and headers, pacing, bounds and counting, over MockTransport."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random
from collections.abc import Callable

import httpx
import pytest

from hitstream.errors import ConfigError
from hitstream.synthetic.generator import (
    GenerateResult,
    LoadPlan,
    Progress,
    percentile,
    run_generate,
    send_traffic,
)
from hitstream.synthetic.traffic import TrafficModel, WireEvent

NOW = 1_735_700_000_000
BASE = "http://127.0.0.1:8080"


class FakeClock:
    """Monotonic seconds that move only when the sender sleeps or a handler says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        for _ in range(3):  # let the requests due by now run first, as real time would
            await asyncio.sleep(0)
        self.now += seconds


class Server:
    """A fake collector: records each request with the clock time it arrived at."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []
        self.answer: Callable[[int, httpx.Request], httpx.Response] = self.accept_all

    @staticmethod
    def accept_all(index: int, request: httpx.Request) -> httpx.Response:
        sent = events_of(request)
        return httpx.Response(
            202, json={"accepted": len(sent), "ids": ["x"] * len(sent), "rejected": []}
        )

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(self.clock.now if self.clock else 0.0)
        return self.answer(len(self.requests) - 1, request)


def events_of(request: httpx.Request) -> list[dict[str, object]]:
    if request.headers["content-type"] == "application/x-ndjson":
        return [json.loads(line) for line in request.content.decode().splitlines()]
    decoded = json.loads(request.content)
    return decoded if isinstance(decoded, list) else [decoded]


async def send(
    plan: LoadPlan,
    server: Server,
    clock: FakeClock,
    *,
    seed: int = 7,
    progress: list[Progress] | None = None,
) -> GenerateResult:
    model = TrafficModel("demo.example", random.Random(seed))
    async with httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(server)) as client:
        return await send_traffic(
            client,
            model,
            plan,
            on_progress=progress.append if progress is not None else None,
            clock=clock,
            sleep=clock.sleep,
            wall_ms=lambda: NOW,
        )


def reference_visits(n: int, seed: int = 7) -> list[list[WireEvent]]:
    model = TrafficModel("demo.example", random.Random(seed))
    return [model.recent_visit(NOW) for _ in range(n)]


async def test_single_event_requests_carry_each_visitors_headers() -> None:
    clock = FakeClock()
    server = Server(clock)
    result = await send(LoadPlan(rate=None, count=60, concurrency=1), server, clock)
    expected = [event for visit in reference_visits(60) for event in visit][:60]
    assert len(server.requests) == 60
    for request, event in zip(server.requests, expected, strict=True):
        assert request.method == "POST"
        assert request.url == f"{BASE}/api/v1/events"
        assert request.headers["content-type"] == "application/json"
        assert request.headers["x-forwarded-for"] == event.ip
        assert request.headers["user-agent"] == event.user_agent
        assert json.loads(request.content) == event.body  # one object, not an array
        ipaddress.IPv4Address(event.ip)
    assert (result.requests, result.sent, result.accepted) == (60, 60, 60)
    assert (result.rejected, result.failed) == (0, 0)
    assert result.statuses == {202: 60}


async def test_batches_hold_one_visit_each_under_its_visitors_headers() -> None:
    clock = FakeClock()
    server = Server(clock)
    result = await send(LoadPlan(rate=None, count=400, batch=50, concurrency=1), server, clock)
    visits = reference_visits(len(server.requests))
    sizes = [len(events_of(r)) for r in server.requests]
    assert sum(sizes) == result.sent == 400
    for request, visit in zip(server.requests[:-1], visits, strict=False):
        assert isinstance(json.loads(request.content), list)
        assert events_of(request) == [event.body for event in visit]
        assert request.headers["x-forwarded-for"] == visit[0].ip
        assert request.headers["user-agent"] == visit[0].user_agent
    assert max(sizes) > 1


async def test_a_long_visit_is_split_into_requests_of_at_most_batch_events() -> None:
    clock = FakeClock()
    server = Server(clock)
    await send(LoadPlan(rate=None, count=300, batch=2, concurrency=1), server, clock)
    assert all(1 <= len(events_of(r)) <= 2 for r in server.requests)
    flat = [body for r in server.requests for body in events_of(r)]
    expected = [e.body for visit in reference_visits(300) for e in visit][: len(flat)]
    assert flat == expected
    by_request = [(r.headers["x-forwarded-for"], r.headers["user-agent"]) for r in server.requests]
    assert len(set(by_request)) < len(by_request)  # some visits took two requests


async def test_mixed_batches_are_full_and_ndjson_is_line_delimited() -> None:
    clock = FakeClock()
    server = Server(clock)
    plan = LoadPlan(rate=None, count=230, batch=100, per_visitor=False, ndjson=True)
    result = await send(plan, server, clock)
    assert [len(events_of(r)) for r in server.requests] == [100, 100, 30]
    assert all(r.headers["content-type"] == "application/x-ndjson" for r in server.requests)
    assert all(r.content.endswith(b"}\n") for r in server.requests)
    assert result.accepted == 230


async def test_never_faster_than_the_target_rate() -> None:
    clock = FakeClock()
    server = Server(clock)
    result = await send(LoadPlan(rate=100, count=300, concurrency=8), server, clock)
    assert len(server.times) == 300
    for index, at in enumerate(server.times):
        assert at >= index / 100 - 1e-9
    assert server.times == pytest.approx([index / 100 for index in range(300)])  # and on time
    assert result.elapsed_s == pytest.approx(2.99)
    assert result.rate == pytest.approx(300 / 2.99)


async def test_rate_counts_events_not_requests() -> None:
    clock = FakeClock()
    server = Server(clock)
    await send(LoadPlan(rate=50, count=200, batch=10, concurrency=4), server, clock)
    sent_before = 0
    for request, at in zip(server.requests, server.times, strict=True):
        assert at >= sent_before / 50 - 1e-9
        sent_before += len(events_of(request))
    assert server.times[-1] == pytest.approx((200 - len(events_of(server.requests[-1]))) / 50)


async def test_duration_bounds_the_run() -> None:
    clock = FakeClock()
    server = Server(clock)
    result = await send(LoadPlan(rate=50, duration_s=2.0), server, clock)
    assert 99 <= result.sent <= 101
    assert max(server.times) < 2.0


async def test_replies_are_counted_by_kind() -> None:
    clock = FakeClock()
    server = Server(clock)

    def answer(index: int, request: httpx.Request) -> httpx.Response:
        kind = index % 5
        if kind == 0:
            return Server.accept_all(index, request)
        if kind == 1:
            return httpx.Response(202, json={"accepted": 0, "ids": [], "rejected": [{"i": 0}]})
        if kind == 2:
            return httpx.Response(400, json={"detail": [{"field": "url", "reason": "bad"}]})
        if kind == 3:
            return httpx.Response(503, json={"detail": "log unavailable"})
        raise httpx.ConnectError("refused", request=request)

    server.answer = answer
    result = await send(LoadPlan(rate=None, count=50, concurrency=1), server, clock)
    assert result.requests == result.sent == 50
    assert result.accepted == 10
    assert result.rejected == 20
    assert result.failed == 20
    assert result.statuses == {202: 20, 400: 10, 503: 10}
    assert result.errors == {"ConnectError": 10}


async def test_partial_batches_count_what_the_server_says() -> None:
    clock = FakeClock()
    server = Server(clock)

    def answer(index: int, request: httpx.Request) -> httpx.Response:
        n = len(events_of(request))
        return httpx.Response(202, json={"accepted": n - 1, "ids": [], "rejected": [{"index": 0}]})

    server.answer = answer
    plan = LoadPlan(rate=None, count=100, batch=10, per_visitor=False)
    result = await send(plan, server, clock)
    assert (result.accepted, result.rejected, result.failed) == (90, 10, 0)


async def test_latency_percentiles() -> None:
    clock = FakeClock()
    server = Server(clock)

    def answer(index: int, request: httpx.Request) -> httpx.Response:
        clock.now += (index + 1) / 1000  # request i takes i+1 ms
        return Server.accept_all(index, request)

    server.answer = answer
    result = await send(LoadPlan(rate=None, count=100, concurrency=1), server, clock)
    assert result.latency_p50_ms == pytest.approx(50)
    assert result.latency_p90_ms == pytest.approx(90)
    assert result.latency_p99_ms == pytest.approx(99)
    assert result.latency_max_ms == pytest.approx(100)


def test_percentile_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 99) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 51) == 3.0


async def test_in_flight_requests_never_exceed_concurrency() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight -= 1
        return Server.accept_all(0, request)

    model = TrafficModel("demo.example", random.Random(1))
    async with httpx.AsyncClient(base_url=BASE, transport=httpx.MockTransport(handler)) as c:
        result = await send_traffic(c, model, LoadPlan(rate=None, count=64, concurrency=4))
    assert peak == 4
    assert result.accepted == 64


async def test_progress_is_reported_after_each_request() -> None:
    clock = FakeClock()
    server = Server(clock)
    seen: list[Progress] = []
    await send(LoadPlan(rate=100, count=40, batch=5), server, clock, progress=seen)
    assert len(seen) == len(server.requests)
    assert [p.sent for p in seen] == sorted(p.sent for p in seen)
    assert seen[-1].sent == seen[-1].accepted == 40
    assert all(p.total == 40 for p in seen)


def test_a_plan_is_always_bounded_and_sane() -> None:
    with pytest.raises(ConfigError, match="bounded"):
        LoadPlan(rate=10)
    with pytest.raises(ConfigError, match="batch"):
        LoadPlan(count=1, batch=501)
    with pytest.raises(ConfigError, match="rate"):
        LoadPlan(count=1, rate=0)
    assert LoadPlan(rate=200, duration_s=60).planned_events == 12_000
    assert LoadPlan(rate=200, duration_s=60, count=500).planned_events == 500
    assert LoadPlan(rate=None, duration_s=1).planned_events is None


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:8080", "http://example.com", "https://8.8.8.8/", "ftp://127.0.0.1"]
)
async def test_run_generate_refuses_targets_off_this_machine(url: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be sent")

    with pytest.raises(ConfigError):
        await run_generate(url, "demo.example", count=5, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("url", [BASE, "http://localhost:9000", "http://[::1]:8080"])
async def test_run_generate_sends_to_the_given_loopback_url(url: str) -> None:
    server = Server()
    result = await run_generate(
        url,
        "demo.example",
        rate=None,
        duration=None,
        count=25,
        seed=1,
        transport=httpx.MockTransport(server),
    )
    assert result.accepted == 25
    assert {str(r.url) for r in server.requests} == {f"{url}/api/v1/events"}
    assert all(events_of(r)[0]["site_id"] == "demo.example" for r in server.requests)


async def test_run_generate_is_deterministic_for_a_seed_up_to_timestamps() -> None:
    bodies: list[list[dict[str, object]]] = []
    for _ in range(2):
        server = Server()
        await run_generate(
            BASE, "demo.example", rate=None, count=30, seed=3, transport=httpx.MockTransport(server)
        )
        bodies.append(
            [
                {k: v for k, v in b.items() if k not in ("timestamp", "duration_ms")}
                for r in server.requests
                for b in events_of(r)
            ]
        )
    assert bodies[0] == bodies[1]
