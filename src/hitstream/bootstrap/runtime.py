"""The runtime: everything one process runs, started and stopped in the right order.

Start: the adapters this process's roles use (each waited for with backoff while its service
is unreachable), then the best-effort tally, the background tasks (rejection counts, the
processor, alerting) and the demo. Stop (after the web server stopped taking requests): the
demo (it is intake too), live connections, the background tasks (the processor drains the
event log into the store), then the adapters in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Protocol

from hitstream.backoff import Backoff
from hitstream.cache.base import Cache
from hitstream.disk import DataFolders, open_to_others
from hitstream.domain.errors import QueryError
from hitstream.domain.sites import Site, new_site
from hitstream.errors import AdapterUnavailable, ConfigError, Conflict
from hitstream.fanout.base import Fanout
from hitstream.log.base import EventLog
from hitstream.metrics import Metrics
from hitstream.salts.base import SaltKeeper
from hitstream.services.access import Gatekeeper
from hitstream.services.accounts import Accounts
from hitstream.services.alerting import AlertBoard, Alerting
from hitstream.services.collector import Collector
from hitstream.services.live import LiveHub
from hitstream.services.processor import Processor
from hitstream.services.quality import Quality, Rejections
from hitstream.services.stats import StatsService
from hitstream.settings import Settings
from hitstream.stores.base import Store
from hitstream.stores.socket import StoreServer
from hitstream.tally.base import Tally
from hitstream.web.deps import AppServices, Startup

if TYPE_CHECKING:
    from hitstream.synthetic.demo import Demo

log = logging.getLogger(__name__)
ROLES = frozenset({"collector", "processor", "web", "grpc"})
"""``grpc``: the gRPC stats service (``hitstream.rpc``): the store, the registry, the stats
service and its cache; nothing else."""
OPTIONAL = frozenset({"fanout", "cache"})
"""Parts a role goes on without (live updates pause, the cache misses): ``/readyz`` reports
them but stays 200 while they are down."""
DEMO_VIEWER = "demo@hitstream.invalid"
"""The viewer the demo's login link logs in as (it has no password)."""


def control_socket(settings: Settings) -> Path:
    """Where a process that owns an embedded store lends it (``stores.socket``)."""
    return settings.data_dir.resolve() / "control.sock"


def sites_from(declared: str, now_ms: int) -> list[Site]:
    """The sites of ``HITSTREAM_SITES``: domains separated by commas, or a JSON list of
    site objects; ``ConfigError`` naming the bad one."""
    text = declared.strip()
    if not text:
        return []
    items: list[object]
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"HITSTREAM_SITES: not JSON: {exc}") from exc
        items = parsed if isinstance(parsed, list) else [parsed]
    else:
        items = [{"site_id": part.strip()} for part in text.split(",") if part.strip()]
    sites = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"HITSTREAM_SITES[{index}]: must be an object or a domain")
        try:
            sites.append(new_site(item, now_ms))
        except QueryError as exc:
            raise ConfigError(f"HITSTREAM_SITES[{index}].{exc.field}: {exc.reason}") from exc
    return sites


class Startable(Protocol):
    name: str

    async def start(self) -> None: ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...


GC_EVERY_S: Final = 60.0
"""Seconds between two full collections of reference cycles in a running process."""


async def collect_cycles(stop: asyncio.Event, every_s: float = GC_EVERY_S) -> None:
    """Collect garbage in reference cycles every ``every_s`` until ``stop`` (decision 0042).
    The young generation's threshold is raised (``cli._tune_gc``, decision 0035) and a
    serving process's objects mostly die by reference count, so its allocation count hardly
    grows: the web process under full-speed ingest went minutes without one collection and
    would go hours without a full one, while cycles (an HTTP client's finished connections,
    each holding the page it read) piled up. A full collection costs ~10-15 ms there."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        if not stop.is_set():
            gc.collect()


@dataclass(eq=False)
class Runtime:
    """What ``hitstream.bootstrap.build`` made for one process's roles; None where a role
    that needs it is absent."""

    settings: Settings
    roles: frozenset[str]
    metrics: Metrics
    log: EventLog
    store: Store
    fanout: Fanout
    cache: Cache
    tally: Tally
    rejections: Rejections
    disk: DataFolders | None = None
    salts: SaltKeeper | None = None
    collector: Collector | None = None
    processor: Processor | None = None
    warm_ups: list[Callable[[], None]] = field(default_factory=list)
    alerting: Alerting | None = None
    alert_board: AlertBoard | None = None
    """A web process's view of the alerts the processors evaluate (scale-out)."""
    stats: StatsService | None = None
    quality: Quality | None = None
    live: LiveHub | None = None
    demo: Demo | None = None
    gate: Gatekeeper | None = None
    accounts: Accounts | None = None
    announce: Callable[[str], None] | None = None
    peer_metrics: Callable[[], Awaitable[str]] | None = None
    """Another process's ``/metrics`` that ours include (``serve``'s processor process)."""
    """Where first-run links are printed (the CLI's console); None prints nothing."""
    backoff: Backoff = field(default_factory=lambda: Backoff(first_s=0.5))
    stopping: Callable[[], bool] = lambda: False
    """Whether the process was asked to stop (the HTTP server's SIGTERM/SIGINT): a start
    still waiting for its log or store gives up instead of waiting on."""
    fatal: ConfigError | None = None
    """A setting found wrong after start-up (a Kafka consumer's, met at its first poll):
    the process stops (``on_fatal``) and the CLI says it in one line, exit code 2."""
    on_fatal: Callable[[], None] = lambda: None
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _demo_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _demo_task: asyncio.Task[None] | None = None
    _started: list[Startable] = field(default_factory=list)
    _control: StoreServer | None = None
    _services: AppServices | None = None
    startup: Startup = field(default_factory=Startup)
    """What ``/readyz`` says while ``start`` waits for a part (the web app's lifespan marks
    it done)."""

    @property
    def services(self) -> AppServices:
        """What the web routes of this process get (``hitstream.web.deps``)."""
        if self._services is None:
            self._services = AppServices(
                metrics=self.metrics,
                checks=dict(self.adapters()),
                optional_checks=self.optional_parts(),
                collector=self.collector,
                trusted_proxies=[
                    ipaddress.ip_network(cidr, strict=False)
                    for cidr in self.settings.trusted_proxies
                ],
                stats=self.stats if "web" in self.roles else None,  # gRPC alone: no routes
                quality=self.quality,
                live=self.live,
                alerting=self.alerting if self.alerting is not None else self.alert_board,
                gate=self.gate,
                accounts=self.accounts,
                compat_sites=self.settings.compat_sites(),
                events_url=self.settings.events_url(),
                peer_metrics=self.peer_metrics,
                startup=self.startup,
            )
        return self._services

    def optional_parts(self) -> frozenset[str]:
        """What ``/readyz`` reports but does not fail on: the fan-out and the cache always;
        the store too for a collector alone (it reads the site registry from the copy it
        holds, and ingestion goes on while the store is down)."""
        if self.roles == frozenset({"collector"}):
            return OPTIONAL | {"store"}
        return OPTIONAL

    def adapters(self) -> dict[str, Startable]:
        """The adapters this process's roles use (and so what ``/readyz`` checks)."""
        wanted: dict[str, Startable] = {}
        if self.roles & {"collector", "processor"}:
            wanted["log"] = self.log
        wanted["store"] = self.store  # the registry: sites, keys (every role asks it)
        if self.roles & {"processor", "web"}:
            wanted["fanout"] = self.fanout
        if self.roles & {"web", "grpc"}:
            wanted["cache"] = self.cache
        if self.disk is not None and self.disk.folders:
            wanted["disk"] = self.disk
        return wanted

    async def _start_adapter(self, name: str, adapter: Startable) -> bool:
        """Start one adapter, waiting (with backoff) while its service is unreachable; False
        when the process was asked to stop meanwhile (then it is not started)."""
        attempt = 0
        while True:
            self.startup.waiting_for = name  # (a database's connect may itself take long)
            trying = asyncio.ensure_future(adapter.start())
            if not await self._unless_stopped(trying, name):
                return False
            try:
                trying.result()
                self.startup.waiting_for = ""
                return True
            except AdapterUnavailable as exc:
                delay = self.backoff.delay(attempt)
                log.warning("%s not available yet (%s); retrying in %.1fs", name, exc, delay)
                if not await self._unless_stopped(
                    asyncio.ensure_future(self.backoff.sleep(delay)), name
                ):
                    return False
                attempt += 1

    async def _process(self, processor: Processor) -> None:
        """The processor's loop; a setting it finds wrong stops the process (retrying would
        log the same error every few seconds for good, processing nothing)."""
        try:
            await processor.run(self.stop_event)
        except ConfigError as exc:
            self.fatal = exc
            self.on_fatal()

    async def _unless_stopped(self, step: asyncio.Future[None], name: str) -> bool:
        """Wait for ``step`` (a connection attempt, or the pause before the next); False,
        with ``step`` cancelled, when a signal came meanwhile: a PostgreSQL pool's attempt
        lasts 10 s, and SIGTERM or Ctrl-C waited for it to end."""
        while not step.done():
            if self.stopping():
                step.cancel()
                await asyncio.wait([step], timeout=0.2)  # a pool may not end promptly
                if step.done() and not step.cancelled():
                    step.exception()  # retrieved: its end is of no interest now
                log.warning("asked to stop while waiting for the %s: stopping", name)
                return False
            await asyncio.wait([step], timeout=0.1)
        return True

    async def start(self, *, run_processor: bool = True) -> None:
        self.settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if open_to_others(self.settings.data_dir) is not None:
            log.warning(
                "the data folder %s is open to other users (mode %o): it holds the store "
                "and the event log; `chmod 700` it",
                self.settings.data_dir,
                self.settings.data_dir.stat().st_mode & 0o777,
            )
        began = time.perf_counter()
        for name, adapter in self.adapters().items():
            if not await self._start_adapter(name, adapter):
                return  # the server stops at once (it was signalled): nothing more to start
            self._started.append(adapter)
        if self.store.name == "duckdb":  # one process per file: lend it to the CLI
            self._control = StoreServer(self.store, control_socket(self.settings))
            await self._control.start()
        await self.tally.start()  # best effort: never waited for, never in /readyz
        await self._declare_sites()
        if self.gate is not None:
            await self.gate.refresh(force=True)
        await self._first_run()
        self._tasks.append(asyncio.create_task(collect_cycles(self.stop_event)))
        if self.collector is not None:
            self._tasks.append(asyncio.create_task(self.rejections.pump(self.stop_event)))
        if self.processor is not None:
            for warm_up in self.warm_ups:
                await asyncio.to_thread(warm_up)
            if run_processor:
                await self.processor.start()
                self._tasks.append(asyncio.create_task(self._process(self.processor)))
        if self.alerting is not None and run_processor:
            self._tasks.append(asyncio.create_task(self.alerting.run(self.stop_event)))
        if self.alert_board is not None:
            self._tasks.append(asyncio.create_task(self.alert_board.follow(self.stop_event)))
        if self.demo is not None:
            self._demo_task = asyncio.create_task(self.demo.run(self._demo_stop))
        log.info("started %s in %.2fs", ",".join(sorted(self.roles)), time.perf_counter() - began)

    def public_url(self) -> str:
        host = self.settings.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        return f"http://{shown}:{self.settings.port}"

    async def _declare_sites(self) -> None:
        """Register the sites of ``HITSTREAM_SITES`` and the demo's, unless they exist."""
        sites = sites_from(self.settings.sites, int(time.time() * 1000))
        if self.demo is not None:
            sites.append(Site(self.demo.site_id, created_at=int(time.time() * 1000)))
        for site in sites:
            if await self.store.get_site(site.site_id) is None:
                with contextlib.suppress(Conflict):  # another process was quicker
                    await self.store.add_site(site)

    async def _first_run(self) -> None:
        """With a dashboard and no admin yet: print a one-time setup link; with the demo: a
        link that logs straight into the demo site."""
        if self.accounts is None or self.announce is None:
            return
        base = self.public_url()
        if await self.accounts.needs_setup():
            token = await self.accounts.setup_token()
            self.announce(  # set apart: among the servers' start-up lines it was missed
                f"\nFirst run: create the admin account at {base}/setup?token={token} "
                "(a one-time link)\n"
            )
        if self.demo is not None:
            token = await self.accounts.login_link(DEMO_VIEWER, [self.demo.site_id])
            self.announce(f"Demo: open {base}/login/link?token={token} (valid 7 days)")

    async def stop(self) -> None:
        """Stop intake (the caller stopped the web server first), drain the log, close."""
        if self._demo_task is not None:  # the demo is intake too: stop it before the drain
            self._demo_stop.set()
            await self._demo_task
        if self.live is not None:
            await self.live.close()
        self.stop_event.set()
        for task in self._tasks:
            await task
        self._tasks.clear()
        if self.processor is not None:
            await self.processor.close()
        if self.salts is not None:
            await self.salts.close()
        await self.tally.close()
        if self._control is not None:
            await self._control.close()
            self._control = None
        for adapter in reversed(self._started):
            await adapter.close()
        self._started = []
