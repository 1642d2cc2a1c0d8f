"""Row 7 of issue 11: what ``hitstream serve`` costs a quiet site, in CPU share of one core.

Paced wrk sends single events (``benchmarks/wrk.py`` ``paced``: each connection waits after
every answer) at 100 events/s to ``serve`` on an empty store and on a store holding 1 M events
(a kept copy of the data set's generator, ``benchmarks/out/duckdb-1m/``), and at 2 events/s;
``serve`` idle (no traffic) says what the process costs doing nothing. The same run measures,
at 100 requests/s, the collector role alone (what the processor adds is the difference) and
the bare Starlette endpoint (the HTTP stack's share). Per scenario and repetition: a fresh
server, 5 s of traffic to warm up (the first batches, lazy imports), then a window of
``--light-seconds``: the server's CPU share from ``/proc`` and CPU ms per event. Scenario order
rotates per repetition; figures are medians.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import dataset, targets
from benchmarks.harness import OUT, median, scratch
from benchmarks.proc import Window
from benchmarks.profile import Recorder, summarize
from benchmarks.wrk import Background, paced, require_wrk

SITE = "big.example"
SCENARIOS: dict[str, tuple[str, float, bool]] = {
    "serve, empty store, 100 events/s": ("serve", 100.0, False),
    "serve, 1 M events stored, 100 events/s": ("serve", 100.0, True),
    "serve, empty store, 2 events/s": ("serve", 2.0, False),
    "serve, empty store, idle": ("serve", 0.0, False),
    "collector role, 100 events/s": ("collector", 100.0, False),
    "bare Starlette, 100 requests/s": ("baseline", 100.0, False),
}
"""name -> (target, events per second, on the 1 M store)."""
WARMUP_S = 5
PROFILED = {
    "serve, empty store, 100 events/s": "serve-100-empty",
    "serve, 1 M events stored, 100 events/s": "serve-100-1m",
    "serve, empty store, 2 events/s": "serve-2-empty",
}
"""The scenarios ``--profile`` records, with their file name tags."""


def _writes(target: targets.Target) -> tuple[float, float]:
    """The processor's store writes so far: (count, seconds) from ``/metrics``."""
    if target.kind != "serve":
        return (0.0, 0.0)
    return (
        target.counter("hitstream_store_write_seconds_count"),
        target.counter("hitstream_store_write_seconds_sum"),
    )


def one(name: str, seconds: int, store_1m: Path, profile: Path | None = None) -> dict[str, Any]:
    kind, rate, big = SCENARIOS[name]
    wrk = require_wrk()
    with scratch("hitstream-light-", keep=False) as workdir:
        if big:
            dataset.working_copy(store_1m, workdir / "data")
        target = targets.start(kind, workdir, sites=[SITE])
        sender = None
        try:
            if rate > 0:
                load = paced(rate, WARMUP_S + seconds + 5)
                sender = Background(wrk, target.url, SITE, 1, load)
            time.sleep(WARMUP_S)
            accepted0 = target.counter("hitstream_events_accepted_total")
            writes0 = _writes(target)
            recorder = Recorder(target.pid, profile, seconds).start() if profile else None
            window = Window(target.pid).start()
            time.sleep(seconds)
            window.stop()
            accepted = target.counter("hitstream_events_accepted_total") - accepted0
            writes = [b - a for a, b in zip(writes0, _writes(target), strict=True)]
            if recorder is not None:
                recorder.wait()
            sent = sender.finish() if sender is not None else None
        finally:
            if sender is not None and sender.proc.poll() is None:
                sender.finish()
            target.stop()
    if kind == "baseline" and sent is not None:
        accepted = sent["requests"] / (sent["duration_us"] / 1e6) * window.wall_s
    result: dict[str, Any] = {"scenario": name, **window.figures()}
    result["events_in_window"] = round(accepted)
    result["events_per_s"] = round(accepted / window.wall_s, 1)
    if accepted:
        result["cpu_ms_per_event"] = round(window.cpu_s / accepted * 1000, 2)
    if writes[0]:
        result["store_writes_per_s"] = round(writes[0] / window.wall_s, 1)
        result["events_per_store_write"] = round(accepted / writes[0], 1)
        result["store_write_ms_mean"] = round(writes[1] / writes[0] * 1000, 1)
    if sent is not None:
        result["sender"] = {
            "non_2xx": sent["errors"]["status"],
            "p99_ms": sent["latency_us"]["p99"] / 1000,
        }
    return result


def row(args: Any) -> dict[str, Any]:
    store_1m = OUT / "duckdb-1m"
    dataset.ensure_duckdb(store_1m, 1_000_000)
    names = list(SCENARIOS)
    runs: list[dict[str, Any]] = []
    for repeat in range(0 if args.profile_only else args.repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            result = one(name, args.light_seconds, store_1m)
            result["repeat"] = repeat
            runs.append(result)
            print(
                f"row 7 #{repeat} {name:42} {result['core_percent']:6.1f} % core "
                f"{result.get('cpu_ms_per_event', '-')} ms/event at {result['events_per_s']}/s "
                f"load {result['load_start']}",
                flush=True,
            )
    summary: dict[str, Any] = {}
    for name in names if runs else []:
        mine = [r for r in runs if r["scenario"] == name]
        summary[name] = {
            "core_percent": median([r["core_percent"] for r in mine]),
            "main_thread_core_percent": median(
                [r["main_thread_cpu_s"] / r["wall_s"] * 100 for r in mine]
            ),
            "events_per_s": median([r["events_per_s"] for r in mine]),
        }
        for key in ("cpu_ms_per_event", "store_writes_per_s", "events_per_store_write"):
            values = [r[key] for r in mine if key in r]
            if values:
                summary[name][key] = median(values)
    out: dict[str, Any] = {
        "row": 7,
        "title": "hitstream serve under light steady traffic (single events)",
        "previous": "85-112 % of a core at 100 events/s (~10 ms CPU per event); ~36 ms per event at 2 events/s",  # noqa: E501
        "goal": "<= 10 % of a core at 100 events/s",
        "window_s": args.light_seconds,
        "runs": runs,
        "summary": summary,
    }
    if args.profile:
        out["profile"] = {}
        for name, tag in PROFILED.items():
            path = args.out_dir / f"profile-row7-{tag}-{args.stamp}.txt"
            run = one(name, args.light_seconds, store_1m, profile=path)
            found = summarize(path, threads_cpu_s=run["threads_cpu_s"]) if path.exists() else None
            out["profile"][name] = {"run": run, "summary": found}
    return out
