"""The stats service: cache-aside under the data version, never stale, hit by a dashboard."""

from __future__ import annotations

from hitstream.cache.memory import MemoryCache
from hitstream.domain.stats import Range, StatsQuery, build_query, parse_filters
from hitstream.metrics import Metrics
from hitstream.services.stats import StatsService
from hitstream.stores.base import WriteBatch
from hitstream.stores.memory import MemoryStore
from tests.contract.test_store_contract import event

T0 = 1_790_000_000_000


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


async def test_a_dashboard_refresh_hits_the_cache_and_new_data_misses_it() -> None:
    store = MemoryStore()
    clock = Clock(T0 + 5_000)
    service = StatsService(store, Metrics(), cache=MemoryCache(), clock=clock)
    site = event("e1", T0, "v1", "s1").site_id
    await store.write(WriteBatch("s", {0: 1}, [event("e1", T0, "v1", "s1")]))

    def query() -> StatsQuery:
        return build_query(
            site_id=site, now_ms=service.now_ms("day"), period="day", metrics="events"
        )

    first = await service.aggregate(query())
    clock.now += 20_000  # a refresh 20 s later, same minute, no new data
    again = await service.aggregate(query())
    assert again == first
    assert (
        service.metrics.registry.get_sample_value(
            "hitstream_query_seconds_count", {"kind": "aggregate", "cache": "hit"}
        )
        == 1
    )
    await store.write(WriteBatch("s", {0: 2}, [event("e2", T0 + 20_000, "v2", "s2")]))
    fresh = await service.aggregate(query())
    assert fresh["results"]["events"]["value"] == 2  # the new version is a new key: never stale


class KeptFor(MemoryCache):
    """A memory cache that notes the time to live each kind of answer was given."""

    def __init__(self) -> None:
        super().__init__()
        self.ttl_s: dict[str, int] = {}

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self.ttl_s[key.split(":", 1)[0]] = ttl_s
        await super().set(key, value, ttl_s)


async def test_an_answer_is_kept_only_while_its_range_can_be_asked_again() -> None:
    """Decision 0041: "today" ends at the end of the current half hour, so its answer is
    asked again only until then (a later request asks a later range: a new key); a closed
    range's answer is kept a day."""
    store = MemoryStore()
    clock = Clock(T0 + 5_000)
    cache = KeptFor()
    service = StatsService(store, Metrics(), cache=cache, clock=clock)
    site = event("e1", T0, "v1", "s1").site_id
    await store.write(WriteBatch("s", {0: 1}, [event("e1", T0, "v1", "s1")]))
    half_hour = 30 * 60_000
    end = (clock.now // half_hour + 1) * half_hour
    today = build_query(site_id=site, now_ms=service.now_ms("day"), period="day", metrics="events")
    assert today.range.end == end
    await service.aggregate(today)
    assert cache.ttl_s["aggregate"] == (end - clock.now + 999) // 1000 + 60
    day = 24 * 3600 * 1000
    await service.timeseries(StatsQuery(site, Range(T0 - 2 * day, T0 - day), ("events",)))
    assert cache.ttl_s["timeseries"] == 24 * 3600
    await service.realtime(site)
    assert cache.ttl_s["realtime"] == 10


def test_now_is_rounded_up_never_down() -> None:
    clock = Clock(T0 + 12_345)
    service = StatsService(MemoryStore(), Metrics(), cache=MemoryCache(), clock=clock)
    assert service.now_ms("realtime") == T0 + 13_000
    assert service.now_ms("day") % 60_000 == 0
    assert 0 < service.now_ms("day") - clock.now <= 60_000
    assert service.now_ms("day") >= clock.now


async def test_realtime_gives_active_users_and_events_per_minute_over_five_minutes() -> None:
    """Generated traffic around "now": the test counts, from the events it made, the
    visitors and non-engagement events of the last 5 minutes (and none older)."""
    import random

    rng = random.Random(12)
    store = MemoryStore()
    now = T0 + 10 * 60_000
    clock = Clock(now)
    service = StatsService(store, Metrics(), cache=MemoryCache(), clock=clock)
    made = []
    for i in range(120):
        ts = now - rng.randrange(0, 9 * 60_000)
        kind = rng.choice(["pageview", "pageview", "click", "custom", "engagement"])
        made.append(event(f"r{i}", ts, f"v{rng.randrange(15)}", "", type=kind, engaged=5))
    await store.write(WriteBatch("s", {0: 1}, made))
    window_start = service.now_ms("realtime") - 5 * 60_000
    recent = [e for e in made if e.timestamp >= window_start]
    counted = [e for e in recent if e.type != "engagement"]
    got = await service.realtime(made[0].site_id)
    assert got["active_users"] == got["visitors"] == len({e.visitor_id for e in counted})
    assert got["events_per_minute"] == round(len(counted) / 5, 2)
    assert 0 < len(counted) < len([e for e in made if e.type != "engagement"])
    # of the events that pass the filters, as every other answer
    views = [e for e in counted if e.type == "pageview"]
    filtered = await service.realtime(made[0].site_id, parse_filters("event_type==pageview"))
    assert filtered["visitors"] == len({e.visitor_id for e in views})
    assert filtered["events_per_minute"] == round(len(views) / 5, 2)
    assert 0 < len(views) < len(counted)
