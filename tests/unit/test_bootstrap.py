"""Bootstrap: adapters picked by URL, the services each role gets, and the app they make."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import pytest

from hitstream.bootstrap import (
    build,
    make_cache,
    make_fanout,
    make_log,
    make_notifiers,
    make_salts,
    make_store,
    make_tally,
)
from hitstream.cache.memory import MemoryCache
from hitstream.domain.stats import Range, StatsQuery
from hitstream.errors import ConfigError, QueryError
from hitstream.fanout.memory import MemoryFanout
from hitstream.log.memory import MemoryLog
from hitstream.log.sqlite import SQLiteLog
from hitstream.salts.file import FileSaltKeeper
from hitstream.salts.memory import MemorySaltKeeper
from hitstream.settings import Settings
from hitstream.stores.duckdb import DuckDBStore
from hitstream.stores.memory import MemoryStore
from hitstream.tally.memory import MemoryTally
from hitstream.web.app import create_app
from tests.access import admin_key, bearer, register


def settings(tmp_path: Path, **overrides: object) -> Settings:
    defaults: dict[str, object] = {
        "data_dir": tmp_path,
        "log_url": "memory://",
        "store_url": "memory://",
    }
    return Settings(**{**defaults, **overrides})  # type: ignore[arg-type]


# -- adapters by URL ------------------------------------------------------------------------


def test_embedded_defaults_live_in_the_data_folder(tmp_path: Path) -> None:
    plain = Settings(data_dir=tmp_path)
    log = make_log(plain.resolved_log_url(), plain)
    store = make_store(plain.resolved_store_url(), plain)
    assert isinstance(log, SQLiteLog) and log.path == (tmp_path / "log.sqlite3").resolve()
    assert isinstance(store, DuckDBStore)
    assert isinstance(make_salts("", tmp_path), FileSaltKeeper)


def test_memory_urls_give_the_test_doubles(tmp_path: Path) -> None:
    plain = settings(tmp_path)
    assert isinstance(make_log("memory://", plain), MemoryLog)
    assert isinstance(make_store("memory://", plain), MemoryStore)
    assert isinstance(make_fanout("memory://"), MemoryFanout)
    assert isinstance(make_cache("memory://", 10), MemoryCache)
    assert isinstance(make_tally("memory://"), MemoryTally)
    assert isinstance(make_salts("memory://", tmp_path), MemorySaltKeeper)


def test_redis_urls_give_the_shared_adapters_without_connecting(tmp_path: Path) -> None:
    nowhere = "redis://127.0.0.1:1/0"  # built, not started: nothing connects yet
    assert make_fanout(nowhere).name == "redis"
    assert make_cache(nowhere, 10).name == "redis"
    assert make_tally(nowhere).name == "redis"  # refusals travel where live updates do
    assert make_salts(nowhere, tmp_path).name == "redis"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda s: make_log("ftp://x", s), "unknown event log URL scheme 'ftp'"),
        (lambda s: make_store("mysql://x", s), "unknown store URL scheme 'mysql'"),
        (lambda s: make_fanout("nats://x"), "unknown fan-out URL scheme 'nats'"),
        (lambda s: make_cache("memcached://x", 1), "unknown cache URL scheme 'memcached'"),
        (lambda s: make_salts("vault://x", s.data_dir), "unknown salts URL scheme 'vault'"),
        (lambda s: make_log("sqlite://", s), "names no file"),
        (lambda s: make_notifiers("smtp://mail"), "unknown alert notifier 'smtp'"),
    ],
)
def test_a_url_that_cannot_work_is_a_config_error(
    tmp_path: Path, make: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make(settings(tmp_path))  # type: ignore[operator]


def test_a_missing_extra_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "psycopg" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install 'hitstream\[postgres\]'"):
        make_store("postgresql://db/x", settings(tmp_path))


# -- roles ----------------------------------------------------------------------------------


def test_each_role_gets_its_services_and_only_those(tmp_path: Path) -> None:
    collector = build(settings(tmp_path), frozenset({"collector"}))
    assert collector.collector is not None and collector.salts is not None
    assert (collector.processor, collector.stats, collector.live) == (None, None, None)
    assert set(collector.adapters()) == {"log", "store", "disk"}  # registry; local salts

    processor = build(settings(tmp_path), frozenset({"processor"}))
    assert processor.processor is not None and processor.collector is None
    assert processor.processor.runner.pipeline.names[0] == "drop_duplicate"
    assert set(processor.adapters()) == {"log", "store", "fanout"}

    web = build(settings(tmp_path), frozenset({"web"}))
    assert web.stats is not None and web.live is not None and web.quality is not None
    assert (web.collector, web.processor) == (None, None)
    assert set(web.adapters()) == {"store", "fanout", "cache"}


def test_an_unknown_role_or_a_bad_alert_rule_stops_the_build(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown roles"):
        build(settings(tmp_path), frozenset({"janitor"}))
    bad = settings(tmp_path, alert_rules='[{"name": "x"}]')
    with pytest.raises(ConfigError, match=r"HITSTREAM_ALERT_RULES: rules\[0\]"):
        build(bad, frozenset({"processor"}))


def routes(runtime_roles: frozenset[str], tmp_path: Path) -> set[str]:
    """The HTTP paths the process's app documents (and so serves)."""
    runtime = build(settings(tmp_path), runtime_roles)
    return set(create_app(runtime.services).openapi()["paths"])


def test_a_process_mounts_the_routes_of_its_roles(tmp_path: Path) -> None:
    collector = routes(frozenset({"collector"}), tmp_path)
    assert "/api/v1/events" in collector and "/api/v1/stats/aggregate" not in collector
    web = routes(frozenset({"web"}), tmp_path)
    assert {"/api/v1/stats/aggregate", "/api/v1/live/stats", "/api/v1/alerts"} <= web
    assert "/api/v1/events" not in web
    assert {"/healthz", "/readyz", "/metrics"} <= routes(frozenset({"processor"}), tmp_path)


async def test_a_query_a_store_refuses_is_a_400_not_a_500(tmp_path: Path) -> None:
    """The one QueryError handler answers whoever raised it: here the store, asked for a
    breakdown by an empty property (``property=`` passes the web layer's own checks)."""
    runtime = build(settings(tmp_path), frozenset({"web"}))
    assert isinstance(runtime.store, MemoryStore)
    with pytest.raises(QueryError):  # what the store does with it, outside the app
        await runtime.store.breakdown(StatsQuery("a.io", Range(0, 1), property=""))
    await register(runtime.store, "a.io")
    headers = bearer(await admin_key(runtime.store))
    transport = httpx.ASGITransport(app=create_app(runtime.services))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers=headers
    ) as client:
        answer = await client.get(
            "/api/v1/stats/breakdown", params={"site_id": "a.io", "property": ""}
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "property"


class _Node:
    """An object in a reference cycle, which only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


async def test_a_running_process_collects_reference_cycles_on_a_clock() -> None:
    """Decision 0042: with automatic collection off (as good as off for a serving process
    whose allocation count hardly grows under the raised threshold), a cycle is freed within
    a tick of ``collect_cycles``, which stops when asked."""
    import asyncio
    import gc
    import weakref

    from hitstream.bootstrap.runtime import collect_cycles

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        node = _Node()
        alive = weakref.ref(node)
        del node
        await asyncio.sleep(0.05)
        assert alive() is not None  # nothing frees a cycle by reference count
        stop = asyncio.Event()
        clock = asyncio.create_task(collect_cycles(stop, every_s=0.02))
        for _ in range(500):
            if alive() is None:
                break
            await asyncio.sleep(0.01)
        assert alive() is None
        stop.set()
        await asyncio.wait_for(clock, 1.0)
    finally:
        if was_enabled:
            gc.enable()
