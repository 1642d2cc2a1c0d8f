"""Where the processor's slow rise in C memory goes: DuckDB's eviction queues (issue 11, point 6).

A memray capture of the processor (``memray run --native``, session 14) showed the memory
that glibc's ``malloc`` holds rising by ~1 MB a minute in two places only, both DuckDB's: the
``BlockHandle`` of each temporary buffer a hash join or aggregate builds, and the blocks of
the buffer pool's eviction queues. A buffer that is unpinned gets a node in one of those
queues, holding a weak pointer to its handle; the handle is made with ``make_shared``, so
its memory stays allocated while the weak pointer lives, after the buffer itself is gone.
DuckDB removes such dead nodes in bulk only once a queue holds 32,768 nodes (4,096
insertions x 2 x 4, its ``EARLY_OUT_MULTIPLIER``), and it has eight queues, six of them for
temporary buffers. So the memory rises while the queues fill and then stays level: bounded
bookkeeping, not a leak. This measures that, each case in a fresh process, glibc's bytes in
use (``mallinfo2``) sampled as it goes:

- ``store writes``: ``--batches`` writes of ``--batch`` events through the DuckDB store, as
  the processor makes them (rollups on);
- ``hash joins``: ``--queries`` joins of two 2,000-row tables on a bare connection, the
  mechanism alone;
- ``scans`` (the baseline): as many queries that build no temporary buffer;
- with ``--in-clause-off``, the store writes once more with DuckDB's ``in_clause`` optimizer
  off: it turns each literal ``IN`` list of the write's id lookups into a hash join, the
  source of most of the temporary buffers (session 15). Not a setting to adopt: a lookup
  that falls back to a full scan then compares every row with every literal.

    python -m benchmarks.queue_memory            # ~7 min on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks.harness import machine, write_result
from benchmarks.store_bench import DAY_MS, START_MS, generate, write_all

MB = 1e6
SAMPLES = 20


def _in_use() -> float:
    from hitstream.metrics import _mallinfo

    info = _mallinfo()
    if info is None:
        raise SystemExit("needs glibc's mallinfo2")
    return float(info().uordblks)


def _series(step: Any, total: int) -> dict[str, Any]:
    every = max(1, total // SAMPLES)
    began = time.perf_counter()
    points = [(0, _in_use())]
    for done in range(1, total + 1):
        step(done)
        if done % every == 0:
            points.append((done, _in_use()))
    first, last = points[0][1], points[-1][1]
    half = points[len(points) // 2][1]
    quarter = points[(3 * len(points)) // 4][1]
    return {
        "steps": total,
        "seconds": round(time.perf_counter() - began, 1),
        "in_use_mb": [[n, round(v / MB, 2)] for n, v in points],
        "growth_mb": round((last - first) / MB, 2),
        "growth_mb_first_half": round((half - first) / MB, 2),
        "growth_mb_second_half": round((last - half) / MB, 2),
        "growth_mb_last_quarter": round((last - quarter) / MB, 2),
    }


def _queries(kind: str, queries: int) -> dict[str, Any]:
    import duckdb

    conn = duckdb.connect(config={"threads": 2})
    conn.execute("CREATE TABLE a AS SELECT range k, range % 7 v FROM range(2000)")
    conn.execute("CREATE TABLE b AS SELECT range k, range % 5 w FROM range(0, 4000, 2)")
    sql = {
        "hash joins": "SELECT sum(v + w) FROM a JOIN b USING (k)",
        "scans": "SELECT sum(v) FROM a WHERE k % 3 = 0",
    }[kind]
    return _series(lambda _: conn.execute(sql).fetchall(), queries)


def _writes(batches: int, batch: int, disabled: str = "") -> dict[str, Any]:
    """``disabled``: DuckDB optimizers turned off for the store's connection (a diagnosis,
    e.g. ``in_clause``: a literal ``IN`` list stays a filter instead of a join)."""
    from hitstream.stores.base import WriteBatch
    from hitstream.stores.duckdb import DuckDBStore

    events, sessions = generate(batches * batch, 11, start_ms=START_MS, span_ms=DAY_MS)

    async def run() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="hitstream-queue-") as folder:
            store = DuckDBStore(Path(folder) / "q.duckdb")
            await store.start()
            if disabled:
                store._conn.execute(f"SET disabled_optimizers = '{disabled}'")  # type: ignore[union-attr]
            loop = asyncio.get_running_loop()
            try:
                await write_all(store, events[:batch], sessions, batch)  # schema warm

                def step(done: int) -> None:
                    chunk = events[done * batch : (done + 1) * batch]
                    touched = [sessions[s] for s in dict.fromkeys(e.session_id for e in chunk)]
                    write = WriteBatch("events", {0: (done + 1) * batch}, chunk, touched)
                    asyncio.run_coroutine_threadsafe(store.write(write), loop).result()

                return await asyncio.to_thread(_series, step, batches - 1)
            finally:
                await store.close()

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--queries", type=int, default=60_000)
    parser.add_argument(
        "--in-clause-off",
        action="store_true",
        help="also the store writes with DuckDB's IN-list rewrite off (where the joins come from)",
    )
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "queue_memory", "machine": machine(), "cases": {}}
    cases: list[tuple[str, Any, tuple[Any, ...]]] = [
        ("scans", _queries, ("scans", args.queries)),
        ("hash joins", _queries, ("hash joins", args.queries)),
        ("store writes", _writes, (args.batches, args.batch)),
    ]
    if args.in_clause_off:
        cases.append(("store writes, IN-list rewrite off", _writes, (*cases[-1][2], "in_clause")))
    for name, function, arguments in cases:
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            result = pool.submit(function, *arguments).result()
        out["cases"][name] = result
        shown = {k: v for k, v in result.items() if k != "in_use_mb"}
        print(name, json.dumps(shown), flush=True)
        print("  in use, MB:", [v for _, v in result["in_use_mb"]], flush=True)
    print("results:", write_result("queue_memory", out))


if __name__ == "__main__":
    main()
