"""Row 4 of issue 11: ``hitstream serve`` draining a backlog from its SQLite log into DuckDB.

The backlog is made once and kept: ``--drain-events`` events (default 1 M) of 30 days of one
site's traffic through the real collector service, without HTTP (``benchmarks/fill.py``), in
``benchmarks/out/log-<N>/``; a later run reuses it. Visitor ids change daily in it, as the
collector makes them for events arriving in real time; a second backlog of the same events,
``log-<N>-30d/``, keeps one id per visitor for the 30 days (identified users: a visitor's
rollup chains then span its whole history, which each write touching it reloads), drained
as its own case ("drain-30d"). Each repetition copies that log into a
fresh data folder (no store yet), starts ``serve`` and samples
``hitstream_events_processed_total`` until every event is handled: events/s, the store's write
time per batch by tenth of the work, and the server's own CPU per event over the drain.

The baselines, in the same run, interleaved: the same drain with
``HITSTREAM_STORE_ROLLUPS=false`` (the store keeps no rollups: its write path before issue 11
point 4), and the DuckDB store alone (keeping rollups) taking the same number of events
(``store_bench.generate``, batches of 5,000 with their visits, one transaction each, straight
through ``DuckDBStore.write`` in a child process): the ceiling the store's write path sets
with no log, decoding, pipeline or sessions in front of it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.fill import fill, log_count, reuse
from benchmarks.harness import OUT, median, scratch
from benchmarks.proc import Window
from benchmarks.profile import Recorder, summarize
from benchmarks.stats_latency import serve, stop, wait_processed

SEED = 20261121

_CEILING = """
import asyncio, json, sys, time, tempfile
from pathlib import Path
from benchmarks.store_bench import generate, write_all
from hitstream.stores.duckdb import DuckDBStore

async def main(total):
    events, sessions = generate(total, seed=11)
    with tempfile.TemporaryDirectory() as folder:
        store = DuckDBStore(Path(folder) / "ceiling.duckdb")
        await store.start()
        cpu0, began = time.process_time(), time.perf_counter()
        took = await write_all(store, events, sessions, 5000)
        wall, cpu = time.perf_counter() - began, time.process_time() - cpu0
        await store.close()
    print(json.dumps({"events": total, "seconds": round(wall, 1),
                      "events_per_s": round(total / wall), "cpu_s": round(cpu, 1),
                      "cpu_us_per_event": round(cpu / total * 1e6, 1),
                      "write_ms_median": round(sorted(took)[len(took) // 2] * 1000, 1)}))

asyncio.run(main(int(sys.argv[1])))
"""


def kept_log(events: int, *, daily_ids: bool = True) -> Path:
    """The kept backlog folder for ``events`` events, filled first if missing (``daily_ids``:
    visitor ids change daily, as the collector makes them in real time; else one id per
    visitor for the 30 days, as identified users have)."""
    ids = "daily" if daily_ids else "one for 30 days"
    folder = OUT / (f"log-{events}" if daily_ids else f"log-{events}-30d")
    marker = folder / "manifest.json"
    if (
        marker.exists()
        and json.loads(marker.read_text()).get("visitor_ids") == ids
        and log_count(folder) == events
    ):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("log.sqlite3", "log.sqlite3-wal", "log.sqlite3-shm", "salts.json"):
        (folder / name).unlink(missing_ok=True)
    print(f"filling the backlog {folder} with {events:,} events (once) ...", flush=True)
    info = fill(folder, events, SEED, int(time.time() * 1000), 2, daily_ids=daily_ids)
    marker.write_text(json.dumps({"seed": SEED, **info}, indent=2) + "\n")
    return folder


def drain(
    source: Path, events: int, profile: Path | None = None, *, rollups: bool = True
) -> dict[str, Any]:
    """``rollups``: False drains with ``HITSTREAM_STORE_ROLLUPS=false`` (the store keeps no
    rollups: the write path before issue 11 point 4, the baseline of the same run)."""
    with scratch("hitstream-drain-", keep=False) as workdir:
        data_dir = workdir / "data"
        data_dir.mkdir()
        reuse(source, data_dir, events)
        env = {} if rollups else {"HITSTREAM_STORE_ROLLUPS": "false"}
        server = serve(data_dir, cache_entries=0, extra_env=env).start(timeout=120)
        assert server.proc is not None
        try:
            window = Window(server.proc.pid).start()
            recorder = Recorder(server.proc.pid, profile, 30).start() if profile else None
            processing = wait_processed(server.url, events, 1800)
            window.stop()
            if recorder is not None:
                recorder.wait()
        finally:
            stop(server)
    handled = processing["processed"] + processing["dropped"] - processing["done_at_first_sample"]
    processing.update(window.figures(handled))
    processing["ok"] = processing["dropped"] == 0 and processing["processed"] == events
    return processing


def ceiling(events: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", _CEILING, str(events)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def row(args: Any) -> dict[str, Any]:
    events = args.drain_events
    source = kept_log(events)
    long_lived = kept_log(events, daily_ids=False)
    runs: list[dict[str, Any]] = []
    for repeat in range(0 if args.profile_only else args.repeats):
        kinds = ("drain", "drain-30d", "no-rollups", "ceiling")
        for kind in kinds if repeat % 2 == 0 else kinds[::-1]:
            if kind == "ceiling":
                result = ceiling(events)
            else:
                backlog = long_lived if kind == "drain-30d" else source
                result = drain(backlog, events, rollups=kind != "no-rollups")
            result.update({"kind": kind, "repeat": repeat})
            runs.append(result)
            print(
                f"row 4 #{repeat} {kind:8} {result['events_per_s']:>8,} events/s "
                f"CPU {result.get('cpu_us_per_event', '-')} µs/event",
                flush=True,
            )
    out: dict[str, Any] = {
        "row": 4,
        "title": "processor into DuckDB (serve draining a backlog)",
        "previous": "12,000-16,000 events/s",
        "goal": ">= 50,000 events/s",
        "backlog": str(source),
        "backlog_30d_ids": str(long_lived),
        "runs": runs,
    }
    if runs:
        out["summary"] = _summary(runs)
    if args.profile:
        for tag, backlog in (("drain", source), ("drain-30d", long_lived)):
            path = args.out_dir / f"profile-row4-{tag}-{args.stamp}.txt"
            run = drain(backlog, events, profile=path)
            found = summarize(path, threads_cpu_s=run["threads_cpu_s"]) if path.exists() else None
            out.setdefault("profiles", {})[tag] = {"run": run, "summary": found}
    return out


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    drains = [r for r in runs if r["kind"] == "drain"]
    long_lived = [r for r in runs if r["kind"] == "drain-30d"]
    plain = [r for r in runs if r["kind"] == "no-rollups"]
    ceilings = [r for r in runs if r["kind"] == "ceiling"]
    summary = {
        "no_rollups_events_per_s": median([float(r["events_per_s"]) for r in plain]),
        "no_rollups_cpu_us_per_event": median([float(r["cpu_us_per_event"]) for r in plain]),
        "drain_events_per_s": median([float(r["events_per_s"]) for r in drains]),
        "drain_cpu_us_per_event": median([float(r["cpu_us_per_event"]) for r in drains]),
        "drain_main_thread_cpu_us_per_event": median(
            [float(r["main_thread_cpu_us_per_event"]) for r in drains]
        ),
        "drain_core_percent": median([float(r["core_percent"]) for r in drains]),
        "drain_30d_ids_events_per_s": median([float(r["events_per_s"]) for r in long_lived]),
        "drain_30d_ids_cpu_us_per_event": median(
            [float(r["cpu_us_per_event"]) for r in long_lived]
        ),
        "store_alone_events_per_s": median([float(r["events_per_s"]) for r in ceilings]),
        "store_alone_cpu_us_per_event": median([float(r["cpu_us_per_event"]) for r in ceilings]),
        "all_ok": all(r["ok"] for r in drains + long_lived + plain),
    }
    summary["drain_over_store_alone"] = round(
        summary["drain_events_per_s"] / summary["store_alone_events_per_s"], 3
    )
    return summary
