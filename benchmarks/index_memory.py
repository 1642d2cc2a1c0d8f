"""What the DuckDB store's id indexes keep in memory while it writes (issue 11, point 6).

DuckDB loads an ART index's nodes as a write touches them and keeps them. Visit and visitor
ids that are random hashes put a batch's new keys all over each tree, so every write ends up
holding the whole of the four indexes on them; time-ordered ids (decision 0034) put them in
one recent part. Measured here, each case in a fresh process:

- ``time-ordered`` and ``random`` (the baseline, ids as they were before decision 0034: each
  visit and visitor id replaced by a 16-hex hash of itself, so the data is otherwise the
  same): ``--events`` events of 30 days (``store_bench.generate``) written into a new store in
  5,000-event batches, the store closed and opened again (nothing of the indexes in memory),
  then ``--batches`` batches of the next day's traffic written as a processor would; DuckDB's
  memory by tag (``duckdb_memory()``) and the process's RSS once opened, after the first
  batch and after the last.
- ``--kept``: the same writes on a working copy of the kept 10 M data set
  (``benchmarks.dataset``), which has time-ordered ids since decision 0034.

    python -m benchmarks.index_memory                         # 2 M events, both id forms
    python -m benchmarks.index_memory --events 500000 --kept  # and the 10 M copy
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from hashlib import blake2b
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from benchmarks import dataset
from benchmarks.harness import machine, scratch, write_result
from benchmarks.proc import memory
from benchmarks.store_bench import DAY_MS, START_MS, generate, write_all

MB = 1e6
BATCH = 5_000


def _scrambled(text: str) -> str:
    return blake2b(text.encode(), digest_size=8).hexdigest()


def _data(events: int, seed: int, start_ms: int, span_ms: int, random_ids: bool) -> Any:
    rows, visits = generate(events, seed, start_ms=start_ms, span_ms=span_ms)
    if not random_ids:
        return rows, visits
    for event in rows:
        event.visitor_id = _scrambled(event.visitor_id)
        event.session_id = _scrambled(event.session_id)
    visits = {
        _scrambled(sid): replace(
            visit, session_id=_scrambled(sid), visitor_id=_scrambled(visit.visitor_id)
        )
        for sid, visit in visits.items()
    }
    return rows, visits


async def _tags(store: Any) -> dict[str, float]:
    rows = await store._rows(
        "SELECT tag, sum(memory_usage_bytes) FROM duckdb_memory() GROUP BY tag "
        "HAVING sum(memory_usage_bytes) > 0"
    )
    return {str(tag): round(int(n) / MB, 1) for tag, n in rows}


def _rss() -> float:
    import os

    return round(memory(os.getpid())["VmRSS"] / MB, 1)


async def _measure(path: Path, fill: int, batches: int, random_ids: bool, after_ms: int) -> Any:
    from hitstream.stores.duckdb import DuckDBStore

    fill_s = None
    if fill:
        rows, visits = _data(fill, 7, START_MS, 30 * DAY_MS, random_ids)
        store = DuckDBStore(path)
        await store.start()
        began = time.perf_counter()
        await write_all(store, rows, visits, BATCH)
        fill_s = round(time.perf_counter() - began, 1)
        await store.close()
        del rows, visits
    fresh, visits = _data(batches * BATCH, 11, after_ms, DAY_MS // 4, random_ids)
    store = DuckDBStore(path)
    await store.start()
    try:
        out: dict[str, Any] = {"fill_seconds": fill_s, "opened": await _tags(store)}
        out["rss_opened_mb"] = _rss()
        took = []
        for n in range(batches):
            began = time.perf_counter()
            await write_all(store, fresh[n * BATCH : (n + 1) * BATCH], visits, BATCH)
            took.append(time.perf_counter() - began)
            if n == 0:
                out["after_first"] = await _tags(store)
                out["rss_after_first_mb"] = _rss()
        out["after_last"] = await _tags(store)
        out["rss_after_last_mb"] = _rss()
        out["write_ms_median"] = round(statistics.median(took) * 1000, 1)
    finally:
        await store.close()
    return out


def _case(path: str, fill: int, batches: int, random_ids: bool, after_ms: int) -> Any:
    return asyncio.run(_measure(Path(path), fill, batches, random_ids, after_ms))


def _in_process(*args: Any) -> Any:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(_case, *args).result()


def _art(tags: dict[str, float]) -> float:
    return tags.get("ART_INDEX", 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--kept", action="store_true", help="also the kept 10 M data set")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    out: dict[str, Any] = {"benchmark": "index_memory", "machine": machine(), "cases": {}}
    out["args"] = vars(args)
    after = START_MS + 30 * DAY_MS + DAY_MS // 2
    with scratch("index-memory", args.keep) as tmp:
        for name, random_ids in (("random", True), ("time-ordered", False)):
            got = _in_process(
                str(tmp / f"{name}.duckdb"), args.events, args.batches, random_ids, after
            )
            out["cases"][name] = got
            print(
                f"{name:13} ART after first/last batch {_art(got['after_first'])} / "
                f"{_art(got['after_last'])} MB, RSS {got['rss_after_last_mb']} MB, "
                f"write {got['write_ms_median']} ms",
                flush=True,
            )
        if args.kept:
            dataset.ensure_duckdb()
            copy = dataset.working_copy(dataset.DUCKDB_DIR, tmp / "kept")
            kept_after = int(dataset.END.timestamp() * 1000) + DAY_MS // 2
            got = _in_process(str(copy / "hitstream.duckdb"), 0, args.batches, False, kept_after)
            out["cases"]["kept 10 M"] = got
            print(
                f"kept 10 M     ART after first/last batch {_art(got['after_first'])} / "
                f"{_art(got['after_last'])} MB, RSS {got['rss_after_last_mb']} MB",
                flush=True,
            )
    path = write_result("index_memory", out)
    print(json.dumps(out["cases"], indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
