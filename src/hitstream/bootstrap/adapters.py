"""Adapters by URL: one factory per port, the driver imported only for the scheme named.

An embedded install never imports Kafka, PostgreSQL or Redis clients; a URL that needs a
missing extra fails with a ``ConfigError`` saying which one to install. Nothing here
connects: adapters connect in their ``start`` (the runtime's job).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

from hitstream.cache.base import Cache
from hitstream.errors import ConfigError, StoreUnavailable
from hitstream.fanout.base import Fanout
from hitstream.log.base import EventLog
from hitstream.notifiers.base import Notifier
from hitstream.salts.base import SaltKeeper
from hitstream.settings import Settings
from hitstream.stores.base import Store
from hitstream.tally.base import Tally

_REDIS = ("redis", "rediss")


def _path_of(url: str) -> Path:
    parts = urlsplit(url)
    raw = parts.netloc + parts.path if parts.netloc else parts.path
    if not raw:
        raise ConfigError(f"{url!r} names no file")
    if raw.startswith("//"):  # sqlite:////abs/path: one leading slash, not POSIX's "//"
        raw = "/" + raw.lstrip("/")
    return Path(raw)


def _need(module: str, extra: str) -> None:
    """A clear message when an optional driver is missing, instead of an ImportError."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"this URL needs the {extra!r} extra: pip install 'hitstream[{extra}]'")


def data_folders(
    settings: Settings, roles: frozenset[str], log: EventLog, store: Store
) -> list[Path]:
    """The local folders this process's roles write to: ``/readyz`` checks the disk."""
    folders: list[Path] = []
    if roles & {"collector", "processor"} and log.name == "sqlite":
        folders.append(_path_of(settings.resolved_log_url()).parent)
    if roles & {"processor", "web", "grpc"} and store.name == "duckdb":
        folders.append(_path_of(settings.resolved_store_url()).parent)
    if "collector" in roles and not settings.salts_url:
        folders.append(settings.data_dir)
    return folders


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
            group_prefix=settings.kafka_group_prefix,
            message_timeout_ms=settings.kafka_message_timeout_ms,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
            extra=settings.kafka_extra,
        )
    if scheme in _REDIS:
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

        return DuckDBStore(
            _path_of(url), rollups=settings.store_rollups, memory_mb=settings.duckdb_memory_mb
        )
    if scheme == "memory":
        from hitstream.stores.memory import MemoryStore

        return MemoryStore()
    if scheme in ("postgresql", "postgres"):
        _need("psycopg", "postgres")
        from hitstream.stores.postgres import PostgresStore

        return PostgresStore(url, rollups=settings.store_rollups)
    if scheme == "socket":  # the store another local process holds (``hitstream serve``)
        from hitstream.stores.socket import SocketStore

        return SocketStore(_path_of(url))
    raise ConfigError(
        f"unknown store URL scheme {scheme!r} (use duckdb://, postgresql:// or memory://)"
    )


def make_fanout(url: str) -> Fanout:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from hitstream.fanout.memory import MemoryFanout

        return MemoryFanout()
    if scheme in _REDIS:
        _need("redis", "redis")
        from hitstream.fanout.redis import RedisFanout

        return RedisFanout(url)
    if scheme == "relay":  # a processor child of ``hitstream serve`` publishing to its parent
        from hitstream.fanout.relay import RelayFanout

        return RelayFanout(urlsplit(url).path)
    raise ConfigError(f"unknown fan-out URL scheme {scheme!r} (use memory:// or redis://)")


def make_tally(fanout_url: str, store: Store | None = None) -> Tally:
    """Rejection counts live where the live updates travel: Redis when several processes
    share a fan-out there; else in the store (they survive restarts), or in this process
    when there is no store to keep them."""
    if urlsplit(fanout_url).scheme in _REDIS:
        from hitstream.tally.redis import RedisTally

        return RedisTally(fanout_url)
    if store is not None:
        from hitstream.tally.store import StoreTally

        return StoreTally(store)
    from hitstream.tally.memory import MemoryTally

    return MemoryTally()


def make_cache(url: str, entries: int) -> Cache:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from hitstream.cache.memory import MemoryCache

        return MemoryCache(entries)
    if scheme in _REDIS:
        _need("redis", "redis")
        from hitstream.cache.redis import RedisCache

        return RedisCache(url)
    raise ConfigError(f"unknown cache URL scheme {scheme!r} (use memory:// or redis://)")


def make_salts(url: str, data_dir: Path) -> SaltKeeper:
    """Salts in ``data_dir`` (an empty URL), in memory (``memory://``) or shared in Redis."""
    scheme = urlsplit(url).scheme if url else "file"
    if scheme == "file":
        from hitstream.salts.file import FileSaltKeeper

        return FileSaltKeeper(data_dir / "salts.json")
    if scheme == "memory":
        from hitstream.salts.memory import MemorySaltKeeper

        return MemorySaltKeeper()
    if scheme in _REDIS:
        _need("redis", "redis")
        from hitstream.salts.redis import RedisSaltKeeper

        return RedisSaltKeeper(url)
    raise ConfigError(f"unknown salts URL scheme {scheme!r} (leave empty or use redis://)")


def make_notifier(url: str, on_failure: Callable[[], None] | None = None) -> Notifier:
    """One notifier for ``url``; ``on_failure`` is called for every alert it gives up on."""
    scheme = urlsplit(url).scheme
    if scheme == "log":
        from hitstream.notifiers.log import LogNotifier

        return LogNotifier()
    if scheme == "memory":
        from hitstream.notifiers.memory import MemoryNotifier

        return MemoryNotifier()
    if scheme in ("http", "https"):
        from hitstream.notifiers.webhook import WebhookNotifier

        try:
            return WebhookNotifier(url, on_failure=on_failure)
        except ValueError as exc:
            raise ConfigError(f"HITSTREAM_ALERT_NOTIFIERS: {exc}") from exc
    shown = scheme or url.split("/")[0]
    raise ConfigError(
        f"HITSTREAM_ALERT_NOTIFIERS: unknown alert notifier {shown!r} "
        "(use log:// or an http(s):// webhook)"
    )


def make_notifiers(urls: str, on_failure: Callable[[str], None] | None = None) -> list[Notifier]:
    """Notifiers for a comma-separated URL list; ``on_failure`` gets the notifier's name."""
    notifiers: list[Notifier] = []
    for url in (part.strip() for part in urls.split(",")):
        if url:
            hook = None if on_failure is None else _bind(on_failure, urlsplit(url).scheme)
            notifiers.append(make_notifier(url, hook))
    return notifiers


def _bind(on_failure: Callable[[str], None], scheme: str) -> Callable[[], None]:
    name = "webhook" if scheme in ("http", "https") else scheme
    return lambda: on_failure(name)


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[Store]:
    """The store for a command (``hitstream sites``, ``users``, ``keys``, ``forget``): through
    the control socket of a running ``hitstream serve`` that holds the embedded file, else
    opened directly (migrated on start). PostgreSQL is always opened directly: every process
    may."""
    store = await _lent(settings)
    if store is None:
        store = make_store(settings.resolved_store_url(), settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await store.start()
    try:
        yield store
    finally:
        await store.close()


async def _lent(settings: Settings) -> Store | None:
    """The embedded store a running ``hitstream serve`` lends on its data folder's control
    socket, started; None when the store is not the embedded file or nobody holds it."""
    socket_path = settings.data_dir.resolve() / "control.sock"
    if urlsplit(settings.resolved_store_url()).scheme != "duckdb" or not socket_path.exists():
        return None
    from hitstream.stores.socket import SocketStore

    lent = SocketStore(socket_path)
    try:
        await lent.start()
    except StoreUnavailable:
        return None  # a stale socket: nobody holds the file
    return lent


def with_lent_store(settings: Settings) -> Settings:
    """``settings`` whose store is the one a running ``hitstream serve`` lends (``_lent``),
    for a command that builds a whole runtime (``hitstream replay``): a second process
    cannot open the DuckDB file, and such a command waited for its lock until stopped."""

    async def probe() -> bool:
        lent = await _lent(settings)
        if lent is None:
            return False
        await lent.close()
        return True

    if not asyncio.run(probe()):
        return settings
    control = settings.data_dir.resolve() / "control.sock"
    return settings.model_copy(update={"store_url": f"socket://{control}"})
