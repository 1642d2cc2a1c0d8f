"""Where a processor's DuckDB write transaction spends its time, statement by statement.

py-spy sees a write as one call into DuckDB; this opens a copy of a store (or an empty one)
and times each statement of ``write_statements`` for small and large batches of fresh events
(today's ids, new visits), plus the processor's dedupe query and the data-version read that
come with every batch, with the wall and CPU time of each (CPU: the process's, so DuckDB's
worker threads count). Medians over ``--runs`` batches per size.

    python -m benchmarks.write_profile                      # empty store vs the 10 M copy
    python -m benchmarks.write_profile --sizes 1,25,5000 --runs 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import dataset
from benchmarks.harness import OUT
from benchmarks.store_bench import DAY_MS, generate


def _timed(conn: Any, sql: str, params: object) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    conn.execute(sql, params).fetchall()
    return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def profile(path: Path, sizes: list[int], runs: int) -> dict[str, Any]:
    import duckdb

    from hitstream.stores.base import WriteBatch
    from hitstream.stores.duckdb import DuckDBStore
    from hitstream.stores.sql.duckdb.writes import write_statements

    store = DuckDBStore(path)  # creates and migrates an empty file; then let go of it
    import asyncio

    asyncio.run(_open_close(store))
    conn = duckdb.connect(str(path), config={"checkpoint_threshold": "64MB"})
    conn.execute("SET enable_progress_bar = false")
    out: dict[str, Any] = {"rows_before": conn.execute("SELECT count(*) FROM events").fetchone()}
    now_ms = int(time.time() * 1000)
    for size in sizes:
        timings: dict[str, list[tuple[float, float]]] = {}
        for run in range(runs):
            events, sessions = generate(
                max(size, 4), seed=900 + run + 31 * size, start_ms=now_ms - DAY_MS, span_ms=DAY_MS
            )
            events = events[:size]
            touched = [sessions[s] for s in dict.fromkeys(e.session_id for e in events)]
            batch = WriteBatch("profile", {0: run}, events, touched)
            ids = [e.event_id for e in events]
            dedupe = (
                "SELECT event_id FROM events WHERE event_id >= $lo AND event_id <= $hi "
                "AND event_id IN (SELECT unnest($ids::VARCHAR[]))",
                {"ids": ids, "lo": min(ids), "hi": max(ids)},
            )
            steps: list[tuple[str, str, object]] = [("dedupe (known_event_ids)", *dedupe)]
            steps.append(("BEGIN", "BEGIN", None))
            for sql, params in write_statements(batch, skip_stored=False):
                label = sql.split(" (", 1)[0].split(" SELECT", 1)[0][:40]
                steps.append((label, sql, params))
            steps.append(("COMMIT", "COMMIT", None))
            steps.append(
                (
                    "data_version read",
                    "SELECT data_version FROM sites WHERE site_id = $s",
                    {"s": "big.example"},
                )
            )
            for label, sql, params in steps:
                timings.setdefault(label, []).append(_timed(conn, sql, params))
        out[f"batch of {size}"] = {
            label: {
                "wall_ms": round(statistics.median(w for w, _ in values), 2),
                "cpu_ms": round(statistics.median(c for _, c in values), 2),
            }
            for label, values in timings.items()
        }
    conn.close()
    return out


async def _open_close(store: Any) -> None:
    await store.start()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1,25,500,5000")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duckdb-dir", type=Path, default=dataset.DUCKDB_DIR)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        empty = Path(scratch) / "empty" / "hitstream.duckdb"
        empty.parent.mkdir()
        result["empty store"] = profile(empty, sizes, args.runs)
        big = dataset.working_copy(args.duckdb_dir, Path(scratch) / "big") / "hitstream.duckdb"
        result["10 M store"] = profile(big, sizes, args.runs)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = OUT / f"write-profile-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
