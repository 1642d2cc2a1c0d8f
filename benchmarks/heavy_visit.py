"""What a long visit with many distinct pages costs the DuckDB store's writes.

A few visitors, one visit each, send event after event (as a script or a crawler does, and
as the crash tests' load process does): every write touching such a visit reloads its slots
and walks every page of it again (the visit row changes with each batch: its duration, so
does every page's visit duration). The cost of a write then grows with the pages the visit
has had so far, and a backlog of such visits drains ever slower. The control: the same
events and visits, each visit cycling over ``--pages`` pages. Batches of 5,000 events in
time order, each with the visit rows as they stand after it (what the processor writes);
write time per batch of the first and last tenth, and events/s over the whole.

    python -m benchmarks.heavy_visit                          # 40,000 events, 4 visits
    python -m benchmarks.heavy_visit --events 80000 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from benchmarks.harness import machine
from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.sessions import count_into, new_visit, session_id_for
from hitstream.domain.visitors import event_id

BATCH = 5_000
START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
SITE = "heavy.example"


Batch = tuple[list[ProcessedEvent], list[Session]]
"""A batch's events and the rows of the visits they touch as they stand after it."""


def generate(total: int, visits: int, pages: int | None, cap: int | None = None) -> list[Batch]:
    """``visits`` visitors, one visit each (with ``cap``: a new one every ``cap`` events),
    taking turns an event at a time, 10 ms apart; paths distinct per event (``pages`` None)
    or cycling over ``pages`` per visit."""
    rows: dict[tuple[int, int], Session] = {}
    batches: list[Batch] = []
    events: list[ProcessedEvent] = []
    for n in range(total):
        who, seq = n % visits, n // visits
        ts = START_MS + n * 10
        visitor = f"{who:016x}"
        path = f"/w{who}/{seq if pages is None else seq % pages}"
        event = ProcessedEvent(
            event_id=event_id(ts, n.to_bytes(10, "big")),
            site_id=SITE,
            type="pageview",
            name="",
            timestamp=ts,
            received_at=ts,
            visitor_id=visitor,
            session_id="",
            hostname=SITE,
            path=path,
            url=f"https://{SITE}{path}",
            browser="Chrome",
            os="Linux",
            device="desktop",
            country="DE",
        )
        part = seq // cap if cap else 0
        row = rows.get((who, part))
        if row is None:
            row = rows[(who, part)] = new_visit(event, session_id_for(SITE, visitor, ts))
        event.session_id = row.session_id
        count_into(row, event)
        events.append(event)
        if len(events) == BATCH or n == total - 1:
            touched = {e.session_id for e in events}
            batches.append((events, [replace(r) for r in rows.values() if r.session_id in touched]))
            events = []
    return batches


async def _write(batches: list[Batch]) -> dict[str, float]:
    from hitstream.stores.base import WriteBatch
    from hitstream.stores.duckdb import DuckDBStore

    took: list[float] = []
    total = sum(len(events) for events, _ in batches)
    with tempfile.TemporaryDirectory() as folder:
        store = DuckDBStore(Path(folder) / "heavy.duckdb")
        await store.start()
        try:
            cpu, began = time.process_time(), time.perf_counter()
            written = 0
            for events, rows in batches:
                written += len(events)
                at = time.perf_counter()
                await store.write(WriteBatch("bench", {0: written}, events, rows))
                took.append(time.perf_counter() - at)
            wall, cpu = time.perf_counter() - began, time.process_time() - cpu
        finally:
            await store.close()
    tenth = max(1, len(took) // 10)
    return {
        "events_per_s": round(total / wall),
        "cpu_us_per_event": round(cpu / total * 1e6, 1),
        "first_tenth_batch_ms": round(statistics.median(took[:tenth]) * 1000, 1),
        "last_tenth_batch_ms": round(statistics.median(took[-tenth:]) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--visits", type=int, default=4)
    parser.add_argument("--pages", type=int, default=50, help="pages a visit cycles over (control)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cap", type=int, default=0, help="also: a new visit every CAP events")
    args = parser.parse_args()
    cases = {
        "distinct pages": generate(args.events, args.visits, None),
        f"{args.pages} pages a visit": generate(args.events, args.visits, args.pages),
    }
    if args.cap:
        cases[f"distinct, {args.cap} a visit"] = generate(args.events, args.visits, None, args.cap)
    results: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for run in range(args.runs):
        order = list(cases) if run % 2 == 0 else list(reversed(cases))
        for name in order:
            got = asyncio.run(_write(cases[name]))
            results[name].append(got)
            print(f"run {run} {name:>22}: {json.dumps(got)}", flush=True)
    summary = {
        name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        for name, runs in results.items()
    }
    print(json.dumps({"machine": machine(), "events": args.events, "medians": summary}, indent=1))


if __name__ == "__main__":
    main()
