"""Issue 11, "Performance at real scale": every row of its table, with a baseline in the same run.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.scale --rows 1,2,3            # ingest: ~6 min
    .venv/bin/python -m benchmarks.scale --rows 4                # drain a backlog: ~8 min
    .venv/bin/python -m benchmarks.scale --rows 5                # DuckDB 10M queries: ~10 min
    .venv/bin/python -m benchmarks.scale --rows 6                # PostgreSQL 10M: ~25 min
    .venv/bin/python -m benchmarks.scale --rows 7,8,9            # light load, live, memory
    .venv/bin/python -m benchmarks.scale --rows soak             # 10-minute memory soak
    .venv/bin/python -m benchmarks.scale --rows 1,2,4,5,7 --profile   # + one py-spy run each

Rows (README.md says what each measures and how long it takes): 1 collector CPU per request
vs bare Starlette; 2 ``serve`` single events at 64 connections; 3 collector batches of 100;
4 processor draining a backlog into DuckDB; 5 DuckDB at 10 M events, every dashboard query
and the whole dashboard, cold and under 1,000 events/s; 6 the same on PostgreSQL; 7 ``serve``
under light steady traffic; 8 the live loop of open dashboards under 1,000 events/s; 9 memory
while ingesting with 10 M events stored; ``soak``: the same for 10 minutes.

The 10 M data sets are built once and kept (``benchmarks/dataset.py``): the DuckDB folder in
``benchmarks/out/duckdb-10m/``, the PostgreSQL database ``hitstream_bench_10m``. Every figure is
a median over ``--repeats`` (at least 3) with its baseline measured in the same run, and the
machine, the command, the load average and the code's digest go into one JSON file in
``benchmarks/out/scale-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import OUT, machine, source_digest, write_result
from benchmarks.proc import loadavg

ALL_ROWS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "soak")


def _runner(name: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    """The function measuring row ``name`` (imported on use: rows need different drivers)."""
    if name in ("1", "2", "3"):
        from benchmarks import scale_ingest

        return lambda args: scale_ingest.row(int(name), args)
    if name == "4":
        from benchmarks import scale_drain

        return scale_drain.row
    if name in ("5", "6"):
        from benchmarks import scale_queries

        return scale_queries.row5 if name == "5" else scale_queries.row6
    if name == "7":
        from benchmarks import scale_light

        return scale_light.row
    if name == "8":
        from benchmarks import scale_live

        return scale_live.row
    from benchmarks import scale_memory

    return scale_memory.row if name == "9" else scale_memory.soak


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", default="1,2,3,4,5,7,8,9", help="comma list: 1-9, soak")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per figure (>= 3)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per ingest run")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="wrk cap per run")
    parser.add_argument("--profile", action="store_true", help="one extra py-spy run per row")
    parser.add_argument(
        "--profile-only", action="store_true", help="only the py-spy run (rows 1-5, 7)"
    )
    parser.add_argument("--drain-events", type=int, default=1_000_000, help="row 4 backlog")
    parser.add_argument("--light-seconds", type=int, default=30, help="row 7 window per run")
    parser.add_argument("--live-seconds", type=int, default=30, help="row 8 window per run")
    parser.add_argument(
        "--live-cases",
        nargs="*",
        default=[],
        help='row 8 windows to run, by name ("0 dashboards", "1 dashboard, filtered" ...; '
        "default: all)",
    )
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument(
        "--no-dashboard", action="store_true", help="soak: no dashboard open (what it costs)"
    )
    parser.add_argument(
        "--trace-python",
        action="store_true",
        help="soak: PYTHONTRACEMALLOC=1 for serve, Python's heap per process (a diagnosis)",
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="rows 5, 6, 8, 9 data")
    parser.add_argument("--duckdb-dir", type=Path, help="kept DuckDB data folder (default: out)")
    parser.add_argument("--pg-url", help="kept PostgreSQL database (default: hitstream_bench_10m)")
    parser.add_argument("--browser", action="store_true", help="rows 5/6: also time Chromium")
    parser.add_argument(
        "--no-baseline", action="store_true", help="row 5: skip the run without rollups"
    )
    args = parser.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ALL_ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; use {', '.join(ALL_ROWS)}")
    args.rows = rows
    args.profile = args.profile or args.profile_only
    args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out_dir = OUT
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m benchmarks.scale", *(sys.argv[1:] if argv is None else argv)])
    result: dict[str, Any] = {
        "benchmark": "scale",
        "command": command,
        "machine": machine(),
        "rows": {},
    }
    failed: list[str] = []
    for name in args.rows:
        began, load = time.monotonic(), loadavg()
        print(f"== row {name} (load {load})", flush=True)
        try:
            figures = _runner(name)(args)
        except Exception as exc:  # one broken row must not lose the others' figures
            print(f"row {name} failed: {exc!r}", file=sys.stderr, flush=True)
            figures = {"error": repr(exc)}
            failed.append(name)
        figures["minutes"] = round((time.monotonic() - began) / 60, 1)
        figures["load_before"], figures["load_after"] = load, loadavg()
        result["rows"][name] = figures
        partial = OUT / f"scale-{args.stamp}.partial.json"
        partial.write_text(json.dumps(result, indent=2, default=str) + "\n")
        if "summary" in figures:
            print(json.dumps(figures["summary"], indent=1, default=str), flush=True)
    result["loadavg_after"] = loadavg()
    result["src_digest_after"] = source_digest()
    path = write_result("scale", json.loads(json.dumps(result, default=str)))
    (OUT / f"scale-{args.stamp}.partial.json").unlink(missing_ok=True)
    print(f"results: {path}")
    if failed:
        raise SystemExit(f"rows failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
