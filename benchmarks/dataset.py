"""The kept 10-million-event data set: one DuckDB data folder and one PostgreSQL database.

Built once, kept, reused: a later run finds the data and does not refill (it takes 10-20
minutes). Deterministic: 30 days of ``store_bench.generate`` traffic, one day at a time with
its own seed, all dated from ``START`` to ``END`` (fixed days, not "now"), so a rebuild with the
same arguments gives the same events, ids included. ~90 % of the events belong to
``big.example`` (the site the benchmarks query), the rest to two small sites. Events are
written straight through the store's ``write`` in processor-sized batches (events, the visits
they touch, positions under the stream ``bench-fill``, which no processor reads), in time order
day by day, as a processor would have appended them.

A ``manifest.json`` beside the DuckDB file (and a row in the database's ``bench_manifest``
table on PostgreSQL) records what was built, with which code; ``ensure_*`` checks it.

    python -m benchmarks.dataset --store duckdb              # benchmarks/out/duckdb-10m/
    python -m benchmarks.dataset --store postgresql          # database hitstream_bench_10m
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.harness import OUT, git_revision, source_digest
from benchmarks.store_bench import DAY_MS, SITE, generate

EVENTS = 10_000_000
SEED = 20261201
START = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 30
END = datetime(2026, 12, 1, tzinfo=UTC)
"""Visits start from ``START`` to ``END`` (exclusive); the last ones run up to an hour past."""
BATCH = 5_000
STREAM = "bench-fill"
DUCKDB_DIR = OUT / "duckdb-10m"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/hitstream_bench_10m"
FIRST_DAY = START.date().isoformat()
LAST_DAY = (END - timedelta(days=1)).date().isoformat()
PERIOD = {"period": "custom", "from": FIRST_DAY, "to": LAST_DAY}
"""The Stats API parameters of the data set's 30 days."""
SEGMENT = ("country", "DE")
"""The filter of the benchmarks' filtered dashboard (``country==DE``, ~12 % of the events),
registered as a segment before the fill: as if the site's owner had first filtered by it a
month before (the first breakdown under a filter registers it, from then on)."""
SERVE_ENV = {"HITSTREAM_SITES": json.dumps([{"site_id": SITE, "public": True}])}
"""What ``serve`` on the data set needs: its big site registered and public (stats read
without a key; the data set is written straight into the store, with no registry)."""


def day_sizes(events: int) -> list[int]:
    """Events per day: an even share, the remainder on the last day."""
    share = events // DAYS
    return [share] * (DAYS - 1) + [events - share * (DAYS - 1)]


def batches(day: int, size: int, seed: int) -> Iterator[tuple[list[Any], list[Any]]]:
    """One day's events in batches of ``BATCH``, each with the visits it touches."""
    start_ms = int(START.timestamp() * 1000) + day * DAY_MS
    events, sessions = generate(size, seed=seed * 100 + day, start_ms=start_ms, span_ms=DAY_MS)
    for offset in range(0, len(events), BATCH):
        chunk = events[offset : offset + BATCH]
        yield chunk, [sessions[s] for s in dict.fromkeys(e.session_id for e in chunk)]


def manifest(store: str, events: int, seed: int, seconds: float, **extra: Any) -> dict[str, Any]:
    return {
        "store": store,
        "events": events,
        "seed": seed,
        "days": [FIRST_DAY, LAST_DAY],
        "site": SITE,
        "generator": "benchmarks.store_bench.generate, one day per seed (seed * 100 + day)",
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "events_per_s": round(events / seconds) if seconds else None,
        "git": git_revision(),
        "src_digest": source_digest(),
        **extra,
    }


# -- DuckDB --------------------------------------------------------------------------------


async def _fill_duckdb(path: Path, events: int, seed: int) -> dict[str, Any]:
    from hitstream.stores.base import WriteBatch
    from hitstream.stores.duckdb import DuckDBStore

    store = DuckDBStore(path)
    await store.start()
    written, write_s = 0, 0.0
    try:
        await store.register_segment(SITE, *SEGMENT)
        for day, size in enumerate(day_sizes(events)):
            for chunk, touched in batches(day, size, seed):
                began = time.perf_counter()
                await store.write(WriteBatch(STREAM, {0: written + len(chunk)}, chunk, touched))
                write_s += time.perf_counter() - began
                written += len(chunk)
            print(f"  day {day + 1}/{DAYS}: {written:,} events", flush=True)
        stored = await store.count_events()
        big = await store.count_events(SITE)
    finally:
        await store.close()
    return {"stored": stored, "site_events": big, "store_write_seconds": round(write_s, 1)}


def build_duckdb(folder: Path, events: int, seed: int) -> dict[str, Any]:
    """A data folder holding ``hitstream.duckdb`` with the data set (and nothing else)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    began = time.perf_counter()
    figures = asyncio.run(_fill_duckdb(folder / "hitstream.duckdb", events, seed))
    info = manifest("duckdb", events, seed, time.perf_counter() - began, **figures)
    info["segments"] = [list(SEGMENT)]
    info["bytes"] = (folder / "hitstream.duckdb").stat().st_size
    (folder / "manifest.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


def ensure_duckdb(
    folder: Path = DUCKDB_DIR, events: int = EVENTS, seed: int = SEED
) -> dict[str, Any]:
    """The kept folder's manifest, building the folder first if it is missing or different."""
    found = folder / "manifest.json"
    if found.exists() and (folder / "hitstream.duckdb").exists():
        info: dict[str, Any] = json.loads(found.read_text())
        if info.get("events") == events and info.get("seed") == seed and info.get("segments"):
            return info
        print(f"{folder} holds a different data set ({info.get('events')} events): rebuilding")
    print(
        f"building {events:,} events into {folder} (once; ~40 s per million events) ...", flush=True
    )
    return build_duckdb(folder, events, seed)


def working_copy(folder: Path, into: Path) -> Path:
    """A copy of the kept data folder to run a server on: ``serve`` migrates and writes its
    store, and the kept one must stay as built. Reflinks where the file system has them."""
    into.mkdir(parents=True, exist_ok=True)
    target = into / "hitstream.duckdb"
    subprocess.run(
        ["cp", "--reflink=auto", str(folder / "hitstream.duckdb"), str(target)], check=True
    )
    return into


# -- PostgreSQL -----------------------------------------------------------------------------


async def _fill_pg_part(url: str, part: int, days: list[int], events: int, seed: int) -> int:
    from hitstream.stores.base import WriteBatch
    from hitstream.stores.postgres import PostgresStore

    store = PostgresStore(url)
    await store.start()
    written = 0
    sizes = day_sizes(events)
    try:
        for day in days:
            for chunk, touched in batches(day, sizes[day], seed):
                positions = {part: written + len(chunk)}
                batch = WriteBatch(STREAM, positions, chunk, touched, starts={part: written})
                await store.write(batch)
                written += len(chunk)
            print(f"  part {part}: day {day + 1} done, {written:,} events", flush=True)
    finally:
        await store.close()
    return written


async def _register_pg_segment(url: str) -> None:
    """The schema, and ``SEGMENT`` registered before any event (see ``SEGMENT``)."""
    from hitstream.stores.postgres import PostgresStore

    store = PostgresStore(url)
    await store.start()
    try:
        assert await store.register_segment(SITE, *SEGMENT)
    finally:
        await store.close()


def fill_pg_part(url: str, part: int, days: list[int], events: int, seed: int) -> int:
    return asyncio.run(_fill_pg_part(url, part, days, events, seed))


def _pg_manifest(url: str) -> dict[str, Any] | None:
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SELECT body FROM bench_manifest").fetchone()
    except psycopg.Error:
        return None
    return json.loads(row[0]) if row else None


def build_pg(url: str, events: int, seed: int, workers: int = 2) -> dict[str, Any]:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    asyncio.run(_register_pg_segment(url))
    began = time.perf_counter()
    plan = [list(range(part, DAYS, workers)) for part in range(workers)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [
            pool.submit(fill_pg_part, url, part, days, events, seed)
            for part, days in enumerate(plan)
        ]
        written = sum(f.result() for f in futures)
    filled_s = time.perf_counter() - began
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")  # what autovacuum would have done by now
        stored, big, size = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE site_id = %s), "
            "pg_database_size(current_database()) FROM events",
            (SITE,),
        ).fetchone() or (0, 0, 0)
        info = manifest(
            "postgresql",
            events,
            seed,
            filled_s,
            written=written,
            stored=int(stored),
            site_events=int(big),
            bytes=int(size),
            workers=workers,
            segments=[list(SEGMENT)],
            vacuum_seconds=round(time.perf_counter() - began - filled_s, 1),
        )
        conn.execute("CREATE TABLE bench_manifest (body TEXT NOT NULL)")
        conn.execute("INSERT INTO bench_manifest VALUES (%s)", (json.dumps(info),))
    return info


def ensure_pg(url: str = PG_URL, events: int = EVENTS, seed: int = SEED) -> dict[str, Any]:
    info = _pg_manifest(url)
    if (
        info is not None
        and info.get("events") == events
        and info.get("seed") == seed
        and info.get("segments")
    ):
        return info
    print(f"building {events:,} events into {url} (once; ~15-25 min, ~11 GB) ...", flush=True)
    return build_pg(url, events, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", choices=("duckdb", "postgresql"), required=True)
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--folder", type=Path, default=DUCKDB_DIR, help="DuckDB data folder")
    parser.add_argument("--url", default=PG_URL, help="PostgreSQL database (created)")
    parser.add_argument("--rebuild", action="store_true", help="build even if it is there")
    args = parser.parse_args()
    if args.store == "duckdb":
        if args.rebuild:
            info = build_duckdb(args.folder, args.events, args.seed)
        else:
            info = ensure_duckdb(args.folder, args.events, args.seed)
    elif args.rebuild:
        info = build_pg(args.url, args.events, args.seed)
    else:
        info = ensure_pg(args.url, args.events, args.seed)
    print(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
