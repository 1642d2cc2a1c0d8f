"""The servers a scale benchmark loads, started alike: the bare ceiling, the collector role,
``hitstream serve``, each on a fresh loopback port (and data folder), with its pid at hand so
its own CPU and memory counters can be read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tests.server import ServerProcess

from benchmarks.harness import baseline_server, collector_server
from benchmarks.sampling import scrape, settled

KINDS = ("baseline", "collector", "serve")


@dataclass
class Target:
    """A running server: where it listens, its pid, and how to stop it."""

    kind: str
    url: str
    port: int
    pid: int
    data_dir: Path | None
    stop: Callable[[], None] = field(repr=False)
    output: Callable[[], str] = field(repr=False)

    def counter(self, name: str) -> float:
        """A counter from its ``/metrics`` (0 for the baseline, which has none)."""
        if self.kind == "baseline":
            return 0.0
        with httpx.Client(timeout=60.0) as client:  # a busy shared box answers slowly
            return scrape(client, self.url).get(name, 0.0)

    def accepted(self) -> float:
        """Events it acknowledged, once the count stops moving (answers still in flight)."""
        if self.kind == "baseline":
            return 0.0
        return settled(self.url, "hitstream_events_accepted_total", quiet_s=0.5)


def registered(sites: list[str] | None) -> dict[str, str]:
    """What a hitstream server needs to take a benchmark's load: its sites registered at start
    (``HITSTREAM_SITES``, public: their stats are read without a key) and no per-address rate
    limit (every request comes from 127.0.0.1)."""
    env = {"HITSTREAM_INGEST_RATE_PER_IP": "0"}
    if sites:
        env["HITSTREAM_SITES"] = json.dumps([{"site_id": s, "public": True} for s in sites])
    return env


def start(
    kind: str, workdir: Path, env: dict[str, str] | None = None, sites: list[str] | None = None
) -> Target:
    """Start a ``kind`` server in ``workdir`` (``serve`` keeps its data in ``workdir/data``),
    registering ``sites``."""
    env = {**registered(sites), **(env or {})}
    if kind == "baseline":
        service = baseline_server(workdir / "baseline.log")
        assert service.proc is not None
        return Target(
            kind, service.url, service.port, service.proc.pid, None, service.stop, service.output
        )
    if kind == "collector":
        service = collector_server(workdir / "data", workdir / "collector.log", env)
        assert service.proc is not None
        return Target(
            kind,
            service.url,
            service.port,
            service.proc.pid,
            workdir / "data",
            service.stop,
            service.output,
        )
    if kind == "serve":
        server = ServerProcess(workdir / "data", env={"HITSTREAM_LOG_LEVEL": "warning", **env})
        server.start(120)
        assert server.proc is not None

        def stop() -> None:
            try:
                server.terminate(timeout=180)
            finally:
                server.kill()

        return Target(
            kind, server.url, server.port, server.proc.pid, server.data_dir, stop, server.output
        )
    raise ValueError(f"unknown target {kind!r}; use one of {KINDS}")
