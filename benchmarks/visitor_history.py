"""What a visitor's history costs the DuckDB store's writes (decision 0033).

The same 30 days of traffic are written into a fresh store in processor-sized batches, with
visitor ids that last the whole 30 days (identified users), by fewer and fewer people: a
visitor then has more and more stored periods when a new event of theirs arrives. Two ways
of computing each write's rollup change, alternating run by run on the same data: the whole
walk of every touched visitor's chains (``rollups.change(whole=True)``, what every write did
before decision 0033, still the tests' reference) and the walk from the first period the write
changes. Daily ids (anonymous visitors) are the control. CPU of the writing process (DuckDB's
threads included) per event, medians.

    python -m benchmarks.visitor_history                 # 100,000 events, 3 runs
    python -m benchmarks.visitor_history --events 50000 --runs 5
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import machine
from benchmarks.store_bench import generate

BATCH = 5_000
CASES: dict[str, tuple[bool, int]] = {
    "daily ids, 4 events a person": (True, 4),
    "30-day ids, 5 events a person": (False, 5),
    "30-day ids, 25 events a person": (False, 25),
    "30-day ids, 100 events a person": (False, 100),
}
"""name -> (daily ids, events per person over the 30 days)."""


async def _write(data: Any, whole: bool) -> float:
    from hitstream.domain import rollups
    from hitstream.stores.base import WriteBatch
    from hitstream.stores.duckdb import DuckDBStore

    events, sessions = data
    real = rollups.change
    setattr(rollups, "change", functools.partial(real, whole=True) if whole else real)  # noqa: B010
    try:
        with tempfile.TemporaryDirectory() as folder:
            store = DuckDBStore(Path(folder) / "history.duckdb")
            await store.start()
            try:
                cpu = time.process_time()
                for offset in range(0, len(events), BATCH):
                    chunk = events[offset : offset + BATCH]
                    touched = [sessions[s] for s in dict.fromkeys(e.session_id for e in chunk)]
                    await store.write(WriteBatch("bench", {0: offset + len(chunk)}, chunk, touched))
                return time.process_time() - cpu
            finally:
                await store.close()
    finally:
        setattr(rollups, "change", real)  # noqa: B010


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "visitor_history", "machine": machine(), "cases": {}}
    for name, (daily, per_person) in CASES.items():
        data = generate(args.events, people=args.events // per_person, daily_ids=daily)
        took: dict[str, list[float]] = {"whole walk": [], "from the first changed period": []}
        for run in range(args.runs):
            order = list(took) if run % 2 == 0 else list(took)[::-1]
            for mode in order:
                cpu = asyncio.run(_write(data, whole=mode == "whole walk"))
                took[mode].append(round(cpu / args.events * 1e6, 1))
        medians = {mode: statistics.median(values) for mode, values in took.items()}
        out["cases"][name] = {
            "us_cpu_per_event": took,
            "median": medians,
            "ratio": round(medians["from the first changed period"] / medians["whole walk"], 3),
        }
        print(f"{name:34} {json.dumps(out['cases'][name])}", flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
