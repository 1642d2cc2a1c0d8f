"""``hitstream serve`` as one unit of two processes, so that the embedded mode uses both cores.

The parent runs the web and collector roles (HTTP, ingestion, dashboards, live connections);
a child runs ``hitstream processor``, which owns the DuckDB file (DuckDB allows one writer
process) and lends it on ``<data_dir>/control.sock`` (``stores/socket.py``): the parent reads
the store through ``SocketStore``. Both use the same SQLite event log (WAL: one process
appends, the other reads). Live updates and alerts the child publishes reach the parent's
dashboards over ``<data_dir>/fanout.sock`` (``fanout/relay.py``); the parent's ``/metrics``
adds the child's (``metrics.merge_exposition``).

One unit: the parent starts the child with its own start-up and restarts it if it dies (its
work is in the log, and the store's position says where it stopped: a SIGKILL loses
nothing); SIGTERM to the parent stops intake first, then stops the child, which drains the
log into the store. The child dies with the parent (``PR_SET_PDEATHSIG``: a SIGKILLed parent
leaves no child holding the store). Only for the embedded default (SQLite log, DuckDB store,
in-process fan-out), and ``HITSTREAM_PROCESSOR_PROCESS=false`` keeps one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from hitstream.backoff import Backoff
from hitstream.settings import Settings

if TYPE_CHECKING:
    import httpx

    from hitstream.fanout.base import Fanout

log = logging.getLogger(__name__)
_PR_SET_PDEATHSIG = 1
METRICS_REUSE_S = 0.5
"""The child's metrics are fetched again after this long (a scrape in between reuses them)."""
STOP_TIMEOUT_S = 120.0
"""How long a stopping child may drain before it is killed (its drain is bounded at 60 s)."""


class Lifecycle(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Waiting(Protocol):
    """Where a start-up says what it waits for (``/readyz``: ``web.deps.Startup``)."""

    waiting_for: str


def processor_in_child(settings: Settings) -> bool:
    """Whether ``serve`` runs its processor in a child process (the embedded default)."""
    return (
        settings.processor_process
        and urlsplit(settings.resolved_log_url()).scheme == "sqlite"
        and urlsplit(settings.resolved_store_url()).scheme == "duckdb"
        and urlsplit(settings.resolved_fanout_url()).scheme == "memory"
    )


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    """In the child, before exec: SIGKILL when the parent dies (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessorChild:
    """The child running ``hitstream processor`` for a ``serve`` with ``settings``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        data_dir = settings.data_dir.resolve()
        self.control = data_dir / "control.sock"
        self.fanout_socket = data_dir / "fanout.sock"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stopping = False
        self._watcher: asyncio.Task[None] | None = None
        self._backoff = Backoff(first_s=0.5, max_s=10.0)
        self._metrics = ""
        self._metrics_at = -METRICS_REUSE_S
        self._client: httpx.AsyncClient | None = None
        """The HTTP client reading the child's ``/metrics``, made once: a new one per scrape
        built a TLS context (the CA bundle read and parsed) each time, 8 % of ``serve``'s CPU
        while a harness sampled ``/metrics`` every half second."""

    def parent_settings(self) -> Settings:
        """The parent's settings: the store through the child's control socket."""
        return self.settings.model_copy(update={"store_url": f"socket://{self.control}"})

    def environment(self) -> dict[str, str]:
        settings = self.settings
        return {
            **os.environ,
            "HITSTREAM_DATA_DIR": str(settings.data_dir.resolve()),
            "HITSTREAM_HOST": "127.0.0.1",
            "HITSTREAM_PORT": str(self.port),
            "HITSTREAM_LOG_URL": settings.resolved_log_url(),
            "HITSTREAM_STORE_URL": settings.resolved_store_url(),
            "HITSTREAM_FANOUT_URL": f"relay://{self.fanout_socket}",
            "HITSTREAM_DEMO": "false",
            "HITSTREAM_ALERT_RULES": "",  # alerting stays in the parent (the alerts API)
            "HITSTREAM_LOG_LEVEL": settings.log_level,
        }

    def spawn(self) -> None:
        """Start the child (from the event loop's thread: the death signal follows the
        thread that forked)."""
        command = [sys.executable, "-m", "hitstream.cli", "processor"]
        self.proc = subprocess.Popen(command, env=self.environment(), preexec_fn=_die_with_parent)
        log.info("processor process %d started", self.proc.pid)

    def stopping(self) -> bool:
        return self._stopping

    async def start(self) -> None:
        """Watch the child (spawned already by ``spawn``, early: it starts while the parent
        imports and builds, or now)."""
        self._stopping = False
        if self.proc is None or self.proc.poll() is not None:
            self.spawn()
        self._watcher = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        """Restart the child whenever it exits while the unit runs."""
        failures = 0
        while not self.stopping():
            proc = self.proc
            assert proc is not None
            began = time.monotonic()
            code = await asyncio.to_thread(proc.wait)
            if self.stopping():
                return
            failures = 0 if time.monotonic() - began > 60 else failures + 1
            log.error("processor process %d exited with %s: restarting it", proc.pid, code)
            await self._backoff.wait(failures)
            if self.stopping():
                return
            self.restarts += 1
            self.spawn()

    async def wait_ready(self, every_s: float = 0.1) -> None:
        """Until the child's control socket answers (it lends the store once migrated), so
        that the parent starts as soon as it can, not at its backoff's next try."""
        waited = 0.0
        while True:
            try:
                _, writer = await asyncio.open_unix_connection(str(self.control))
            except OSError:  # not there yet, or a killed process's stale file
                await asyncio.sleep(every_s)
                waited += every_s
                if waited % 10 < every_s:
                    log.info("waiting for the processor process to open the store")
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def stop(self) -> None:
        """SIGTERM: the child drains the log into the store; killed if it takes too long."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.error("processor process %d did not stop in time: killed", proc.pid)
                proc.kill()
                await asyncio.to_thread(proc.wait)
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def metrics_text(self) -> str:
        """The child's ``/metrics`` ("" while it is not answering), fetched at most every
        ``METRICS_REUSE_S``: frequent scrapes must not make the unit busy."""
        import httpx

        now = time.monotonic()
        if now - self._metrics_at < METRICS_REUSE_S:
            return self._metrics
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per scrape
        token = self.settings.metrics_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if self._client is None:  # plain HTTP on loopback: no certificates to load
            self._client = httpx.AsyncClient(timeout=2.0, verify=False, trust_env=False)
        try:
            answer = await self._client.get(
                f"http://127.0.0.1:{self.port}/metrics", headers=headers
            )
        except httpx.HTTPError:
            return ""
        self._metrics = answer.text if answer.status_code == 200 else ""
        self._metrics_at = now
        return self._metrics


class Unit:
    """The parent's lifecycle: the fan-out relay, the child, then the parent's own runtime;
    stopped in the other order (intake stops before the child drains)."""

    def __init__(
        self,
        runtime: Lifecycle,
        child: ProcessorChild,
        fanout: Fanout,
        startup: Waiting | None = None,
    ) -> None:
        self.runtime = runtime
        self.child = child
        self.startup = startup
        from hitstream.fanout.relay import FanoutRelay

        self.relay = FanoutRelay(fanout, child.fanout_socket)

    async def start(self) -> None:
        await self.relay.start()
        await self.child.start()
        if self.startup is not None:  # what /readyz names meanwhile
            self.startup.waiting_for = "processor"
        await self.child.wait_ready()
        if self.startup is not None:
            self.startup.waiting_for = ""
        await self.runtime.start()

    async def stop(self) -> None:
        try:
            await self.runtime.stop()
        finally:
            await self.child.stop()
            await self.relay.close()
