"""Run wrk with ``ingest.lua`` and turn its summary into one ``Run`` of a benchmark.

wrk is the load generator because it is a separate C process that costs the shared cores
little per request; ``ingest.lua`` prints its summary as one JSON line that this module reads.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LUA = Path(__file__).resolve().parent / "ingest.lua"
INSTALL_HINT = "wrk is not installed: apt-get install -y wrk (Debian/Ubuntu package 'wrk')"


@dataclass(frozen=True)
class Load:
    """How wrk loads a server: bounded by ``duration_s`` and by ``max_requests``."""

    duration_s: int = 10
    connections: int = 16
    threads: int = 1
    max_requests: int = 300_000
    delay_ms: int = 0
    """Paced mode: each connection waits this long after an answer (0: as fast as it can)."""


@dataclass
class Run:
    """One wrk run against one target; ``check`` holds what was verified afterwards."""

    target: str
    scenario: str
    repeat: int
    events_per_request: int
    requests: int
    duration_s: float
    requests_per_s: float
    events_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    capped: bool
    """The run reached ``max_requests``: its rate is wrong (wrk's clock runs to the end)."""
    check: dict[str, Any] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """Every request answered 2xx, no socket error, and the cap was not reached."""
        return self.non_2xx == 0 and self.socket_errors == 0 and not self.capped


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def _command(wrk: str, url: str, site: str, batch: int, load: Load) -> list[str]:
    return [
        wrk,
        f"-t{load.threads}",
        f"-c{load.connections}",
        f"-d{load.duration_s}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        site,
        str(batch),
        str(load.max_requests),
        str(load.threads),
    ]


def _env(load: Load) -> dict[str, str] | None:
    return {**os.environ, "BENCH_DELAY_MS": str(load.delay_ms)} if load.delay_ms else None


def _summary(stdout: str, stderr: str, code: int | None, load: Load) -> dict[str, Any]:
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            summary: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            summary["cap"] = load.max_requests
            return summary
    raise RuntimeError(f"wrk printed no summary (exit {code}): {stderr[-2000:]}")


def run_wrk(wrk: str, url: str, site: str, batch: int, load: Load) -> dict[str, Any]:
    """One wrk run; its ``done()`` summary as a dict (latencies in microseconds)."""
    done = subprocess.run(
        _command(wrk, url, site, batch, load),
        capture_output=True,
        text=True,
        timeout=load.duration_s + 60,
        check=False,
        env=_env(load),
    )
    return _summary(done.stdout, done.stderr, done.returncode, load)


class Background:
    """wrk running beside a measurement: bounded by its own duration and cap, or stopped
    early with ``finish`` (SIGINT: wrk stops and still prints its summary)."""

    def __init__(self, wrk: str, url: str, site: str, batch: int, load: Load) -> None:
        self.load = load
        self.batch = batch
        self.proc = subprocess.Popen(
            _command(wrk, url, site, batch, load),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(load),
        )

    def finish(self) -> dict[str, Any]:
        """Stop wrk now (if it still runs) and return its summary."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self._collect(60)

    def finish_when_done(self) -> dict[str, Any]:
        """Wait for wrk to end by itself (its duration or cap) and return its summary."""
        return self._collect(self.load.duration_s + 120)

    def _collect(self, timeout: float) -> dict[str, Any]:
        stdout, stderr = self.proc.communicate(timeout=timeout)
        summary = _summary(stdout, stderr, self.proc.returncode, self.load)
        seconds = summary["duration_us"] / 1e6
        summary["events_per_s"] = round(summary["requests"] * self.batch / seconds, 1)
        return summary


def paced(rate: float, duration_s: int, connections: int = 0) -> Load:
    """A ``Load`` that sends about ``rate`` requests per second: enough connections that each
    waits at least 100 ms between requests (so an answer's own time shortens the period by
    little), each delayed ``connections * 1000 / rate`` ms."""
    if connections <= 0:
        connections = max(1, min(64, round(rate / 10)))
    delay = max(1, round(connections * 1000 / rate))
    cap = int(rate * duration_s * 1.5) + connections + 10
    return Load(duration_s, connections, 1, cap, delay)


def to_run(target: str, scenario: str, repeat: int, batch: int, wrk: dict[str, Any]) -> Run:
    seconds = wrk["duration_us"] / 1e6
    latency = wrk["latency_us"]
    errors = wrk["errors"]
    return Run(
        target=target,
        scenario=scenario,
        repeat=repeat,
        events_per_request=batch,
        requests=wrk["requests"],
        duration_s=round(seconds, 3),
        requests_per_s=round(wrk["requests"] / seconds, 1),
        events_per_s=round(wrk["requests"] * batch / seconds, 1),
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        non_2xx=errors["status"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        capped=wrk["requests"] >= wrk["cap"] * 0.98,
    )
