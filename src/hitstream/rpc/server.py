"""The gRPC server of a process: the Stats service, standard health checking and reflection.

``GrpcServer`` listens on its own port (``grpc.aio``) beside the process's HTTP server and
is started after the runtime and stopped before it (``Served``), so a call never meets a
store that is not started, and calls in flight finish (``grace_s``) before the store closes.

Health (``grpc.health.v1.Health``) reports the overall server (``""``) and
``hitstream.v1.Stats``: ``SERVING`` while the store answers its check, ``NOT_SERVING`` while
it does not (asked every ``health_interval_s``; the store's own circuit breaker keeps that
cheap), and ``NOT_SERVING`` for good once shutdown began. Reflection lists the three services,
so ``grpcurl`` needs no .proto.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from hitstream.errors import AdapterUnavailable, ConfigError
from hitstream.metrics import Metrics
from hitstream.rpc.service import StatsServicer
from hitstream.rpc.v1 import stats_pb2, stats_pb2_grpc
from hitstream.services.access import Gatekeeper
from hitstream.services.stats import StatsService

log = logging.getLogger(__name__)

STATS_SERVICE: Final[str] = stats_pb2.DESCRIPTOR.services_by_name["Stats"].full_name
HEALTH_SERVICE: Final[str] = health.SERVICE_NAME
REFLECTION_SERVICE: Final[str] = reflection.SERVICE_NAME
SERVING: Final[Any] = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final[Any] = health_pb2.HealthCheckResponse.NOT_SERVING


class Checkable(Protocol):
    """The store, as health asks it: ``check`` raises ``AdapterUnavailable`` when it is down."""

    async def check(self) -> None: ...


class Lifecycle(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcServer:
    def __init__(
        self,
        stats: StatsService,
        gate: Gatekeeper,
        metrics: Metrics,
        store: Checkable,
        *,
        host: str,
        port: int,
        health_interval_s: float = 1.0,
        grace_s: float = 10.0,
    ) -> None:
        self.servicer = StatsServicer(stats, gate, metrics)
        self.store = store
        self.host = host
        self.port = port
        """The port asked for; once started, the port bound (0 asks for a free one)."""
        self.health_interval_s = health_interval_s
        self.grace_s = grace_s
        self.health: Any = None
        self._server: grpc.aio.Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self._serving: bool | None = None

    async def start(self) -> None:
        # no SO_REUSEPORT: a second process on a taken port must fail, not share it silently
        server = grpc.aio.server(options=(("grpc.so_reuseport", 0),))
        stats_pb2_grpc.add_StatsServicer_to_server(self.servicer, server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        reflection.enable_server_reflection(
            (STATS_SERVICE, HEALTH_SERVICE, REFLECTION_SERVICE), server
        )
        where = address(self.host, self.port)
        try:
            self.port = server.add_insecure_port(where)
        except RuntimeError as exc:  # taken, or not an address of this host
            raise ConfigError(
                f"--grpc-port / HITSTREAM_GRPC_PORT: gRPC cannot listen on {where}: {exc}"
            ) from exc
        await self.probe()
        await server.start()
        self._server = server
        self._watch = asyncio.create_task(self._watch_store())

    async def probe(self) -> bool:
        """Ask the store once and report it; whether it answered."""
        try:
            await self.store.check()
            serving = True
        except AdapterUnavailable as exc:
            serving = False
            if self._serving is not False:
                log.warning("gRPC health: NOT_SERVING, the store is unavailable: %s", exc)
        if serving and self._serving is False:
            log.info("gRPC health: SERVING again")
        self._serving = serving
        status = SERVING if serving else NOT_SERVING
        for service in ("", STATS_SERVICE):
            await self.health.set(service, status)
        return serving

    async def _watch_store(self) -> None:
        while True:
            await asyncio.sleep(self.health_interval_s)
            try:
                await self.probe()
            except Exception:  # a probe that breaks must not end the watch
                log.exception("gRPC health probe failed")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._server is not None:
            await self.health.enter_graceful_shutdown()
            await self._server.stop(self.grace_s)
            self._server = None


class Served:
    """A runtime and the gRPC server on it, started and stopped together (the app's
    lifespan runs this): the runtime first, the gRPC server last; in reverse to stop."""

    def __init__(self, runtime: Lifecycle, server: GrpcServer) -> None:
        self.runtime = runtime
        self.server = server

    async def start(self) -> None:
        await self.runtime.start()
        try:
            await self.server.start()
        except BaseException:  # the port is taken: leave nothing running behind
            await self.runtime.stop()
            raise

    async def stop(self) -> None:
        try:
            await self.server.stop()
        finally:
            await self.runtime.stop()
