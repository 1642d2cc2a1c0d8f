"""The load client behind ``hitstream generate``: synthetic traffic POSTed to a collector.

How events become requests. The collector takes the client IP (``X-Forwarded-For`` from a
trusted proxy) and the User-Agent from the HTTP request, so one request speaks for one visitor:

- ``batch=1``: one event per request, with its visitor's ``X-Forwarded-For`` and ``User-Agent``.
- ``batch=n`` (default ``per_visitor=True``): one visit per request, as a JSON array, split into
  requests of at most ``n`` events when longer. Visits average about three events, so requests
  stay small: the honest shape of tracker traffic, where each browser sends its own events.
- ``batch=n, per_visitor=False``: exactly ``n`` events of many visitors per request, under the
  first event's headers. For throughput tests only: every event of a request then hashes to
  that one visitor.

Guarantees:

- Bounded: it stops scheduling after ``duration_s`` or ``count`` events, whichever comes first
  (one of them is required), then waits for requests in flight, each bounded by the client
  timeout.
- Never faster than asked: request k is due when the events before it equal ``rate`` times the
  elapsed time, so by any time t at most ``rate * t`` plus one request's events have been sent.
  When all ``concurrency`` slots are busy it falls behind, then catches up at most up to the
  concurrency limit; the result reports the rate achieved.
- It sends only to the URL given, and ``run_generate`` refuses a non-loopback host unless told
  ``allow_remote``: tests and demos load only 127.0.0.1 / ::1 / localhost.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import msgspec

from hitstream.errors import ConfigError
from hitstream.synthetic.traffic import TrafficModel, WireEvent

EVENTS_PATH = "/api/v1/events"
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """How much to send and how: every run is bounded by ``duration_s`` and/or ``count``."""

    rate: float | None = 50.0
    """Target events per second; ``None`` sends as fast as ``concurrency`` allows."""
    duration_s: float | None = None
    count: int | None = None
    batch: int = 1
    concurrency: int = 16
    per_visitor: bool = True
    ndjson: bool = False
    path: str = EVENTS_PATH

    def __post_init__(self) -> None:
        if self.duration_s is None and self.count is None:
            raise ConfigError("generate needs a duration or a count: a load is always bounded")
        if self.rate is not None and not self.rate > 0:
            raise ConfigError("rate must be a positive number of events per second")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ConfigError("duration must be positive")
        if self.count is not None and self.count < 1:
            raise ConfigError("count must be at least 1")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ConfigError(f"batch must be between 1 and {MAX_BATCH}")
        if self.concurrency < 1:
            raise ConfigError("concurrency must be at least 1")

    @property
    def planned_events(self) -> int | None:
        """Events the run will send if it keeps up, for a progress bar's total."""
        by_rate = None
        if self.rate is not None and self.duration_s is not None:
            by_rate = max(1, round(self.rate * self.duration_s))
        if self.count is None:
            return by_rate
        return self.count if by_rate is None else min(self.count, by_rate)


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot after each finished request; ``total`` is None when it cannot be known."""

    sent: int
    accepted: int
    rejected: int
    failed: int
    requests: int
    elapsed_s: float
    total: int | None


@dataclass(frozen=True, slots=True)
class GenerateResult:
    """What a run did. ``failed`` counts events of requests with a 5xx or no answer at all.

    ``rejected`` counts events the server refused: those listed in a 202's ``rejected`` and
    every event of a request answered 4xx. Latencies are of requests that got an answer.
    """

    requests: int
    sent: int
    accepted: int
    rejected: int
    failed: int
    elapsed_s: float
    statuses: dict[int, int]
    errors: dict[str, int]
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None

    @property
    def rate(self) -> float:
        """Events sent per second, over the whole run."""
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


@dataclass(slots=True)
class _Tally:
    sent: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def answered(self, status: int, size: int, content: bytes) -> None:
        self.statuses[status] += 1
        if 200 <= status < 300:
            try:
                reply = msgspec.json.decode(content, type=_Reply)
            except msgspec.DecodeError:
                self.errors["unreadable 2xx body"] += 1
                self.accepted += size
                return
            self.accepted += reply.accepted
            self.rejected += len(reply.rejected)
        elif 400 <= status < 500:
            self.rejected += size
        else:
            self.failed += size


class _Reply(msgspec.Struct):
    accepted: int
    rejected: list[object] = []


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _requests(
    model: TrafficModel, plan: LoadPlan, wall_ms: Callable[[], int]
) -> Iterator[list[WireEvent]]:
    """Endless request payloads, grouped as the module docstring says."""
    if plan.batch > 1 and not plan.per_visitor:
        while True:
            yield model.next_events(wall_ms(), plan.batch)
    while True:
        visit = model.recent_visit(wall_ms())
        for start in range(0, len(visit), plan.batch):
            yield visit[start : start + plan.batch]


def _encode(events: list[WireEvent], plan: LoadPlan) -> tuple[bytes, str]:
    if plan.ndjson:
        lines = [msgspec.json.encode(event.body) for event in events]
        return b"\n".join(lines) + b"\n", "application/x-ndjson"
    if plan.batch == 1:
        return msgspec.json.encode(events[0].body), "application/json"
    return msgspec.json.encode([event.body for event in events]), "application/json"


async def send_traffic(
    client: httpx.AsyncClient,
    model: TrafficModel,
    plan: LoadPlan,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    wall_ms: Callable[[], int] = _wall_ms,
) -> GenerateResult:
    """Send ``model``'s traffic through ``client`` as ``plan`` says; see the module docstring.

    ``clock`` and ``sleep`` pace the run (monotonic seconds); ``wall_ms`` stamps the events.
    Cancelling the caller cancels the requests in flight.
    """
    tally = _Tally()
    slots = asyncio.Semaphore(plan.concurrency)
    in_flight: set[asyncio.Task[None]] = set()
    total = plan.planned_events
    start = clock()

    def report() -> None:
        if on_progress is not None:
            on_progress(
                Progress(tally.sent, tally.accepted, tally.rejected, tally.failed,
                         tally.requests, clock() - start, total)
            )  # fmt: skip

    async def send(events: list[WireEvent]) -> None:
        content, content_type = _encode(events, plan)
        headers = {
            "content-type": content_type,
            "user-agent": events[0].user_agent,
            "x-forwarded-for": events[0].ip,
        }
        began = clock()
        try:
            response = await client.post(plan.path, content=content, headers=headers)
        except httpx.TransportError as exc:
            tally.errors[type(exc).__name__] += 1
            tally.failed += len(events)
        else:
            tally.latencies.append((clock() - began) * 1000)
            tally.answered(response.status_code, len(events), response.content)
        finally:
            slots.release()
        tally.sent += len(events)
        tally.requests += 1
        report()

    scheduled = 0
    try:
        for events in _requests(model, plan, wall_ms):
            if plan.count is not None:
                events = events[: plan.count - scheduled]
                if not events:
                    break
            if plan.rate is not None:
                delay = start + scheduled / plan.rate - clock()
                if delay > 0:
                    await sleep(delay)
            if plan.duration_s is not None and clock() - start >= plan.duration_s:
                break
            await slots.acquire()
            if plan.duration_s is not None and clock() - start >= plan.duration_s:
                slots.release()
                break
            scheduled += len(events)
            task = asyncio.create_task(send(events))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.gather(*in_flight)
    finally:
        for task in in_flight:
            task.cancel()
        if in_flight:  # only when interrupted: let the cancelled requests unwind
            await asyncio.gather(*in_flight, return_exceptions=True)
    elapsed = clock() - start
    latencies = sorted(tally.latencies)
    return GenerateResult(
        requests=tally.requests,
        sent=tally.sent,
        accepted=tally.accepted,
        rejected=tally.rejected,
        failed=tally.failed,
        elapsed_s=elapsed,
        statuses=dict(sorted(tally.statuses.items())),
        errors=dict(tally.errors),
        latency_p50_ms=percentile(latencies, 50),
        latency_p90_ms=percentile(latencies, 90),
        latency_p99_ms=percentile(latencies, 99),
        latency_max_ms=latencies[-1] if latencies else None,
    )


def check_target(url: str, *, allow_remote: bool) -> httpx.URL:
    """The parsed base URL; a non-loopback host is refused unless ``allow_remote``."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ConfigError(f"not a valid URL: {url!r}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(f"the target must be an http(s) URL with a host, not {url!r}")
    host = parsed.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise ConfigError(
            f"refusing to load {host}: only loopback hosts (127.0.0.1, ::1, localhost) "
            "unless allow_remote is set"
        )
    return parsed


async def run_generate(
    url: str,
    site: str,
    *,
    rate: float | None = 50.0,
    duration: float | None = 60.0,
    count: int | None = None,
    batch: int = 1,
    concurrency: int = 16,
    seed: int | None = None,
    pages: int = 40,
    bot_share: float = 0.0,
    per_visitor: bool = True,
    ndjson: bool = False,
    timeout: float = 10.0,
    allow_remote: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> GenerateResult:
    """``hitstream generate``: realistic traffic for ``site`` POSTed to the hitstream at ``url``.

    Stops by itself after ``duration`` seconds or ``count`` events (at least one is required).
    The same ``seed`` gives the same visits (timestamps follow the wall clock). ``transport``
    replaces the network (tests pass an ``httpx.MockTransport``).
    """
    plan = LoadPlan(
        rate=rate,
        duration_s=duration,
        count=count,
        batch=batch,
        concurrency=concurrency,
        per_visitor=per_visitor,
        ndjson=ndjson,
    )
    base = check_target(url, allow_remote=allow_remote)
    model = TrafficModel(site, random.Random(seed), pages=pages, bot_share=bot_share)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base,
        timeout=timeout,
        limits=limits,
        transport=transport,
        trust_env=False,  # no proxy from the environment between us and the target
    ) as client:
        return await send_traffic(client, model, plan, on_progress=on_progress)
