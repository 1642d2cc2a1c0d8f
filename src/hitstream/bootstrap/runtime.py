"""The runtime: everything one process runs, started and stopped in the right order.

Start: the adapters this process's roles use (each waited for with backoff while its service
is unreachable), then the best-effort tally, the background tasks (rejection counts, the
processor, alerting) and the demo. Stop (after the web server stopped taking requests): the
demo (it is intake too), live connections, the background tasks (the processor drains the
event log into the store), then the adapters in reverse order.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from hitstream.backoff import Backoff
from hitstream.cache.base import Cache
from hitstream.disk import DataFolders
from hitstream.errors import AdapterUnavailable
from hitstream.fanout.base import Fanout
from hitstream.log.base import EventLog
from hitstream.metrics import Metrics
from hitstream.salts.base import SaltKeeper
from hitstream.services.alerting import Alerting
from hitstream.services.collector import Collector
from hitstream.services.live import LiveHub
from hitstream.services.processor import Processor
from hitstream.services.quality import Quality, Rejections
from hitstream.services.stats import StatsService
from hitstream.settings import Settings
from hitstream.stores.base import Store
from hitstream.tally.base import Tally
from hitstream.web.deps import AppServices

if TYPE_CHECKING:
    from hitstream.synthetic.demo import Demo

log = logging.getLogger(__name__)
ROLES = frozenset({"collector", "processor", "web"})
OPTIONAL = frozenset({"fanout", "cache"})
"""Parts a role goes on without (live updates pause, the cache misses): ``/readyz`` reports
them but stays 200 while they are down."""


class Startable(Protocol):
    name: str

    async def start(self) -> None: ...

    async def check(self) -> None: ...

    async def close(self) -> None: ...


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
    stats: StatsService | None = None
    quality: Quality | None = None
    live: LiveHub | None = None
    demo: Demo | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(first_s=0.5))
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _demo_stop: asyncio.Event = field(default_factory=asyncio.Event)
    _demo_task: asyncio.Task[None] | None = None
    _started: list[Startable] = field(default_factory=list)
    _services: AppServices | None = None

    @property
    def services(self) -> AppServices:
        """What the web routes of this process get (``hitstream.web.deps``)."""
        if self._services is None:
            self._services = AppServices(
                metrics=self.metrics,
                checks=dict(self.adapters()),
                optional_checks=OPTIONAL,
                collector=self.collector,
                trusted_proxies=[
                    ipaddress.ip_network(cidr, strict=False)
                    for cidr in self.settings.trusted_proxies
                ],
                stats=self.stats,
                quality=self.quality,
                live=self.live,
                alerting=self.alerting,
            )
        return self._services

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
        if self.disk is not None and self.disk.folders:
            wanted["disk"] = self.disk
        return wanted

    async def _start_adapter(self, name: str, adapter: Startable) -> None:
        """Start one adapter, waiting (with backoff) while its service is unreachable."""
        attempt = 0
        while True:
            try:
                await adapter.start()
                return
            except AdapterUnavailable as exc:
                delay = self.backoff.delay(attempt)
                log.warning("%s not available yet (%s); retrying in %.1fs", name, exc, delay)
                await self.backoff.sleep(delay)
                attempt += 1

    async def start(self, *, run_processor: bool = True) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        for name, adapter in self.adapters().items():
            await self._start_adapter(name, adapter)
            self._started.append(adapter)
        await self.tally.start()  # best effort: never waited for, never in /readyz
        if self.collector is not None:
            self._tasks.append(asyncio.create_task(self.rejections.pump(self.stop_event)))
        if self.processor is not None:
            for warm_up in self.warm_ups:
                await asyncio.to_thread(warm_up)
            if run_processor:
                await self.processor.start()
                self._tasks.append(asyncio.create_task(self.processor.run(self.stop_event)))
        if self.alerting is not None and run_processor:
            self._tasks.append(asyncio.create_task(self.alerting.run(self.stop_event)))
        if self.demo is not None:
            self._demo_task = asyncio.create_task(self.demo.run(self._demo_stop))
        log.info("started %s in %.2fs", ",".join(sorted(self.roles)), time.perf_counter() - began)

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
        for adapter in reversed(self._started):
            await adapter.close()
        self._started = []
