"""The one place that turns ``Settings`` into running objects: adapters by URL, services, roles.

Drivers are imported here, lazily, only for the scheme a URL names, so an embedded install
never imports Kafka, PostgreSQL or Redis clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from hitstream.cache.base import Cache
from hitstream.disk import DataFolders
from hitstream.domain.events import Limits
from hitstream.errors import AdapterUnavailable, ConfigError
from hitstream.fanout.base import Fanout
from hitstream.log.base import EventLog
from hitstream.metrics import Metrics
from hitstream.settings import Settings
from hitstream.stores.base import Store
from hitstream.tally.base import Tally

if TYPE_CHECKING:
    from hitstream.services.alerting import Alerting
    from hitstream.services.processor import Processor
    from hitstream.services.salts import SaltKeeper

log = logging.getLogger(__name__)
ROLES = frozenset({"collector", "processor", "web"})


class Checkable(Protocol):
    name: str

    async def check(self) -> None: ...


class Startable(Checkable, Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


def _path_of(url: str) -> Path:
    parts = urlsplit(url)
    raw = parts.netloc + parts.path if parts.netloc else parts.path
    if not raw:
        raise ConfigError(f"{url!r} names no file")
    return Path(raw)


def make_log(url: str, settings: Settings) -> EventLog:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from hitstream.log.sqlite import SQLiteLog

        return SQLiteLog(_path_of(url), retention_s=settings.log_retention_s)
    if scheme == "memory":
        from hitstream.log.memory import MemoryLog

        return MemoryLog()
    if scheme == "kafka":
        _need("confluent_kafka", "kafka")
        from hitstream.log.kafka import KafkaLog

        return KafkaLog(
            url,
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
            ssl_ca_location=settings.kafka_ssl_ca_location,
            client_id=settings.kafka_client_id,
            message_timeout_ms=settings.kafka_message_timeout_ms,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            extra=settings.kafka_extra,
        )
    if scheme in ("redis", "rediss"):
        _need("redis", "redis")
        from hitstream.log.redis_streams import RedisStreamsLog

        return RedisStreamsLog(url, claim_idle_ms=settings.redis_stream_claim_idle_ms)
    raise ConfigError(
        f"unknown event log URL scheme {scheme!r} (use sqlite://, kafka://, redis:// or memory://)"
    )


def make_store(url: str, settings: Settings) -> Store:
    scheme = urlsplit(url).scheme
    if scheme == "duckdb":
        from hitstream.stores.duckdb import DuckDBStore

        return DuckDBStore(_path_of(url))
    if scheme == "memory":
        from hitstream.stores.memory import MemoryStore

        return MemoryStore()
    if scheme in ("postgresql", "postgres"):
        _need("psycopg", "postgres")
        from hitstream.stores.postgres import PostgresStore

        return PostgresStore(url, rollups=settings.store_rollups)
    raise ConfigError(
        f"unknown store URL scheme {scheme!r} (use duckdb://, postgresql:// or memory://)"
    )


def make_fanout(url: str, settings: Settings) -> Fanout:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from hitstream.fanout.memory import MemoryFanout

        return MemoryFanout()
    if scheme in ("redis", "rediss"):
        _need("redis", "redis")
        from hitstream.fanout.redis import RedisFanout

        return RedisFanout(url)
    raise ConfigError(f"unknown fan-out URL scheme {scheme!r} (use memory:// or redis://)")


def make_tally(fanout_url: str) -> Tally:
    """Rejection counts live where the live updates travel: Redis when several processes
    share a fan-out there, else in this process."""
    if urlsplit(fanout_url).scheme in ("redis", "rediss"):
        from hitstream.tally.redis import RedisTally

        return RedisTally(fanout_url)
    from hitstream.tally.memory import MemoryTally

    return MemoryTally()


def make_cache(url: str, settings: Settings) -> Cache:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from hitstream.cache.memory import MemoryCache

        return MemoryCache(settings.cache_entries)
    if scheme in ("redis", "rediss"):
        _need("redis", "redis")
        from hitstream.cache.redis import RedisCache

        return RedisCache(url)
    raise ConfigError(f"unknown cache URL scheme {scheme!r} (use memory:// or redis://)")


def make_salts(settings: Settings) -> SaltKeeper:
    from hitstream.services.salts import RedisSaltKeeper, SaltKeeper

    url = settings.salts_url
    scheme = urlsplit(url).scheme if url else "file"
    if scheme == "file":
        return SaltKeeper(settings.data_dir / "salts.json")
    if scheme in ("redis", "rediss"):
        _need("redis", "redis")
        return RedisSaltKeeper(url)
    raise ConfigError(f"unknown salts URL scheme {scheme!r} (leave empty or use redis://)")


def _need(module: str, extra: str) -> None:
    """A clear message when an optional driver is missing, instead of an ImportError."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"this URL needs the {extra!r} extra: pip install 'hitstream[{extra}]'")


def limits_from(settings: Settings) -> Limits:
    return Limits(
        max_past_ms=settings.max_event_age_s * 1000,
        max_future_ms=settings.max_future_skew_s * 1000,
    )


@dataclass
class Runtime:
    """Everything one hitstream process runs, started and stopped in the right order."""

    settings: Settings
    roles: frozenset[str]
    metrics: Metrics
    log: EventLog
    store: Store
    fanout: Fanout
    cache: Cache
    tally: Tally
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _demo_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _demo_task: asyncio.Task[None] | None = None
    _started: list[Startable] = field(default_factory=list)
    OPTIONAL = frozenset({"fanout", "cache"})
    """Parts a role goes on without (live updates pause, the cache misses): ``/readyz``
    reports them but stays 200 while they are down."""

    def __post_init__(self) -> None:
        from hitstream.enrich.geo import CountryLookup
        from hitstream.services.collector import Collector
        from hitstream.services.stats import StatsService

        self.salts = make_salts(self.settings)
        self.disk = DataFolders(self._data_folders())
        self.collector = Collector(
            self.log,
            self.salts,
            CountryLookup(),
            self.metrics,
            limits=limits_from(self.settings),
        )
        self.stats = StatsService(self.store, self.metrics, cache=self.cache)
        self.store.count_answers(lambda path: self.metrics.store_queries.labels(path).inc())
        self._warm_ups: list[Callable[[], None]] = []
        self.processor = self._make_processor() if "processor" in self.roles else None
        self.alerting = self._make_alerting() if "processor" in self.roles else None

    def _make_alerting(self) -> Alerting | None:
        from hitstream.services.alerting import make_alerting

        return make_alerting(
            self.store,
            self.fanout,
            rules=self.settings.alert_rules,
            notifiers=self.settings.alert_notifiers,
            interval_s=self.settings.alert_interval_s,
            registry=self.metrics.registry,
        )

    def _make_processor(self) -> Processor:
        from hitstream.domain.steps import build_steps
        from hitstream.enrich.bots import BotDetector
        from hitstream.enrich.useragent import UserAgentParser
        from hitstream.services.pipeline import PipelineRunner
        from hitstream.services.processor import Processor

        parser = UserAgentParser()
        bots = BotDetector(parser, allow_headless=self.settings.allow_headless)
        runner = PipelineRunner(build_steps(parser, bots), self.metrics)
        self._warm_ups = [parser.warm_up, bots.warm_up]
        return Processor(
            self.log,
            self.store,
            self.fanout,
            runner,
            self.metrics,
            stream=self.log.stream,
            batch_max=self.settings.batch_max_events,
            poll_timeout=self.settings.batch_max_wait_ms / 1000,
            session_timeout_ms=self.settings.session_timeout_s * 1000,
            retention_ms=self.settings.retention_days * 86_400_000,
        )

    def _data_folders(self) -> list[Path]:
        """The local folders this process's roles write to: ``/readyz`` checks the disk."""
        folders: list[Path] = []
        if self.roles & {"collector", "processor"} and self.log.name == "sqlite":
            folders.append(_path_of(self.settings.resolved_log_url()).parent)
        if self.roles & {"processor", "web"} and self.store.name == "duckdb":
            folders.append(_path_of(self.settings.resolved_store_url()).parent)
        if "collector" in self.roles and not self.settings.salts_url:
            folders.append(self.settings.data_dir)
        return folders

    @property
    def trusted_proxies(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(c, strict=False) for c in self.settings.trusted_proxies]

    def adapters(self) -> dict[str, Startable]:
        """The adapters this process's roles use (and so what ``/readyz`` checks)."""
        wanted: dict[str, Startable] = {}
        if self.roles & {"collector", "processor"}:
            wanted["log"] = self.log
        if self.roles & {"processor", "web"}:
            wanted["store"] = self.store
            wanted["fanout"] = self.fanout
        if "web" in self.roles:
            wanted["cache"] = self.cache
        if self.disk.folders:
            wanted["disk"] = self.disk
        return wanted

    async def _start_adapter(self, name: str, adapter: Startable) -> None:
        """Start one adapter, waiting (with backoff) while its service is unreachable."""
        delay = 0.5
        while True:
            try:
                await adapter.start()
                return
            except AdapterUnavailable as exc:
                log.warning("%s not available yet (%s); retrying in %.1fs", name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def start(self, *, run_processor: bool = True) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        for name, adapter in self.adapters().items():
            await self._start_adapter(name, adapter)
        self._started = list(self.adapters().values())
        await self.tally.start()  # best effort: never waited for, never in /readyz
        if "collector" in self.roles:
            self._tasks.append(asyncio.create_task(self._count_rejections()))
        if self.processor is not None:
            for warm_up in self._warm_ups:
                await asyncio.to_thread(warm_up)
        if self.processor is not None and run_processor:
            await self.processor.start()
            self._tasks.append(asyncio.create_task(self.processor.run(self.stop_event)))
        if self.alerting is not None and run_processor:
            self._tasks.append(asyncio.create_task(self.alerting.run(self.stop_event)))
        if self.settings.demo:
            from hitstream.services.demo import Demo

            demo = Demo(
                self.collector,
                self.store,
                self.settings.demo_site,
                events_per_day=self.settings.demo_events_per_day,
            )
            self._demo_task = asyncio.create_task(demo.run(self._demo_stop))
        log.info("started %s in %.2fs", ",".join(sorted(self.roles)), time.perf_counter() - began)

    async def _count_rejections(self, every_s: float = 0.5) -> None:
        """Hand the collector's rejection counts to the shared tally until stopped (and once
        more after): what the tally cannot take now stays with the collector for next time."""
        while True:
            stopping = self.stop_event.is_set()
            await self._count_rejections_once()
            if stopping:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), every_s)

    async def _count_rejections_once(self) -> None:
        taken = self.collector.take_pending()
        if taken and not await self.tally.add(taken):
            self.collector.put_back(taken)

    async def rejections(self, site_id: str | None) -> dict[str, int]:
        """reason -> events/requests refused for a site (with the site-less ones) or all:
        every collector's, through the tally, plus this process's not yet handed over."""
        found = Counter(await self.tally.read(site_id))
        for (site, reason), count in self.collector.pending.items():
            if site_id is None or site in (site_id, ""):
                found[reason] += count
        return dict(found)

    async def stop(self) -> None:
        """Stop intake (the caller stopped the web server first), drain the log, close."""
        if self._demo_task is not None:  # the demo is intake too: stop it before the drain
            self._demo_stop.set()
            await self._demo_task
        self.stop_event.set()
        for task in self._tasks:
            await task
        self._tasks.clear()
        if self.processor is not None:
            await self.processor.close()
        await self.salts.close()
        await self.tally.close()
        for adapter in reversed(self._started):
            await adapter.close()
        self._started = []


def build(settings: Settings, roles: frozenset[str] = ROLES) -> Runtime:
    unknown = roles - ROLES
    if unknown:
        raise ConfigError(f"unknown roles {sorted(unknown)}")
    return Runtime(
        settings=settings,
        roles=roles,
        metrics=Metrics(),
        log=make_log(settings.resolved_log_url(), settings),
        store=make_store(settings.resolved_store_url(), settings),
        fanout=make_fanout(settings.resolved_fanout_url(), settings),
        cache=make_cache(settings.resolved_cache_url(), settings),
        tally=make_tally(settings.resolved_fanout_url()),
    )
