"""Ingest throughput of a real ``hitstream serve``, measured with wrk against a bare ceiling.

Usage (from the repository root; wrk comes from Debian's ``wrk`` package)::

    .venv/bin/python -m benchmarks.ingest               # 2 scenarios x 3 targets x 3 x 10 s
    .venv/bin/python -m benchmarks.ingest --repeats 1 --duration 5 --scenarios single
    .venv/bin/python -m benchmarks.ingest --targets hitstream,baseline

Scenarios: ``single`` (one event per request) and ``batch`` (a JSON array of 100 events).
Targets: ``hitstream`` (``hitstream serve``: collector, processor and stats in one process),
``collector`` (``hitstream collector``: the collector role alone, which tells the collector's
cost from that of the processor sharing its process) and ``baseline``
(``benchmarks/baseline_app.py``: the HTTP stack's ceiling). Each repetition runs every target
back to back, reversing the order on odd repetitions, each on a fresh server (and data
folder). The load comes from wrk, a separate process, over loopback only, bounded by
``--duration`` and ``--max-requests``.

Checked after every hitstream run: wrk saw no non-2xx answer and no socket error, and once the
processor has drained the log, the store holds exactly the events the collector acknowledged
(``hitstream_events_accepted_total``). The processor's throughput is read from
``hitstream_events_processed_total``, sampled every 0.25 s from the first to the last event it
stored. After a collector run, its event log holds exactly what it acknowledged. Figures
quoted are medians over repetitions; ratio = target / baseline events/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from tests.server import ServerProcess

from benchmarks.fill import log_count
from benchmarks.harness import (
    baseline_server,
    collector_server,
    machine,
    median,
    scratch,
    source_digest,
    write_result,
)
from benchmarks.sampling import Sampler, processor_rate, settled
from benchmarks.wrk import Load, Run, require_wrk, run_wrk, to_run

SCENARIOS = {"single": 1, "batch": 100}
TARGETS = ("hitstream", "collector", "baseline")
Runner = Callable[[str, str, int, argparse.Namespace], Run]


def measure(
    wrk: str, target: str, scenario: str, repeat: int, url: str, site: str, args: argparse.Namespace
) -> Run:
    """One wrk run of ``scenario`` against ``url``, as a ``Run`` of ``target``."""
    batch = SCENARIOS[scenario]
    load = Load(args.duration, args.connections, args.threads, args.max_requests)
    return to_run(target, scenario, repeat, batch, run_wrk(wrk, url, site, batch, load))


def stored_events(client: httpx.Client, url: str, site: str) -> int:
    """Events the store holds for ``site`` (yesterday and today, so a run may cross midnight)."""
    today = datetime.now(UTC).date()
    params = {
        "site_id": site,
        "metrics": "events",
        "period": "custom",
        "from": (today - timedelta(days=1)).isoformat(),
        "to": today.isoformat(),
    }
    response = client.get(f"{url}/api/v1/stats/aggregate", params=params, timeout=30.0)
    response.raise_for_status()
    return int(response.json()["results"]["events"]["value"])


def _drained_at(sampler: Sampler, accepted: float, since: float, timeout: float) -> float | None:
    """When the processor had first handled all ``accepted`` events (sampled after ``since``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = sampler.latest()
        if last is not None and last[2] + last[3] >= accepted:
            break
        time.sleep(0.1)
    done = [t for t, _, p, d in sampler.samples if t > since and p + d >= accepted]
    return done[0] if done else None


def run_hitstream(wrk: str, scenario: str, repeat: int, args: argparse.Namespace) -> Run:
    with scratch("hitstream-ingest-", args.keep) as workdir:
        # wrk sends from one address as fast as it can: no per-address limit in this run
        env = {"HITSTREAM_LOG_LEVEL": "warning", "HITSTREAM_INGEST_RATE_PER_IP": "0"}
        server = ServerProcess(workdir / "data", env=env)
        try:
            return _load_hitstream(wrk, server.start(60), scenario, repeat, args)
        finally:
            try:
                server.terminate(timeout=120)
            finally:
                server.kill()
            log = server.output().splitlines()
            errors = [line for line in log if "ERROR" in line or "Traceback" in line]
            if errors:
                print(f"  server log has errors: {errors[:5]}", file=sys.stderr)


def _load_hitstream(
    wrk: str, server: ServerProcess, scenario: str, repeat: int, args: argparse.Namespace
) -> Run:
    batch = SCENARIOS[scenario]
    site = f"ingest-{scenario}-{repeat}.bench"
    server.add_site(site)
    sampler = Sampler(server.url)
    sampler.start()
    try:
        run = measure(wrk, "hitstream", scenario, repeat, server.url, site, args)
        ended = time.monotonic()
        final = settled(server.url, "hitstream_events_accepted_total")
        drained_at = _drained_at(sampler, final, ended, args.drain_timeout)
    finally:
        sampler.stop()
    last = sampler.latest()
    assert last is not None, "no /metrics sample"
    with httpx.Client(headers=server.headers) as client:
        stored = stored_events(client, server.url, site)
    accepted, processed, dropped = int(final), int(last[2]), int(last[3])
    run.check = {
        "acknowledged_by_wrk": run.requests * batch,
        "accepted_by_server": accepted,
        "processed": processed,
        "dropped": dropped,
        "stored": stored,
        "drain_s": round(drained_at - ended, 2) if drained_at is not None else None,
        "max_backlog": int(max(a - p - d for _, a, p, d in sampler.samples)),
        "processor_events_per_s": processor_rate(sampler.samples),
        "ok": run.clean and stored == accepted >= run.requests * batch and dropped == 0,
    }
    return run


def run_collector(wrk: str, scenario: str, repeat: int, args: argparse.Namespace) -> Run:
    """The collector role alone: what ingest costs without a processor in the process."""
    batch = SCENARIOS[scenario]
    with scratch("hitstream-collector-", args.keep) as workdir:
        server = collector_server(workdir / "data", workdir / "collector.log")
        try:
            site = f"collector-{scenario}-{repeat}.bench"
            run = measure(wrk, "collector", scenario, repeat, server.url, site, args)
            accepted = int(settled(server.url, "hitstream_events_accepted_total"))
        finally:
            server.stop()
        logged = log_count(workdir / "data")
    run.check = {
        "acknowledged_by_wrk": run.requests * batch,
        "accepted_by_server": accepted,
        "in_log": logged,
        "ok": run.clean and logged == accepted >= run.requests * batch,
    }
    return run


def run_baseline(wrk: str, scenario: str, repeat: int, args: argparse.Namespace) -> Run:
    with scratch("hitstream-baseline-", keep=False) as workdir:
        server = baseline_server(workdir / "baseline.log")
        try:
            site = f"baseline-{scenario}.bench"
            run = measure(wrk, "baseline", scenario, repeat, server.url, site, args)
        finally:
            server.stop()
    run.check = {"ok": run.clean}
    return run


RUNNERS: dict[str, Runner] = {
    "hitstream": run_hitstream,
    "collector": run_collector,
    "baseline": run_baseline,
}


def summarize(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per scenario and target: medians over repetitions; ratios to the baseline."""
    summary: dict[str, dict[str, Any]] = {}
    for scenario in dict.fromkeys(r.scenario for r in runs):
        row: dict[str, Any] = {}
        for target in TARGETS:
            mine = [r for r in runs if r.scenario == scenario and r.target == target]
            if not mine:
                continue
            row[target] = {
                "events_per_s": median([r.events_per_s for r in mine]),
                "requests_per_s": median([r.requests_per_s for r in mine]),
                "p50_ms": median([r.p50_ms for r in mine]),
                "p99_ms": median([r.p99_ms for r in mine]),
                "all_ok": all(r.check.get("ok") for r in mine),
            }
            rates = [r.check.get("processor_events_per_s") for r in mine]
            known = [float(x) for x in rates if x is not None]
            if known:
                row[target]["processor_events_per_s"] = median(known)
        for target in ("hitstream", "collector"):
            if target in row and "baseline" in row:
                ceiling = row["baseline"]["events_per_s"]
                row[target]["ratio"] = round(row[target]["events_per_s"] / ceiling, 3)
        summary[scenario] = row
    return summary


def markdown(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| scenario | target | events/s | req/s | p50 ms | p99 ms | / baseline "
        "| processor events/s | checks |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for scenario, row in summary.items():
        for target, t in row.items():
            proc = t.get("processor_events_per_s")
            ratio = t.get("ratio")
            lines.append(
                f"| {scenario} | {target} | {t['events_per_s']:,.0f} | {t['requests_per_s']:,.0f}"
                f" | {t['p50_ms']:.2f} | {t['p99_ms']:.2f} | {f'{ratio:.3f}' if ratio else '-'}"
                f" | {f'{proc:,.0f}' if proc else '-'} | {'ok' if t['all_ok'] else 'FAILED'} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenarios", default="single,batch", help="comma list: single,batch")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma list of targets")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--max-requests", type=int, default=300_000, help="cap per run; fails")
    parser.add_argument("--drain-timeout", type=float, default=180.0)
    parser.add_argument("--keep", action="store_true", help="keep hitstream data folders")
    args = parser.parse_args(argv)
    for option, known in (("scenarios", SCENARIOS), ("targets", TARGETS)):
        unknown = set(getattr(args, option).split(",")) - set(known)
        if unknown:
            parser.error(f"unknown {option} {sorted(unknown)}; use {', '.join(known)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    wrk = require_wrk()
    before = machine()
    targets = args.targets.split(",")
    runs: list[Run] = []
    for scenario in args.scenarios.split(","):
        for repeat in range(args.repeats):
            for target in targets if repeat % 2 == 0 else reversed(targets):
                run = RUNNERS[target](wrk, scenario, repeat, args)
                runs.append(run)
                print(
                    f"{scenario:6} #{repeat} {run.target:9} {run.events_per_s:>10,.0f} events/s"
                    f"  p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  {run.check}",
                    flush=True,
                )
    summary = summarize(runs)
    result = {
        "benchmark": "ingest",
        "command": " ".join(["python -m benchmarks.ingest", *sys.argv[1:]]),
        "settings": vars(args),
        "machine": before,
        "loadavg_after": Path("/proc/loadavg").read_text().strip(),
        "src_digest_after": source_digest(),
        "summary": summary,
        "runs": [asdict(r) for r in runs],
    }
    path = write_result("ingest", result)
    print(markdown(summary))
    print(f"results: {path}")
    if not all(r.check.get("ok") for r in runs):
        raise SystemExit("some runs failed their checks (see 'check' above)")


if __name__ == "__main__":
    main()
