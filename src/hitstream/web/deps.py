"""What the routes are given: a typed bundle of the services that bootstrap built.

A handler declares what it uses (``stats: StatsDep``) and FastAPI hands it over from the app's
``AppServices``; no route reaches into the runtime. The ingestion route reads the same object
through ``services_of`` without dependency injection (the hot path). A process without a role
does not mount the routes of that role, so a missing service behind a mounted route is a
wiring bug (``RuntimeError``, a 500), never the client's fault.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends
from starlette.requests import HTTPConnection

from hitstream.metrics import Metrics
from hitstream.services.access import Gatekeeper
from hitstream.services.accounts import Accounts
from hitstream.services.alerting import AlertBoard, Alerting
from hitstream.services.collector import Collector
from hitstream.services.live import LiveHub
from hitstream.services.quality import Quality
from hitstream.services.stats import StatsService

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_T = TypeVar("_T")


class Checkable(Protocol):
    """An adapter ``/readyz`` asks: ``check`` raises ``AdapterUnavailable`` when it is down."""

    name: str

    async def check(self) -> None: ...


@dataclass(slots=True)
class Startup:
    """Where the process's start-up is: its port opens at once, and until ``done`` every
    route but ``/healthz``, ``/readyz`` and ``/metrics`` answers 503 (a probe sees a live
    process waiting for its database, not "connection refused")."""

    done: bool = True
    """False from the lifespan's start until every part has started (True: nothing to wait
    for, as in apps built without a lifecycle)."""
    waiting_for: str = ""
    """The part being waited for (``store``, ``log`` ...), while it does not answer."""


@dataclass(frozen=True, slots=True)
class AppServices:
    """Everything the routes of one process use; None where the process lacks the role."""

    metrics: Metrics
    checks: Mapping[str, Checkable] = field(default_factory=dict)
    """The adapters this process's roles need, by role name (``log``, ``store`` ...)."""
    optional_checks: frozenset[str] = frozenset()
    """Names among ``checks`` the process goes on without: ``/readyz`` stays 200 (degraded)."""
    collector: Collector | None = None
    trusted_proxies: Sequence[Network] = ()
    stats: StatsService | None = None
    quality: Quality | None = None
    live: LiveHub | None = None
    alerting: Alerting | AlertBoard | None = None
    """None where no rule is set or the process does not evaluate (its dashboards still get
    alert frames over the fan-out)."""
    gate: Gatekeeper | None = None
    accounts: Accounts | None = None
    compat_sites: Mapping[str, str] = field(default_factory=dict)
    """Endpoint family of the seeds' clients -> site (``""``: the default; ``web.compat``)."""
    events_url: str = ""
    """Where browsers send events when that is not this address (``HITSTREAM_COLLECTOR_URL``):
    the snippets this process gives carry it as ``data-api``."""
    peer_metrics: Callable[[], Awaitable[str]] | None = None
    """``serve``'s processor process's ``/metrics`` text, added to this process's."""
    startup: Startup = field(default_factory=Startup)


def services_of(conn: HTTPConnection) -> AppServices:
    """The app's services, typed (for the ingestion route, which skips dependency injection:
    it is the hot path, and FastAPI's resolution costs per request)."""
    services: AppServices = conn.app.state.services
    return services


async def app_services(conn: HTTPConnection) -> AppServices:
    """Dependencies are coroutines on purpose: FastAPI runs a plain function in a thread."""
    return services_of(conn)


def _built(value: _T | None, what: str) -> _T:
    if value is None:
        raise RuntimeError(f"this process built no {what}, yet serves a route that needs it")
    return value


async def _stats(conn: HTTPConnection) -> StatsService:
    return _built(services_of(conn).stats, "stats service")


async def _quality(conn: HTTPConnection) -> Quality:
    return _built(services_of(conn).quality, "quality source")


async def _live(conn: HTTPConnection) -> LiveHub:
    return _built(services_of(conn).live, "live hub")


async def _alerting(conn: HTTPConnection) -> Alerting | AlertBoard | None:
    return services_of(conn).alerting


ServicesDep = Annotated[AppServices, Depends(app_services)]
StatsDep = Annotated[StatsService, Depends(_stats)]
QualityDep = Annotated[Quality, Depends(_quality)]
LiveDep = Annotated[LiveHub, Depends(_live)]
AlertingDep = Annotated[Alerting | AlertBoard | None, Depends(_alerting)]
