"""Stats API latency of ``hitstream web`` on PostgreSQL: a big store, uncached and cached.

The store is filled straight through ``PostgresStore.write`` (processor-sized batches of
``store_bench.generate``'s events, shifted so their 30 days end two hours ago, which keeps the
rollups up to date as a processor would), bounded by a deadline: the figure reports the event
count that was really written, whatever was asked for. Then one ``hitstream web`` process per
setting answers the dashboard's queries over one keep-alive connection: raw scans with no
cache (``HITSTREAM_STORE_ROLLUPS=false``, the baseline), then the rollups with no cache
(``HITSTREAM_CACHE_ENTRIES=0``: every request a query), the in-process memory cache and the
Redis cache. The cache key holds the site's data version and the range end rounded up to the
minute (realtime: the second), so a repeat hits only if it starts in the same minute as the
miss that filled the cache. The first request of each kind is timed apart, then its repeats,
and the server's own hit/miss counts are kept with the figures.
"""

from __future__ import annotations

import asyncio
import http.client
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from tests.server import ServerProcess

from benchmarks.harness import median, percentile
from benchmarks.queries import query_counts, timed_get
from benchmarks.store_bench import DAY_MS, SITE, START_MS, generate
from hitstream.domain.stats import METRICS
from hitstream.stores.base import WriteBatch
from hitstream.stores.postgres import PostgresStore

HOUR_MS = 3_600_000
CHUNK = 250_000
BATCH = 5_000
QUERIES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("aggregate 30d", "aggregate", {"period": "30d"}),
    ("aggregate 30d + previous", "aggregate", {"period": "30d", "compare": "previous_period"}),
    ("aggregate 30d, every metric", "aggregate", {"period": "30d", "metrics": ",".join(METRICS)}),
    ("timeseries 30d by day", "timeseries", {"period": "30d", "interval": "day"}),
    ("breakdown page 30d", "breakdown", {"property": "page", "period": "30d"}),
    ("breakdown source 30d", "breakdown", {"property": "source", "period": "30d"}),
    ("breakdown country 30d", "breakdown", {"property": "country", "period": "30d"}),
    ("realtime", "realtime", {}),
)


async def _write_part(url: str, part: int, chunks: list[int], shift: int, deadline: float) -> int:
    """Write this worker's chunks (partition ``part`` of the fence) until the deadline."""
    store = PostgresStore(url)
    await store.start()
    written = 0
    try:
        for number in chunks:
            if time.time() > deadline:
                break
            events, sessions = generate(CHUNK, seed=1000 + number)
            for event in events:
                event.timestamp += shift
                event.received_at += shift
            for session in sessions.values():
                session.started_at += shift
                session.last_seen += shift
            for offset in range(0, len(events), BATCH):
                chunk = events[offset : offset + BATCH]
                touched = [sessions[s] for s in dict.fromkeys(e.session_id for e in chunk)]
                await store.write(
                    WriteBatch(
                        "events",
                        {part: written + len(chunk)},
                        chunk,
                        touched,
                        starts={part: written},
                    )
                )
                written += len(chunk)
    finally:
        await store.close()
    return written


def write_part(url: str, part: int, chunks: list[int], shift: int, deadline: float) -> int:
    return asyncio.run(_write_part(url, part, chunks, shift, deadline))


def fill(url: str, events: int, workers: int, seconds: float) -> dict[str, Any]:
    """Write up to ``events`` events in ``workers`` processes, stopping after ``seconds``."""
    began = time.time()
    now_ms = int(began * 1000)
    # 30 days that end two hours before now: a visit near the end runs up to an hour past its
    # start, and no stored event may lie in the future (the collector refuses those)
    shift = now_ms - 30 * DAY_MS - 2 * HOUR_MS - START_MS
    count = -(-events // CHUNK)
    plan = [list(range(part, count, workers)) for part in range(workers)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [
            pool.submit(write_part, url, part, chunks, shift, began + seconds)
            for part, chunks in enumerate(plan)
        ]
        written = sum(f.result() for f in futures)
    elapsed = time.time() - began
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by now
        row = conn.execute("SELECT count(*), pg_database_size(current_database()) FROM events")
        stored, size = row.fetchone() or (0, 0)
    return {
        "asked": events,
        "written": written,
        "stored": int(stored),
        "site_share": "~90% of events are the queried site's",
        "seconds": round(elapsed, 1),
        "events_per_s": round(written / elapsed),
        "workers": workers,
        "database_bytes": int(size),
        "deadline_reached": written < events,
    }


def _path(endpoint: str, params: dict[str, str]) -> str:
    return f"/api/v1/stats/{endpoint}?" + urlencode({"site_id": SITE, **params})


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(median(values), 1),
        "p95_ms": round(percentile(values, 95), 1),
        "n": len(values),
    }


def measure(port: int, rounds: int, cached: bool) -> dict[str, Any]:
    """Per kind: the first request (cold; with a cache, a miss), then ``rounds`` more (with a
    cache ``rounds * 5``, back to back right after the first, so that they fall in its minute
    when the query is quick enough). The server's own hit/miss counts say what really hit."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    out: dict[str, Any] = {}
    try:
        for name, endpoint, params in QUERIES:
            path = _path(endpoint, params)
            first = round(timed_get(conn, path), 1)
            timed = [timed_get(conn, path) for _ in range(rounds * 5 if cached else rounds)]
            out[name] = {"first_ms": first, "repeats": _summary(timed)}
    finally:
        conn.close()
    out["server_counts"] = query_counts(f"http://127.0.0.1:{port}")
    return out


def latency(url: str, scratch: Path, redis_url: str, rounds: int) -> dict[str, Any]:
    """Start ``hitstream web`` four times (raw scans as the baseline, then the rollups with no
    cache, the memory cache and Redis) and time the queries."""
    variants = {
        "raw scans, uncached (HITSTREAM_STORE_ROLLUPS=false)": {
            "HITSTREAM_CACHE_ENTRIES": "0",
            "HITSTREAM_STORE_ROLLUPS": "false",
        },
        "rollups, uncached (HITSTREAM_CACHE_ENTRIES=0)": {"HITSTREAM_CACHE_ENTRIES": "0"},
        "rollups, memory cache": {},
        "rollups, redis cache": {"HITSTREAM_CACHE_URL": redis_url},
    }
    results: dict[str, Any] = {}
    for label, extra in variants.items():
        env = {
            "HITSTREAM_STORE_URL": url,
            "HITSTREAM_SITES": f'[{{"site_id": "{SITE}", "public": true}}]',  # read keyless
            **extra,
        }
        web = ServerProcess(scratch / f"web-{len(results)}", env=env, command="web")
        web.start(timeout=60)
        try:
            repeats = 1 if label.startswith("raw") else rounds  # the baseline: slow by design
            results[label] = measure(web.port, repeats, cached="uncached" not in label)
        finally:
            web.kill()
    return results
