"""What every fault scenario does: roles, a steady load from another process, the fault, the tally.

A scenario starts hitstream roles as separate processes, starts ``tests.load_process`` against
a collector (a steady, bounded rate; every id answered 202 is recorded), injects one fault
while the load runs, heals it, and then compares every id answered 202 with the store: none
missing, none twice, nothing stored that nobody sent. The same processes must keep running
throughout (no restart), ``/readyz`` is watched the whole time, and a probe event sent once
the fault is healed gives the recovery time (healed -> a new event is in the store).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hitstream.services.collector import client_event_id
from tests.server import ServerProcess


def outage(default_s: float) -> float:
    """How long a fault lasts: short by default (the tier runs in the test command), longer
    on demand (``HITSTREAM_FAULTS_OUTAGE_S=25`` repeats issue 8's 25-second outages)."""
    return float(os.environ.get("HITSTREAM_FAULTS_OUTAGE_S", default_s))


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, every: float = 0.1, *, fail: bool = True
) -> bool:
    """Wait until ``check()`` holds (errors count as "not yet"). Past ``timeout``: fail
    naming ``what``, or (``fail=False``) return False and let a precise assertion follow."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except Exception:  # the thing checked may itself be down or restarting
            pass
        if time.monotonic() > deadline:
            if fail:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            return False
        time.sleep(every)


class Roles:
    """hitstream role processes sharing one environment; each gets its own data folder."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = {"HITSTREAM_LOG_LEVEL": "info", "HITSTREAM_INGEST_RATE_PER_IP": "0", **env}
        self.started: list[ServerProcess] = []
        self.pids: dict[str, int] = {}

    def start(self, command: str, name: str | None = None, **extra: str) -> ServerProcess:
        name = name or command
        process = ServerProcess(
            self.folder / name, env={**self.env, **extra}, command=command
        ).start(timeout=90)
        assert process.proc is not None
        self.started.append(process)
        self.pids[name] = process.proc.pid
        return process

    def assert_all_alive(self, *, except_: Iterable[ServerProcess] = ()) -> None:
        """Recovery without a restart: every role process is the one started at the top."""
        skip = {id(p) for p in except_}
        for process in self.started:
            if id(process) in skip:
                continue
            assert process.proc is not None
            assert process.proc.poll() is None, (
                f"{process.command} exited ({process.proc.returncode}): {process.output()}"
            )

    def stop_all(self) -> None:
        for process in reversed(self.started):
            try:
                if process.proc is not None and process.proc.poll() is None:
                    process.terminate(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            finally:
                process.kill()


@dataclass
class Load:
    """``tests.load_process`` against one collector, at a steady rate until told to stop."""

    out: Path
    process: subprocess.Popen[bytes]
    site: str

    @classmethod
    def start(
        cls, url: str, out: Path, site: str, *, rate: float | None = None, seconds: float = 180
    ) -> Load:
        """``rate``: events/s (default 200, or ``HITSTREAM_FAULTS_RATE``), in batches of 10
        from 3 threads, for at most ``seconds`` (``stop`` ends it sooner)."""
        rate = rate or float(os.environ.get("HITSTREAM_FAULTS_RATE", 200))
        command = [sys.executable, "-m", "tests.load_process", url, str(out), str(seconds)]
        command += ["10", "3", str(10**9), site, "--rate", str(rate)]
        command += ["--until-file", str(out.with_suffix(".stop"))]
        process = subprocess.Popen(command)
        return cls(out, process, site)

    def answered(self) -> list[str]:
        if not self.out.exists():
            return []
        return [x for x in self.out.read_text().splitlines() if x and x != "done"]

    def pause(self) -> None:
        self.process.send_signal(19)  # SIGSTOP: not a request leaves until SIGCONT

    def resume(self) -> None:
        self.process.send_signal(18)  # SIGCONT

    def stop(self) -> None:
        self.out.with_suffix(".stop").touch()
        assert self.process.wait(60) == 0, "the load process failed"
        assert self.out.read_text().endswith("done\n")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def in_doubt(self) -> set[str]:
        path = Path(f"{self.out}.indoubt")
        return set(path.read_text().split()) if path.exists() else set()

    def responses(self) -> list[dict[str, Any]]:
        path = Path(f"{self.out}.responses")
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]


@dataclass
class ReadyWatch:
    """Polls ``/readyz`` of some roles in the background, one thread per role (a role whose
    check waits on a part that is down does not delay the others' samples). Each sample is
    (sent, answered, role, status, failing): the answer describes the role at some moment
    between the two, so the questions below ask whether a sample's span meets a window (a
    check that waited two seconds on a broker that is down answers after the moment it saw)."""

    roles: dict[str, ServerProcess]
    samples: list[tuple[float, float, str, int, tuple[str, ...]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> ReadyWatch:
        for name, process in self.roles.items():
            thread = threading.Thread(target=self._run, args=(name, process), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, name: str, process: ServerProcess) -> None:
        with httpx.Client(timeout=15) as client:
            while not self._stop.is_set():
                sent = time.time()
                try:
                    answer = client.get(f"{process.url}/readyz")
                    checks = answer.json().get("checks", {})
                    failing = tuple(sorted(k for k, v in checks.items() if not v["ok"]))
                    self.samples.append((sent, time.time(), name, answer.status_code, failing))
                except (httpx.HTTPError, ValueError):
                    self.samples.append((sent, time.time(), name, 0, ()))
                self._stop.wait(0.2)

    def _meeting(self, role: str, since: float, until: float) -> list[tuple[int, tuple[str, ...]]]:
        """(status, failing) of the role's samples whose span meets [since, until]."""
        return [
            (status, failing)
            for sent, answered, name, status, failing in list(self.samples)
            if name == role and sent <= until and answered >= since
        ]

    def saw_unready(self, role: str, part: str, since: float, until: float) -> bool:
        return any(
            status == 503 and part in failing
            for status, failing in self._meeting(role, since, until)
        )

    def saw_degraded(self, role: str, part: str, since: float, until: float) -> bool:
        """Ready (200) while naming an optional part as down."""
        return any(
            status == 200 and part in failing
            for status, failing in self._meeting(role, since, until)
        )

    def always_ready(self, role: str, since: float, until: float) -> bool:
        seen = self._meeting(role, since, until)
        return bool(seen) and all(status == 200 for status, _ in seen)

    def ready_now(self, role: str) -> bool:
        """The latest answer is 200 with every part, optional ones too, answering again."""
        latest = [s for s in list(self.samples) if s[2] == role]
        return bool(latest) and latest[-1][3] == 200 and not latest[-1][4]


def send_probe(collector: ServerProcess, site: str, timeout: float = 60) -> str:
    """One event, resent until answered 202; returns its id (computed like the collector)."""
    key = f"probe-{uuid.uuid4().hex[:12]}"
    body = {"site_id": site, "path": "/probe", "event_id": key}
    headers = {
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    }

    def accepted() -> bool:
        return (
            httpx.post(
                f"{collector.url}/api/v1/events", json=body, headers=headers, timeout=15
            ).status_code
            == 202
        )

    wait_for("a probe event answered 202", accepted, timeout, every=0.1)
    return client_event_id(site, key)


@dataclass
class Tally:
    """The comparison the issue asks for, and the figures docs/reliability.md reports."""

    fault: str
    answered: list[str]
    stored: list[str]
    in_doubt: set[str]
    probes: set[str]
    responses: list[dict[str, Any]]
    recovery_s: float | None = None
    outage_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> set[str]:
        return set(self.answered) - set(self.stored)

    @property
    def duplicated(self) -> int:
        return len(self.stored) - len(set(self.stored))

    @property
    def unexpected(self) -> set[str]:
        return set(self.stored) - set(self.answered) - self.in_doubt - self.probes

    def statuses(self, since: float = 0, until: float = float("inf")) -> Counter[int]:
        return Counter(r["status"] for r in self.responses if since <= r["t"] <= until)

    def assert_exact(self) -> None:
        assert len(self.answered) > 0
        assert not self.lost, f"{len(self.lost)} of {len(self.answered)} events answered 202 lost"
        assert self.duplicated == 0, f"{self.duplicated} events stored twice"
        assert not self.unexpected, f"{len(self.unexpected)} stored events nobody sent"
        server_errors = {s: n for s, n in self.statuses().items() if s >= 500 and s != 503}
        assert not server_errors, f"server errors answered: {server_errors}"
        refused = [r for r in self.responses if r["status"] == 503]
        assert all(r.get("retry_after") for r in refused), "a 503 without Retry-After"

    def record(self) -> None:
        """Append this run's figures to ``$HITSTREAM_FAULTS_REPORT`` (JSON lines), if set."""
        path = os.environ.get("HITSTREAM_FAULTS_REPORT")
        if not path:
            return
        statuses = self.statuses()
        row = {
            "fault": self.fault,
            "acknowledged": len(set(self.answered)),
            "lost": len(self.lost),
            "duplicated": self.duplicated,
            "answers": {str(k): v for k, v in sorted(statuses.items())},
            "outage_s": None if self.outage_s is None else round(self.outage_s, 1),
            "recovery_s": None if self.recovery_s is None else round(self.recovery_s, 1),
            **self.extra,
        }
        with open(path, "a") as out:
            out.write(json.dumps(row) + "\n")


def longest_gap_without_202(responses: list[dict[str, Any]], since: float) -> float:
    """What clients saw: the longest time between two 202 answers after ``since``."""
    times = sorted(r["t"] for r in responses if r["status"] == 202 and r["t"] >= since)
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)
