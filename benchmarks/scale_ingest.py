"""Rows 1-3 of issue 11: what ingest costs the server, per request and per event, against the
bare HTTP stack measured in the same run.

- row 1: the collector role, one event per request (16 connections): server CPU µs per request
  against ``baseline_app`` (a Starlette route that reads the body and answers 202);
- row 2: ``hitstream serve``, one event per request, 64 connections: events/s, CPU µs per event
  (during the load, and through the processor's drain of what was accepted), p99, against the
  baseline at 64 connections;
- row 3: the collector role, batches of 100 events: CPU µs per event against the baseline
  reading the same 100-event bodies.

Every repetition runs the target and its baseline back to back (order reversed on odd
repetitions), each on a fresh server, after a 1 s warm-up (lazy imports, first-use caches). CPU
is the server process's own utime + stime delta (``benchmarks/proc.py``) over wrk's run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import targets
from benchmarks.fill import log_count
from benchmarks.harness import median, scratch
from benchmarks.ingest import stored_events
from benchmarks.proc import Window
from benchmarks.profile import Recorder, summarize
from benchmarks.wrk import Load, require_wrk, run_wrk, to_run

ROWS: dict[int, dict[str, Any]] = {
    1: {
        "title": "collector role, one event per request: server CPU per request vs bare Starlette",
        "target": "collector",
        "batch": 1,
        "connections": 16,
        "previous": "382 µs vs 52 µs per request (7.3x)",
        "goal": "at most 1.5x the baseline",
    },
    2: {
        "title": "hitstream serve, one event per request, 64 connections",
        "target": "serve",
        "batch": 1,
        "connections": 64,
        "previous": "1,400-1,800 events/s per core; 540 µs CPU per event",
        "goal": ">= 8,000 events/s on the 2 cores, p99 <= 50 ms",
    },
    3: {
        "title": "collector role, batches of 100: CPU per event",
        "target": "collector",
        "batch": 100,
        "connections": 16,
        "previous": "28 µs CPU per event",
        "goal": "<= 5 µs per event",
    },
}


def one(
    wrk: str,
    kind: str,
    batch: int,
    load: Load,
    repeat: int,
    *,
    keep: bool = False,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One measured wrk run against a fresh ``kind`` server; with ``profile``, py-spy records
    the server during the run (its figures are then not comparable: sampling costs CPU)."""
    site = f"scale-{kind}-{batch}-{repeat}.bench"
    with scratch(f"hitstream-scale-{kind}-", keep) as workdir:
        target = targets.start(kind, workdir, sites=[site, f"warm-{site}"])
        try:
            run_wrk(wrk, target.url, f"warm-{site}", batch, Load(1, load.connections, 1, 50_000))
            before = target.accepted()
            recorder = Recorder(target.pid, profile, load.duration_s).start() if profile else None
            window = Window(target.pid).start()
            run = to_run(
                kind, f"batch{batch}", repeat, batch, run_wrk(wrk, target.url, site, batch, load)
            )
            window.stop()
            if recorder is not None:
                recorder.wait()
            result: dict[str, Any] = {
                "target": kind,
                "repeat": repeat,
                "events_per_s": run.events_per_s,
                "requests_per_s": run.requests_per_s,
                "requests": run.requests,
                "p50_ms": run.p50_ms,
                "p99_ms": run.p99_ms,
                **window.figures(run.requests, "request"),
            }
            result["cpu_us_per_event"] = round(window.cpu_s / (run.requests * batch) * 1e6, 2)
            result["events_per_s_per_core"] = (
                round(run.events_per_s / window.core_share) if window.core_share else None
            )
            result["check"] = _check(target, run.clean, run.requests * batch, before, window, site)
        finally:
            target.stop()
    return result


def _check(
    target: targets.Target, clean: bool, sent: int, before: float, window: Window, site: str
) -> dict[str, Any]:
    """No errors; what the server acknowledged reached its log (collector) or, once the
    processor drained it, its store (serve). For serve, the CPU from the start of the load to
    the end of the drain, per event: the whole cost of an event in that process."""
    check: dict[str, Any] = {"clean": clean, "ok": clean}
    if target.kind == "baseline":
        return check
    accepted = target.accepted() - before
    check["accepted"] = int(accepted)
    if target.kind == "collector":
        assert target.data_dir is not None
        logged = log_count(target.data_dir)
        check["in_log_incl_warmup"] = logged
        check["ok"] = clean and accepted >= sent and logged >= accepted
        return check
    deadline = time.monotonic() + 300
    total = target.counter("hitstream_events_accepted_total")
    while time.monotonic() < deadline:
        done = target.counter("hitstream_events_processed_total") + target.counter(
            "hitstream_events_dropped_total"
        )
        if done >= total:
            break
        time.sleep(0.1)
    load_wall_s = window.wall_s
    window.stop()  # again: now from the start of the load to the end of the drain
    dropped = target.counter("hitstream_events_dropped_total")
    with httpx.Client(timeout=60.0) as client:
        stored = stored_events(client, target.url, site)
    check.update(
        {
            "stored": stored,
            "dropped": int(dropped),
            "drain_s": round(window.wall_s - load_wall_s, 2),
            "cpu_s_through_drain": round(window.cpu_s, 2),
            "cpu_us_per_event_through_drain": round(window.cpu_s / accepted * 1e6, 1)
            if accepted
            else None,
        }
    )
    check["ok"] = clean and stored == accepted >= sent and dropped == 0
    return check


def row(number: int, args: Any) -> dict[str, Any]:
    """Rows 1, 2 or 3: ``args.repeats`` interleaved pairs of target and baseline."""
    spec = ROWS[number]
    wrk = require_wrk()
    load = Load(args.duration, spec["connections"], 1, args.max_requests)
    runs: list[dict[str, Any]] = []
    pair = [spec["target"], "baseline"]
    for repeat in range(0 if args.profile_only else args.repeats):
        for kind in pair if repeat % 2 == 0 else reversed(pair):
            result = one(wrk, kind, spec["batch"], load, repeat)
            runs.append(result)
            print(f"row {number} #{repeat} {kind:9} {_line(result)}", flush=True)
    out: dict[str, Any] = {
        "row": number,
        **spec,
        "settings": {"duration_s": args.duration, "repeats": args.repeats, "wrk_threads": 1},
        "runs": runs,
    }
    if runs:
        out["summary"] = summarize_runs(runs, spec["target"])
    if args.profile:
        path = args.out_dir / f"profile-row{number}-{spec['target']}-{args.stamp}.txt"
        profiled = one(wrk, spec["target"], spec["batch"], load, 99, profile=path)
        found = summarize(path, threads_cpu_s=profiled["threads_cpu_s"]) if path.exists() else None
        out["profile"] = {"run": profiled, "summary": found}
    return out


def _line(r: dict[str, Any]) -> str:
    return (
        f"{r['events_per_s']:>10,.0f} ev/s  p99 {r['p99_ms']:7.1f} ms  "
        f"CPU {r['cpu_us_per_request']:7.1f} µs/req {r['cpu_us_per_event']:7.2f} µs/ev  "
        f"{r['core_percent']:5.1f} % core  load {r['load_start']}  ok={r['check']['ok']}"
    )


def summarize_runs(runs: list[dict[str, Any]], target: str) -> dict[str, Any]:
    """Medians per target, the ratio of medians, and the median of the paired ratios (target
    over the baseline of the same repetition: machine drift falls on both)."""
    out: dict[str, Any] = {}
    for kind in (target, "baseline"):
        mine = [r for r in runs if r["target"] == kind]
        out[kind] = {
            key: median([float(r[key]) for r in mine])
            for key in (
                "events_per_s",
                "cpu_us_per_request",
                "cpu_us_per_event",
                "main_thread_cpu_us_per_request",
                "core_percent",
                "p50_ms",
                "p99_ms",
            )
        }
        out[kind]["all_ok"] = all(r["check"]["ok"] for r in mine)
        drains = [r["check"].get("cpu_us_per_event_through_drain") for r in mine]
        known = [float(d) for d in drains if d is not None]
        if known:
            out[kind]["cpu_us_per_event_through_drain"] = median(known)
        per_core = [r["events_per_s_per_core"] for r in mine if r["events_per_s_per_core"]]
        if per_core:
            out[kind]["events_per_s_per_core"] = median([float(x) for x in per_core])
    t, b = out[target], out["baseline"]
    out["cpu_ratio_of_medians"] = round(t["cpu_us_per_request"] / b["cpu_us_per_request"], 2)
    paired = []
    for repeat in sorted({r["repeat"] for r in runs}):
        mine = {r["target"]: r for r in runs if r["repeat"] == repeat}
        if target in mine and "baseline" in mine:
            base = mine["baseline"]["cpu_us_per_request"]
            paired.append(mine[target]["cpu_us_per_request"] / base)
    out["cpu_ratio_paired_median"] = round(median(paired), 2) if paired else None
    out["throughput_ratio"] = round(t["events_per_s"] / b["events_per_s"], 3)
    return out
