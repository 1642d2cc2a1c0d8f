"""What rolled-up segments cost the writes (decision 0030): the same traffic written into a
fresh store with no segment, with the benchmarks' one (``country==DE``, ~12 % of the events)
and with four on different properties (an event can be in several), in processor-sized
batches. Runs alternate between the cases (the machine is shared and noisy); medians.

    python -m benchmarks.segment_cost                       # DuckDB, 200,000 events, 3 runs
    python -m benchmarks.segment_cost --store postgresql --events 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.store_bench import DAY_MS, SITE, START_MS, generate

CASES: dict[str, list[tuple[str, str]]] = {
    "no segment": [],
    "1 segment (country==DE)": [("country", "DE")],
    "4 segments": [
        ("country", "DE"),
        ("source", "Google"),
        ("browser", "Chrome"),
        ("page", "/pricing"),
    ],
}
BATCH = 5_000
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


async def _write(store: Any, segments: list[tuple[str, str]], data: Any) -> dict[str, float]:
    from hitstream.stores.base import WriteBatch

    events, sessions = data
    await store.start()
    try:
        for prop, value in segments:
            assert await store.register_segment(SITE, prop, value)
        wall, cpu = time.perf_counter(), time.process_time()
        for offset in range(0, len(events), BATCH):
            chunk = events[offset : offset + BATCH]
            touched = [sessions[s] for s in dict.fromkeys(e.session_id for e in chunk)]
            await store.write(WriteBatch("bench", {0: offset + len(chunk)}, chunk, touched))
        return {
            "wall_s": time.perf_counter() - wall,
            "cpu_s": time.process_time() - cpu,
        }
    finally:
        await store.close()


def run_duckdb(segments: list[tuple[str, str]], data: Any) -> dict[str, float]:
    from hitstream.stores.duckdb import DuckDBStore

    with tempfile.TemporaryDirectory() as folder:
        store = DuckDBStore(Path(folder) / "s.duckdb")
        return asyncio.run(_write(store, segments, data))


def run_pg(segments: list[tuple[str, str]], data: Any) -> dict[str, float]:
    import psycopg

    from hitstream.stores.postgres import PostgresStore

    name = "hitstream_bench_segments"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:5432/{name}")
        return asyncio.run(_write(store, segments, data))  # CPU: this process's only
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", choices=("duckdb", "postgresql"), default="duckdb")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = generate(args.events, seed=7, start_ms=START_MS, span_ms=3 * DAY_MS)
    run = run_duckdb if args.store == "duckdb" else run_pg
    found: dict[str, list[dict[str, float]]] = {name: [] for name in CASES}
    for number in range(args.runs):
        for name, segments in CASES.items():
            figures = run(segments, data)
            found[name].append(figures)
            print(f"run {number + 1} {name}: {json.dumps(figures)}", flush=True)
    base = statistics.median(f["cpu_s"] for f in found["no segment"])
    print(f"\n{args.store}, {args.events:,} events in batches of {BATCH:,}, medians of {args.runs}")
    print("| case | wall s | CPU s (this process) | µs CPU/event | CPU vs no segment |")
    print("|---|---|---|---|---|")
    for name, runs in found.items():
        wall = statistics.median(f["wall_s"] for f in runs)
        cpu = statistics.median(f["cpu_s"] for f in runs)
        per = cpu / args.events * 1e6
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {per:.0f} | {cpu / base:.2f}x |")


if __name__ == "__main__":
    main()
