"""Timing of the PostgreSQL store: batch writes, then uncached stats queries over them.

Not a test: prints figures. ``python -m benchmarks.pg_bench [--events 1000000]`` generates 30
days of traffic with ``store_bench.generate`` (one big site, two small ones), writes it into a
throwaway database in processor-sized batches (events + touched sessions + positions + fence,
one transaction each), then reports median and p95 latency of the dashboard's queries. The
store has no cache: every query is answered by PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from urllib.parse import urlsplit

import psycopg

from benchmarks.store_bench import DAY_MS, SITE, START_MS, generate
from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.stats import Range, StatsQuery
from hitstream.stores.base import WriteBatch
from hitstream.stores.postgres import PostgresStore

ADMIN_URL = os.environ.get("HITSTREAM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


async def write_all(
    store: PostgresStore, events: list[ProcessedEvent], sessions: dict[str, Session], size: int
) -> list[float]:
    took: list[float] = []
    for offset in range(0, len(events), size):
        chunk = events[offset : offset + size]
        touched = [sessions[sid] for sid in dict.fromkeys(e.session_id for e in chunk)]
        batch = WriteBatch("events", {0: offset + len(chunk)}, chunk, touched, starts={0: offset})
        began = time.perf_counter()
        await store.write(batch)
        took.append(time.perf_counter() - began)
    return took


async def run(args: argparse.Namespace, url: str) -> None:
    began = time.perf_counter()
    events, sessions = generate(args.events)
    elapsed = time.perf_counter() - began
    print(f"generated {len(events):,} events, {len(sessions):,} visits in {elapsed:.1f} s")

    store = PostgresStore(url)
    await store.start()
    try:
        took = await write_all(store, events, sessions, args.batch)
        total = sum(took)
        print(
            f"wrote {len(events):,} events in {len(took)} batches: {total:.1f} s, "
            f"{len(events) / total:,.0f} events/s"
        )
        quantiles = statistics.quantiles(took, n=20)
        print(
            f"  per batch of {args.batch:,}: median {ms(statistics.median(took))}, "
            f"p95 {ms(quantiles[-1])}, max {ms(max(took))}"
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by now
            row = conn.execute(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ).fetchone()
        print(f"  database size {row[0] if row else '?'}")

        month = Range(START_MS, START_MS + 30 * DAY_MS)
        day = Range(month.end - DAY_MS, month.end)
        print(f"queries of {SITE} (median / p95 of {args.runs} after a warm-up, uncached):")
        for label, method, query in [
            ("aggregate 30d, default metrics", "aggregate", StatsQuery(SITE, month)),
            ("aggregate last 24 h", "aggregate", StatsQuery(SITE, day)),
            ("timeseries 30d by day", "timeseries", StatsQuery(SITE, month)),
            (
                "timeseries 30d by day, Berlin",
                "timeseries",
                StatsQuery(SITE, month, tz="Europe/Berlin"),
            ),
            ("breakdown page 30d", "breakdown", StatsQuery(SITE, month, property="page")),
            (
                "breakdown page, visitors+pageviews",
                "breakdown",
                StatsQuery(SITE, month, ("visitors", "pageviews"), property="page", limit=10),
            ),
        ]:
            samples = []
            for _ in range(args.runs + 1):
                began = time.perf_counter()
                await getattr(store, method)(query)
                samples.append(time.perf_counter() - began)
            samples = samples[1:]
            p95 = statistics.quantiles(samples, n=20)[-1] if len(samples) > 1 else samples[0]
            print(f"  {label:<36} {ms(statistics.median(samples))}  p95 {ms(p95)}")
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    name = f"hs_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()
    try:
        await run(args, url)
    finally:
        if args.keep:
            print(f"kept {url}")
        else:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
