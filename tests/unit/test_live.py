"""The live hub with the memory fan-out: snapshots, throttled shared updates, bounded queues."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, WebSocketDisconnect
from fastapi.responses import JSONResponse

from hitstream.cache.memory import MemoryCache
from hitstream.domain.events import ProcessedEvent
from hitstream.domain.goals import Goal
from hitstream.domain.stats import Filter, StatsQuery, parse_filters
from hitstream.errors import AccessDenied, QueryError, StoreUnavailable
from hitstream.fanout.memory import MemoryFanout
from hitstream.log.memory import MemoryLog
from hitstream.metrics import Metrics
from hitstream.services.live import LiveConfig, LiveHub, parse_view, update_interval
from hitstream.services.live_client import Frame, LiveClient, sample
from hitstream.services.processor import Processor
from hitstream.services.quality import Quality, Rejections
from hitstream.services.stats import StatsService
from hitstream.stores.memory import MemoryStore
from hitstream.tally.memory import MemoryTally
from hitstream.web import dashboard, live
from hitstream.web.deps import AppServices
from tests.access import admin_key, bearer, register
from tests.contract.test_store_contract import event

with warnings.catch_warnings():  # starlette 1.x would rather have httpx2; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

SITE = "a.example"


class FakeStats:
    """Answers like the stats service; ``pageviews`` is whatever the test says it is now."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.pageviews = 0
        self.queries: list[StatsQuery] = []

    async def aggregate(self, query: StatsQuery) -> dict[str, Any]:
        self.calls["aggregate"] += 1
        self.queries.append(query)
        return {"site_id": query.site_id, "results": {"pageviews": {"value": self.pageviews}}}

    async def timeseries(self, query: StatsQuery) -> dict[str, Any]:
        self.calls["timeseries"] += 1
        return {"interval": query.interval, "results": [{"bucket": 0, "pageviews": 1}]}

    async def breakdown(self, query: StatsQuery) -> dict[str, Any]:
        self.calls["breakdown"] += 1
        return {"property": query.property, "results": [{"value": "/x", "visitors": 1}]}

    async def realtime(self, site_id: str, filters: tuple[Filter, ...] = ()) -> dict[str, Any]:
        self.calls["realtime"] += 1
        return {"visitors": 1}


class FakeStore:
    def __init__(self) -> None:
        self.version = 1
        self.stored: list[ProcessedEvent] = []
        self.gate: asyncio.Event | None = None
        self.broken = False

    async def data_version(self, site_id: str) -> int:
        return self.version

    async def latest_events(
        self, site_id: str, start_ms: int, end_ms: int, limit: int
    ) -> list[ProcessedEvent]:
        if self.gate is not None:
            await self.gate.wait()
        if self.broken:
            raise StoreUnavailable("the store is down")
        found = sorted(
            (e for e in self.stored if e.site_id == site_id and start_ms <= e.timestamp < end_ms),
            key=lambda e: (e.timestamp, e.event_id),
        )
        return found[max(len(found) - limit, 0) :]

    async def drop_counts(self, site_id: str | None = None) -> dict[str, int]:
        return {"bot:ua_pattern": 2}

    async def prop_keys(self, site_id: str) -> list[str]:
        if self.broken:
            raise StoreUnavailable("the store is down")
        found: dict[str, None] = {}
        for e in sorted(self.stored, key=lambda e: (e.timestamp, e.event_id)):
            if e.site_id == site_id:
                found.update(dict.fromkeys(e.props))
        return list(found)

    async def goals(self, site_id: str) -> list[Goal]:
        return []


def quality_of(store: FakeStore) -> Quality:
    """The real quality source over a tally nobody refused anything into."""
    return Quality(Rejections(MemoryTally()), store)


def now_ms() -> int:
    return int(time.time() * 1000)


def processed(
    version: int, paths: list[str], *, received_at: int | None = None, **extra: Any
) -> bytes:
    at = now_ms() if received_at is None else received_at
    events = [
        {
            "event_id": f"e{version}-{i}",
            "type": "pageview",
            "name": "",
            "path": path,
            "country": "DE",
            "props": {},
            "timestamp": at,
            "received_at": at,
        }
        for i, path in enumerate(paths)
    ]
    body = {"type": "processed", "site_id": SITE, "data_version": version, "events": events}
    return json.dumps({**body, **extra}).encode()


@pytest.fixture
def stats() -> FakeStats:
    return FakeStats()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def fanout() -> AsyncIterator[MemoryFanout]:
    fanout = MemoryFanout()
    yield fanout
    await fanout.close()


@pytest.fixture
async def hub(stats: FakeStats, store: FakeStore, fanout: MemoryFanout) -> AsyncIterator[LiveHub]:
    config = LiveConfig(min_update_interval_s=0.3, feed_linger_s=0.2)
    hub = LiveHub(stats, store, fanout, quality=quality_of(store), config=config)
    yield hub
    await hub.close()


async def frame_of(client: LiveClient, timeout: float = 1.0) -> dict[str, Any]:
    frame = await asyncio.wait_for(client.next_frame(), timeout)
    assert frame is not None
    decoded: dict[str, Any] = json.loads(frame.text)
    return decoded


async def drain(client: LiveClient) -> list[dict[str, Any]]:
    return [json.loads(frame.text) for frame in client.queued()]


async def subscribed(fanout: MemoryFanout, channel: str) -> None:
    for _ in range(100):
        if fanout._subscribers.get(channel):
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"nobody subscribed to {channel}")


async def test_snapshot_on_connect_holds_the_whole_dashboard(
    hub: LiveHub, stats: FakeStats
) -> None:
    stats.pageviews = 7
    client = await hub.connect({"site_id": SITE, "period": "7d", "filters": "country==DE"})
    snapshot = await frame_of(client)
    assert snapshot["type"] == "snapshot"
    assert snapshot["view"]["period"] == "7d"
    assert snapshot["view"]["filters"] == "country==DE"
    assert snapshot["aggregate"]["results"]["pageviews"]["value"] == 7
    assert {"page", "entry_page", "exit_page", "source", "country", "event_name"} <= set(
        snapshot["breakdowns"]
    )
    assert snapshot["realtime"] == {"visitors": 1}
    assert snapshot["quality"]["dropped"] == {"bot:ua_pattern": 2}
    assert snapshot["data_version"] == 1
    aggregate_query = stats.queries[-1]
    assert aggregate_query.compare is not None  # compared with the previous period
    assert [f.property for f in aggregate_query.filters] == ["country"]


async def test_invalid_view_is_refused_with_the_field(hub: LiveHub) -> None:
    with pytest.raises(QueryError) as problem:
        await hub.connect({"site_id": SITE, "period": "fortnight"})
    assert problem.value.field == "period"
    with pytest.raises(QueryError) as problem:
        await hub.connect({"period": "day"})
    assert problem.value.field == "site_id"


def test_equal_views_have_one_canonical_key() -> None:
    first = parse_view({"site_id": SITE, "filters": "page==/a;country!=DE", "from": "x"}, 0)
    second = parse_view({"site_id": SITE, "filters": " country!=DE ; page==/a "}, 0)
    assert first == second  # same filters in another order, from/to ignored outside custom


async def test_processed_message_sends_matching_events(hub: LiveHub, fanout: MemoryFanout) -> None:
    everything = await hub.connect({"site_id": SITE})
    pricing = await hub.connect({"site_id": SITE, "filters": "page==/pricing"})
    await frame_of(everything)
    await frame_of(pricing)
    await subscribed(fanout, f"site:{SITE}")
    await fanout.publish(f"site:{SITE}", processed(2, ["/", "/pricing", "/blog"]))
    events = await frame_of(everything)
    assert events["type"] == "event"
    assert [e["path"] for e in events["events"]] == ["/", "/pricing", "/blog"]
    only = await frame_of(pricing)
    assert [e["path"] for e in only["events"]] == ["/pricing"]


async def test_updates_are_throttled_shared_and_stop_when_idle(
    hub: LiveHub, fanout: MemoryFanout, stats: FakeStats, store: FakeStore
) -> None:
    first = await hub.connect({"site_id": SITE})
    second = await hub.connect({"site_id": SITE})  # same view: shares every query
    await subscribed(fanout, f"site:{SITE}")
    times: list[float] = []

    async def collect(client: LiveClient, into: list[float] | None) -> None:
        while (frame := await client.next_frame()) is not None:
            if frame.kind == "update" and into is not None:
                into.append(time.monotonic())

    readers = [
        asyncio.create_task(collect(first, times)),
        asyncio.create_task(collect(second, None)),
    ]
    aggregates_before = stats.calls["aggregate"]
    began = time.monotonic()
    for version in range(2, 22):  # 20 data changes over ~1 s
        store.version = version
        await fanout.publish(f"site:{SITE}", processed(version, ["/"]))
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.4)
    busy = time.monotonic() - began
    assert 2 <= len(times) <= busy / 0.3 + 1
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.25 for gap in gaps), gaps  # 0.3 s by design; slack for timing
    # one aggregate query per tick for both clients, not one per client per message
    assert stats.calls["aggregate"] - aggregates_before == len(times)

    idle_before = len(times), stats.calls["aggregate"]
    await asyncio.sleep(0.8)
    assert (len(times), stats.calls["aggregate"]) == idle_before  # nothing while idle
    for reader in readers:
        reader.cancel()


def test_a_slow_view_is_updated_less_often_in_proportion_to_its_cost() -> None:
    assert update_interval(1.0, 0.012, 0.1) == 1.0  # rollup-fast: every second
    assert update_interval(1.0, 3.0, 0.1) == pytest.approx(27.0)  # busy 3 s of every 30
    assert update_interval(1.0, 3.0, 0.5) == pytest.approx(3.0)
    assert update_interval(1.0, 30.0, 1.0) == 1.0  # share 1: no limit


class SlowStats(FakeStats):
    """Every query takes ``seconds`` (they run concurrently: a view costs about that)."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.busy = 0.0
        self._running = 0
        self._since = 0.0

    async def _slow(self) -> None:
        if self._running == 0:
            self._since = time.monotonic()
        self._running += 1
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self._running -= 1
            if self._running == 0:
                self.busy += time.monotonic() - self._since

    async def aggregate(self, query: StatsQuery) -> dict[str, Any]:
        await self._slow()
        return await super().aggregate(query)

    async def breakdown(self, query: StatsQuery) -> dict[str, Any]:
        await self._slow()
        return await super().breakdown(query)


async def test_a_slow_view_keeps_the_store_busy_at_most_its_share(
    store: FakeStore, fanout: MemoryFanout
) -> None:
    stats = SlowStats(0.15)
    config = LiveConfig(min_update_interval_s=0.1, max_busy_share=0.25, feed_linger_s=0.2)
    hub = LiveHub(stats, store, fanout, quality=quality_of(store), config=config)
    try:
        client = await hub.connect({"site_id": SITE})
        await subscribed(fanout, f"site:{SITE}")
        snapshot = await frame_of(client)
        assert snapshot["type"] == "snapshot"
        # a snapshot costing ~0.15 s: updates at most every ~0.45 s (busy a quarter)
        assert snapshot["update_interval_s"] >= 0.4
        updates: list[tuple[float, float]] = []

        async def collect() -> None:
            while (frame := await client.next_frame()) is not None:
                if frame.kind == "update":
                    updates.append((time.monotonic(), json.loads(frame.text)["update_interval_s"]))

        reader = asyncio.create_task(collect())
        busy_before, began = stats.busy, time.monotonic()
        for version in range(2, 52):  # data changes every 50 ms for 2.5 s
            store.version = version
            await fanout.publish(f"site:{SITE}", processed(version, ["/"]))
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - began
        reader.cancel()
        # with the 0.1 s floor alone it would update ~10 times and be busy ~60 % of the time
        assert 2 <= len(updates) <= elapsed / 0.6 + 1, updates
        gaps = [b - a for (a, _), (b, _) in itertools.pairwise(updates)]
        assert all(gap >= 0.5 for gap in gaps), gaps  # cost 0.15 + wait 0.45
        assert all(interval >= 0.4 for _, interval in updates)
        assert (stats.busy - busy_before) / elapsed <= 0.25 + 0.1
    finally:
        await hub.close()


async def test_events_are_sampled_past_the_rate_limit(hub: LiveHub, fanout: MemoryFanout) -> None:
    client = await hub.connect({"site_id": SITE})
    await frame_of(client)
    await subscribed(fanout, f"site:{SITE}")
    paths = [f"/p{i}" for i in range(100)]
    await fanout.publish(f"site:{SITE}", processed(2, paths))
    frame = await frame_of(client)
    assert len(frame["events"]) == 20  # the per-client burst
    assert frame["skipped"] == 80  # the rest of this message, reported with it
    assert frame["events"][-1]["path"] == "/p99"  # the newest is always kept
    assert client.skipped == 80
    await fanout.publish(f"site:{SITE}", processed(3, ["/late"]))  # no token left yet
    await asyncio.sleep(0.15)  # ~3 tokens regained at 20/s
    await fanout.publish(f"site:{SITE}", processed(4, ["/later"]))
    await asyncio.sleep(0.05)  # the hub's channel reader runs
    later = [f for f in await drain(client) if f["type"] == "event"]
    assert later[-1]["events"][-1]["path"] == "/later"
    shown = sum(len(f["events"]) for f in later)
    assert shown + sum(f["skipped"] for f in later) == 2  # nothing lost without a count


def test_sample_spreads_and_keeps_order() -> None:
    assert sample(list(range(10)), 3) == [3, 6, 9]
    assert sample([1, 2], 5) == [1, 2]
    assert sample([1, 2], 0) == []


async def test_full_queue_drops_oldest_and_coalesces_updates(hub: LiveHub) -> None:
    client = await hub.connect({"site_id": SITE})
    client.maxsize = 5
    view = client.view
    for i in range(12):
        client.push(Frame("event", json.dumps({"type": "event", "n": i}), view))
    kept = [json.loads(f.text)["n"] for f in client.queued()]
    assert kept == [7, 8, 9, 10, 11]
    assert client.dropped == 8  # the snapshot and the 7 oldest events
    client.push(Frame("update", '{"type":"update","n":1}', view))
    client.push(Frame("update", '{"type":"update","n":2}', view))
    updates = [f.text for f in client.queued() if f.kind == "update"]
    assert updates == ['{"type":"update","n":2}']  # a newer state replaces the queued one


async def test_a_stalled_socket_blocks_neither_publisher_nor_others(
    hub: LiveHub, fanout: MemoryFanout
) -> None:
    stalled = await hub.connect({"site_id": SITE})
    healthy = await hub.connect({"site_id": SITE})
    await frame_of(healthy)
    await subscribed(fanout, f"site:{SITE}")
    never = asyncio.Event()

    async def stuck_send(text: str) -> None:
        await never.wait()

    sender = asyncio.create_task(stalled.run_sender(stuck_send))
    began = time.monotonic()
    for version in range(2, 202):
        await fanout.publish(f"site:{SITE}", processed(version, ["/"]))
        await asyncio.sleep(0)
    assert time.monotonic() - began < 1.0
    frame = await frame_of(healthy)
    assert frame["type"] == "event"
    assert len(stalled.queued()) <= stalled.maxsize
    sender.cancel()


async def test_set_message_answers_with_a_new_snapshot(
    hub: LiveHub, fanout: MemoryFanout, stats: FakeStats
) -> None:
    client = await hub.connect({"site_id": SITE, "period": "day"})
    await frame_of(client)
    await hub.receive(client, json.dumps({"type": "set", "period": "30d", "filters": "page==/a"}))
    snapshot = await frame_of(client)
    assert snapshot["type"] == "snapshot"
    assert snapshot["view"]["period"] == "30d"
    assert snapshot["view"]["filters"] == "page==/a"
    assert snapshot["view"]["site_id"] == SITE  # kept from the old view
    assert len(hub._feeds[SITE].views) == 1  # the old view is gone with its last client

    await hub.receive(client, json.dumps({"type": "set", "period": "decade"}))
    error = await frame_of(client)
    assert error == {"type": "error", "field": "period", "reason": error["reason"]}
    assert "must be one of" in error["reason"]
    await hub.receive(client, "not json")
    assert (await frame_of(client))["field"] == "message"
    await hub.receive(client, "[" * 2000 + "]" * 2000)  # was a RecursionError
    nested = await frame_of(client)
    assert nested["field"] == "message"
    assert "nests deeper than" in nested["reason"]


async def test_frames_of_an_old_view_never_reach_the_client(hub: LiveHub) -> None:
    client = await hub.connect({"site_id": SITE, "period": "day"})
    old_view = client.view
    await hub.receive(client, json.dumps({"type": "set", "period": "7d"}))
    client.push(Frame("update", '{"type":"update","stale":true}', old_view))
    kinds = [json.loads(f.text)["type"] for f in client.queued()]
    assert kinds == ["snapshot"]


async def test_alerts_are_forwarded_and_kept_for_snapshots(
    hub: LiveHub, fanout: MemoryFanout
) -> None:
    client = await hub.connect({"site_id": SITE})
    await frame_of(client)
    await subscribed(fanout, f"alerts:{SITE}")
    alert = {"type": "alert", "site_id": SITE, "rule": "spike", "message": "x", "value": 9}
    await fanout.publish(f"alerts:{SITE}", json.dumps(alert).encode())
    assert await frame_of(client) == alert
    later = await hub.connect({"site_id": SITE, "period": "7d"})
    assert (await frame_of(later))["alerts"] == [alert]


async def test_a_feed_starts_with_the_alerts_already_raised(
    stats: FakeStats, store: FakeStore, fanout: MemoryFanout
) -> None:
    """A dashboard opened during an incident shows it: the feed starts with the site's
    newest alert messages of this process's rules (oldest first, as they arrived), and the
    same message arriving over the fan-out too is not listed twice."""
    firing = {"type": "alert", "site_id": SITE, "rule": "busy", "state": "firing", "at": 1}
    resolved = {"type": "alert", "site_id": SITE, "rule": "busy", "state": "resolved", "at": 2}
    asked: list[tuple[str, int]] = []

    def history(site: str, n: int) -> list[dict[str, Any]]:
        asked.append((site, n))
        return [resolved, firing] if site == SITE else []  # newest first

    hub = LiveHub(stats, store, fanout, quality=quality_of(store), alert_history=history)
    try:
        client = await hub.connect({"site_id": SITE})
        assert (await frame_of(client))["alerts"] == [firing, resolved]
        assert asked == [(SITE, LiveConfig().recent_alerts)]
        await subscribed(fanout, f"alerts:{SITE}")
        await fanout.publish(f"alerts:{SITE}", json.dumps(resolved).encode())
        again = {**resolved, "at": 3}
        await fanout.publish(f"alerts:{SITE}", json.dumps(again).encode())
        assert await frame_of(client) == again  # the repeat of ``resolved`` was skipped
        later = await hub.connect({"site_id": SITE, "period": "7d"})
        assert (await frame_of(later))["alerts"] == [firing, resolved, again]
        other = await hub.connect({"site_id": "other.test"})
        assert (await frame_of(other))["alerts"] == []
    finally:
        await hub.close()


async def test_latency_is_measured_when_the_frame_is_sent(
    hub: LiveHub, fanout: MemoryFanout
) -> None:
    client = await hub.connect({"site_id": SITE})
    await subscribed(fanout, f"site:{SITE}")
    sent: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    sender = asyncio.create_task(client.run_sender(send))
    await fanout.publish(f"site:{SITE}", processed(2, ["/"], received_at=now_ms() - 250))
    for _ in range(100):
        if hub.summary()["latency_seconds"]["count"]:
            break
        await asyncio.sleep(0.01)
    figures = hub.summary()["latency_seconds"]
    assert figures["count"] == 1
    assert 0.25 <= figures["p50"] < 1.0
    histogram = next(iter(hub.metrics.latency.collect()))
    count = next(s.value for s in histogram.samples if s.name.endswith("_count"))
    total = next(s.value for s in histogram.samples if s.name.endswith("_sum"))
    assert histogram.name == "hitstream_live_latency_seconds"
    assert (count, total >= 0.25) == (1, True)
    assert any('"type":"event"' in text for text in sent)
    sender.cancel()


async def test_last_client_leaving_unsubscribes_after_a_linger(
    hub: LiveHub, fanout: MemoryFanout
) -> None:
    client = await hub.connect({"site_id": SITE})
    await subscribed(fanout, f"site:{SITE}")
    await hub.disconnect(client)
    assert hub.summary()["clients"] == 0
    await fanout.publish(f"site:{SITE}", processed(2, ["/while-nobody-watched"]))
    await asyncio.sleep(0.05)
    assert fanout._subscribers, "still followed for feed_linger_s"
    reload = await hub.connect({"site_id": SITE})  # a page reload within the linger
    assert [e["path"] for e in (await frame_of(reload))["events"]] == ["/while-nobody-watched"]
    await hub.disconnect(reload)
    for _ in range(100):
        if not fanout._subscribers:
            break
        await asyncio.sleep(0.01)
    assert not fanout._subscribers
    assert not hub._feeds


# -- the web layer: WebSocket route, figures, dashboard files ---------------------------------


KEYS: dict[str, str] = {}


@pytest.fixture
def web_app(stats: FakeStats, store: FakeStore) -> Iterator[TestClient]:
    """The live routes; the registry knows SITE and "other.io", and KEYS holds an admin key
    (``admin``), a read key of SITE (``read``) and one of the other site (``other``)."""
    from hitstream.services.access import Gatekeeper
    from hitstream.services.accounts import Accounts

    registry = MemoryStore()

    async def setup() -> None:
        await register(registry, SITE, "other.io")
        KEYS["admin"] = await admin_key(registry)
        accounts = Accounts(registry)
        KEYS["read"] = (await accounts.create_key(SITE, "read"))[0]
        KEYS["other"] = (await accounts.create_key("other.io", "read"))[0]

    app = FastAPI()
    hub = LiveHub(stats, store, MemoryFanout(), quality=quality_of(store))
    app.state.services = AppServices(Metrics(), live=hub, gate=Gatekeeper(registry))
    app.include_router(live.router)
    dashboard.mount(app)

    async def denied(request: object, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AccessDenied)
        return JSONResponse({"error": {"field": exc.field}}, status_code=exc.status)

    app.add_exception_handler(AccessDenied, denied)
    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(setup)
        yield client
        client.portal.call(hub.close)


def test_websocket_is_refused_without_or_with_a_wrong_credential(web_app: TestClient) -> None:
    cases = [({}, 4401), (bearer("hs_key_nope"), 4401), (bearer(KEYS["other"]), 4403)]
    for headers, code in cases:
        with web_app.websocket_connect(f"/api/v1/live?site_id={SITE}", headers=headers) as ws:
            assert ws.receive_json()["type"] == "error"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == code, headers
    with web_app.websocket_connect(
        "/api/v1/live?site_id=nope.io", headers=bearer(KEYS["admin"])
    ) as ws:
        assert ws.receive_json()["field"] == "site_id"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4404


def test_a_key_may_come_as_a_websocket_subprotocol(web_app: TestClient) -> None:
    """Browsers cannot set headers on a WebSocket: ``hitstream, KEY`` as protocols."""
    with web_app.websocket_connect(
        f"/api/v1/live?site_id={SITE}", subprotocols=["hitstream", KEYS["read"]]
    ) as socket:
        assert str(socket.accepted_subprotocol) == "hitstream"
        assert socket.receive_json()["type"] == "snapshot"
        socket.send_json({"type": "set", "site_id": "other.io"})  # not this key's
        refused = socket.receive_json()
        assert (refused["type"], refused["field"]) == ("error", "site_id")


def test_websocket_sends_a_snapshot_and_answers_set(web_app: TestClient) -> None:
    with web_app.websocket_connect(
        f"/api/v1/live?site_id={SITE}&period=7d", headers=bearer(KEYS["read"])
    ) as socket:
        snapshot = socket.receive_json()
        assert snapshot["type"] == "snapshot"
        assert snapshot["view"]["period"] == "7d"
        socket.send_json({"type": "set", "period": "30d"})
        again = socket.receive_json()
        assert (again["type"], again["view"]["period"]) == ("snapshot", "30d")
    assert web_app.get("/api/v1/live/stats", headers=bearer(KEYS["read"])).status_code == 403
    figures = web_app.get("/api/v1/live/stats", headers=bearer(KEYS["admin"])).json()
    assert set(figures["latency_seconds"]) == {"count", "p50", "p99"}


def test_websocket_with_a_bad_view_gets_the_reason_then_closes(web_app: TestClient) -> None:
    with web_app.websocket_connect(
        f"/api/v1/live?site_id={SITE}&period=nope", headers=bearer(KEYS["admin"])
    ) as socket:
        assert socket.receive_json()["field"] == "period"
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
    assert closed.value.code == 1008


def test_dashboard_page_is_versioned_and_locked_down(web_app: TestClient) -> None:
    page = dashboard.page_response()
    text = bytes(page.body).decode()
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "__V__" not in text
    assert "/static/app.js?v=" in text
    shared = bytes(dashboard.page_response(share='"><b>x').body).decode()
    assert '<body data-share="&quot;&gt;&lt;b&gt;x">' in shared  # escaped, never markup
    assert web_app.get("/static/app.js").status_code == 200
    assert web_app.get("/static/vendor/uplot.min.js").status_code == 200
    tracker = web_app.get("/js/hitstream.js")
    assert tracker.headers["content-type"].startswith("application/javascript")
    assert "sendBeacon" in tracker.text


# -- the real chain: processor → memory store + fan-out → hub over the real stats service ----


async def real_chain(
    store: MemoryStore,
) -> tuple[MemoryLog, MemoryFanout, StatsService, Processor, LiveHub]:
    """A memory log and fan-out, the processor, the real stats service and a hub over
    ``store``."""
    from tests.unit.test_processor import make

    log, fanout, metrics = MemoryLog(), MemoryFanout(), Metrics()
    stats = StatsService(store, metrics, cache=MemoryCache())
    processor = make(log, store, fanout, clock=now_ms)
    await processor.start()
    hub = LiveHub(
        stats,
        store,
        fanout,
        quality=Quality(Rejections(MemoryTally()), store),
        config=LiveConfig(min_update_interval_s=0.2),
        registry=metrics.registry,
        query_ms=stats.now_ms,
    )
    return log, fanout, stats, processor, hub


async def test_updates_carry_exactly_the_stats_api_numbers() -> None:
    from tests.unit.test_processor import accepted, put

    store = MemoryStore()
    log, fanout, stats, processor, hub = await real_chain(store)
    client = await hub.connect({"site_id": "a.io", "period": "day"})
    snapshot = await frame_of(client)
    assert snapshot["aggregate"]["results"]["pageviews"]["value"] == 0
    filtered = await hub.connect({"site_id": "a.io", "period": "day", "filters": "page==/p3"})
    await frame_of(filtered)
    await subscribed(fanout, "site:a.io")

    now = now_ms()
    await put(log, accepted(1, ts=now), accepted(2, ts=now), accepted(3, visitor="v2", ts=now))
    assert await processor.process_once() == 3
    frames = [await frame_of(client), await frame_of(client)]
    by_type = {frame["type"]: frame for frame in frames}
    assert [e["path"] for e in by_type["event"]["events"]] == ["/p1", "/p2", "/p3"]
    update = by_type["update"]
    assert update["data_version"] == await store.data_version("a.io")

    key = parse_view({"site_id": "a.io", "period": "day"}, now)
    api = await stats.aggregate(
        key.query(stats.now_ms(), metrics="visitors,visits,pageviews", compare="previous_period")
    )
    for metric in ("visitors", "visits", "pageviews"):
        assert update["aggregate"]["results"][metric] == api["results"][metric]
    assert update["aggregate"]["results"]["pageviews"]["value"] == 3
    pages = {row["value"]: row["pageviews"] for row in update["breakdowns"]["page"]}
    assert pages == {"/p1": 1, "/p2": 1, "/p3": 1}
    assert update["realtime"] == await stats.realtime("a.io")
    # the realtime figures follow the view's filters, as the API's do
    frames = [await frame_of(filtered), await frame_of(filtered)]
    narrow = {frame["type"]: frame for frame in frames}["update"]
    assert narrow["realtime"] == await stats.realtime("a.io", parse_filters("page==/p3"))
    assert (narrow["realtime"]["visitors"], update["realtime"]["visitors"]) == (1, 2)
    await hub.close()
    await processor.close()


async def test_a_goal_filter_lists_only_completions_and_adds_conversions() -> None:
    """Under ``goal==P3`` the live list holds the events that complete the goal (it listed
    every event: the hub could not check goals), and the cards' aggregate carries the
    conversions, as the stats API answers them."""
    from tests.unit.test_processor import accepted, put

    store = MemoryStore()
    await store.add_goal("a.io", Goal("P3", page="/p3"))
    log, fanout, stats, processor, hub = await real_chain(store)
    client = await hub.connect({"site_id": "a.io", "period": "day", "filters": "goal==P3"})
    snapshot = await frame_of(client)
    assert snapshot["aggregate"]["results"]["conversions"]["value"] == 0
    await subscribed(fanout, "site:a.io")
    now = now_ms()
    await put(log, accepted(1, ts=now), accepted(2, ts=now), accepted(3, visitor="v2", ts=now))
    assert await processor.process_once() == 3
    frames = {frame["type"]: frame for frame in [await frame_of(client), await frame_of(client)]}
    assert [e["path"] for e in frames["event"]["events"]] == ["/p3"]
    key = parse_view({"site_id": "a.io", "period": "day", "filters": "goal==P3"}, now)
    api = await stats.aggregate(
        key.query(stats.now_ms(), metrics="visitors,conversions,conversion_rate")
    )
    results = frames["update"]["aggregate"]["results"]
    assert results["conversions"]["value"] == api["results"]["conversions"]["value"] == 1
    assert results["conversion_rate"]["value"] == api["results"]["conversion_rate"]["value"]
    assert results["conversion_rate"]["value"] == 50
    await hub.close()
    await processor.close()


def test_the_busy_share_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hitstream.bootstrap import build
    from hitstream.settings import Settings

    monkeypatch.setenv("HITSTREAM_LIVE_MAX_BUSY_SHARE", "0.5")
    runtime = build(Settings(data_dir=tmp_path, log_url="memory://", store_url="memory://"))
    assert runtime.live is not None
    assert runtime.live.config.max_busy_share == 0.5
    monkeypatch.setenv("HITSTREAM_LIVE_MAX_BUSY_SHARE", "0")  # no share at all: refused
    with pytest.raises(ValueError, match="live_max_busy_share"):
        Settings(data_dir=tmp_path)


def stored_events(count: int, start: int) -> list[ProcessedEvent]:
    """``count`` pageviews of ``SITE`` a second apart from ``start``, paths /p0 /p1 /p2 by
    turn, and one of another site at every instant."""
    return [
        event(f"s{n:03d}", start + n * 1000, f"v{n % 5}", f"x{n % 7}", f"/p{n % 3}", site=SITE)
        for n in range(count)
    ] + [event(f"o{n:03d}", start + n * 1000, "v", "x", site="other.example") for n in range(5)]


async def test_a_new_feed_lists_the_newest_stored_events_before_any_new_one(
    hub: LiveHub, store: FakeStore
) -> None:
    """Opened on a site whose events came before anyone watched, the live list is not
    empty: the feed starts with the newest stored events of the view, oldest first."""
    start = now_ms() - 3_600_000
    store.stored = stored_events(70, start)
    ours = [e for e in store.stored if e.site_id == SITE]
    want = [e.event_id for e in ours][-50:]  # LiveConfig.recent_events
    # 7d, not day: an hour ago is yesterday in the first hour of a day
    client = await hub.connect({"site_id": SITE, "period": "7d"})
    snapshot = await frame_of(client)
    assert [e["event_id"] for e in snapshot["events"]] == want
    first = snapshot["events"][0]
    assert first["path"] == ours[20].path and first["timestamp"] == ours[20].timestamp
    assert "visitor_id" not in first and "session_id" not in first
    # a filtered view lists its own newest matches, also those older than the shared list
    other = await hub.connect({"site_id": SITE, "period": "7d", "filters": "page==/p1"})
    filtered = await frame_of(other)
    matching = [e.event_id for e in ours if e.path == "/p1"]
    assert [e["event_id"] for e in filtered["events"]] == matching[-50:]
    assert len(matching) > len([e for e in ours[20:] if e.path == "/p1"])  # it searched


async def test_events_received_while_the_feed_fills_are_kept_once_and_last(
    hub: LiveHub, store: FakeStore, fanout: MemoryFanout
) -> None:
    start = now_ms() - 60_000
    store.stored = stored_events(3, start)
    store.gate = asyncio.Event()
    connecting = asyncio.create_task(hub.connect({"site_id": SITE, "period": "7d"}))
    await subscribed(fanout, f"site:{SITE}")
    # the processor publishes the last stored event again (a replay) and a new one
    message = json.loads(processed(2, ["/new"]))
    again = {**message["events"][0], "event_id": "s002", "path": "/p2"}
    message["events"] = [again, message["events"][0]]
    await fanout.publish(f"site:{SITE}", json.dumps(message).encode())
    for _ in range(100):
        feed = hub._feeds.get(SITE)
        if feed is not None and len(feed.recent) == 2:
            break
        await asyncio.sleep(0.005)
    store.gate.set()
    client = await asyncio.wait_for(connecting, 2.0)
    snapshot = await frame_of(client)
    assert [e["event_id"] for e in snapshot["events"]] == ["s000", "s001", "s002", "e2-0"]


async def test_a_failing_store_leaves_the_live_list_to_new_events(
    hub: LiveHub, store: FakeStore, fanout: MemoryFanout
) -> None:
    store.stored, store.broken = stored_events(3, now_ms() - 60_000), True
    client = await hub.connect({"site_id": SITE, "period": "day"})
    snapshot = await frame_of(client)
    assert snapshot["events"] == [] and snapshot["type"] == "snapshot"
    await fanout.publish(f"site:{SITE}", processed(2, ["/later"]))
    frames = [await frame_of(client) for _ in range(2)]
    pushed = [f for f in frames if f["type"] == "event"]
    assert [e["path"] for e in pushed[0]["events"]] == ["/later"]


async def test_the_props_tab_offers_keys_stored_before_anyone_watched(
    hub: LiveHub, store: FakeStore, fanout: MemoryFanout
) -> None:
    """A dashboard opened after a site sent custom properties breaks them down (the first
    ``prop_breakdowns`` stored keys); keys of live events take the first places."""
    start = now_ms() - 3_600_000
    keys = ["plan", "seats", "coupon", "size"]
    store.stored = [
        event(f"k{n}", start + n * 1000, "v1", "x1", site=SITE, props={key: "a"})
        for n, key in enumerate(keys)
    ] + [event("o1", start, "v2", "x2", site="other.example", props={"theirs": 1})]
    client = await hub.connect({"site_id": SITE, "period": "day"})
    snapshot = await frame_of(client)
    offered = [k for k in snapshot["breakdowns"] if k.startswith("prop:")]
    assert offered == ["prop:plan", "prop:seats", "prop:coupon"]  # LiveConfig.prop_breakdowns
    assert snapshot["prop_keys"] == keys  # the props tab names the one it does not show
    message = json.loads(processed(2, ["/new"]))
    message["events"][0]["props"] = {"color": "red"}
    await fanout.publish(f"site:{SITE}", json.dumps(message).encode())
    for _ in range(50):
        frame = await frame_of(client)
        if frame["type"] == "update":
            break
    offered = [k for k in frame["breakdowns"] if k.startswith("prop:")]
    assert offered == ["prop:color", "prop:plan", "prop:seats"]
    assert frame["prop_keys"] == ["color", *keys]


async def test_a_view_the_store_refuses_is_named_as_the_api_names_it(
    stats: FakeStats, hub: LiveHub
) -> None:
    """A goal filter naming no goal of the site: the dashboard said "snapshot: filters:
    unknown goal ..." (an internal name before the API's own)."""

    async def refused(query: StatsQuery) -> dict[str, Any]:
        raise QueryError("filters", "unknown goal 'Nope'; add it to the site's goals first")

    stats.aggregate = refused  # type: ignore[method-assign]
    client = await hub.connect({"site_id": SITE, "period": "day", "filters": "goal==Nope"})
    error = await frame_of(client)
    assert (error["type"], error["field"]) == ("error", "filters")
    assert error["reason"].startswith("unknown goal 'Nope'")
