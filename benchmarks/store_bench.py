"""Timing of the DuckDB store: batch writes, then stats queries over what was written.

Not a test: prints figures. ``python benchmarks/store_bench.py [--events 1000000]`` generates
30 days of traffic for one big site (and two small ones), writes it in processor-sized batches
(events + the sessions they touch + positions, one transaction each) into a fresh DuckDB file,
then reports the median latency of the dashboard's queries over it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from hashlib import blake2b
from pathlib import Path

from hitstream.domain.events import ProcessedEvent, Session
from hitstream.domain.sessions import session_id_for
from hitstream.domain.stats import METRICS, Filter, Range, StatsQuery
from hitstream.domain.visitors import event_id, with_day
from hitstream.stores.base import WriteBatch
from hitstream.stores.duckdb import DuckDBStore

DAY_MS = 86_400_000
START_MS = 1_767_225_600_000  # 2026-01-01 00:00 UTC
SITE = "big.example"
PAGES = ["/", "/pricing", "/docs", "/blog", "/about", "/signup", "/login"] + [
    f"/blog/post-{i}" for i in range(300)
]
SOURCES = ["", "", "", "Google", "Twitter", "GitHub", "Newsletter", "DuckDuckGo"]
BROWSERS = ["Chrome", "Firefox", "Safari", "Edge"]
COUNTRIES = ["DE", "US", "FR", "GB", "NL", "IN", "BR", "JP"]


def generate(
    total: int,
    seed: int = 7,
    *,
    start_ms: int = START_MS,
    span_ms: int = 30 * DAY_MS,
    people: int | None = None,
    daily_ids: bool = True,
) -> tuple[list[ProcessedEvent], dict[str, Session]]:
    """``total`` events of visits starting in ``span_ms`` from ``start_ms`` (default: the 30
    days from ``START_MS``), in time order, and each visit's row, by ``people`` people
    (default: a quarter of ``total``). A person's visitor id changes every day; with
    ``daily_ids=False`` it is one for the whole span (identified users). The same arguments
    give the same events, ids included."""
    rng = random.Random(seed)
    events: list[ProcessedEvent] = []
    sessions: dict[str, Session] = {}
    number = 0
    while len(events) < total:
        number += 1
        site = SITE if rng.random() < 0.9 else rng.choice(["small-a.example", "small-b.example"])
        ts = start_ms + rng.randrange(span_ms)
        # ids shaped like the real ones: a visitor's 16 hex digits (blake2b-64) after its
        # day's, as a daily salt makes them (an identified user's: no day), visit ids from
        # ``session_id_for``, UUIDv7 event ids; a returning person gets a new visitor id every
        # day, as the daily salt does; people of one seed are not another seed's
        person, day = rng.randrange(people or total // 4), (ts - start_ms) // DAY_MS
        who = f"{seed}/{person}/{day}" if daily_ids else f"{seed}/{person}"
        visitor = blake2b(who.encode(), digest_size=8).hexdigest()
        if daily_ids:
            visitor = with_day(ts // DAY_MS, visitor)
        session_id = session_id_for(site, visitor, ts)
        source, browser, country = rng.choice(SOURCES), rng.choice(BROWSERS), rng.choice(COUNTRIES)
        pages: list[str] = []
        for _ in range(min(rng.choice([1, 1, 2, 3, 4, 6, 9, 12]), total - len(events))):
            page = rng.choice(PAGES)
            pages.append(page)
            kind = "pageview" if rng.random() < 0.85 else "custom"
            events.append(
                ProcessedEvent(
                    event_id=event_id(ts + 40, rng.randbytes(10)),
                    site_id=site,
                    type=kind,
                    name="" if kind == "pageview" else "Signup",
                    timestamp=ts,
                    received_at=ts + 40,
                    visitor_id=visitor,
                    session_id=session_id,
                    hostname=site,
                    path=page,
                    url=f"https://{site}{page}",
                    title=page.strip("/").title(),
                    referrer_domain=source.lower(),
                    source=source,
                    channel="Organic Search" if source else "Direct",
                    browser=browser,
                    browser_version="120",
                    os="Linux",
                    device="desktop",
                    country=country,
                    screen_width=1280,
                    load_time_ms=rng.randrange(50, 3000) if kind == "pageview" else None,
                    props={"plan": rng.choice(["free", "pro"])} if kind == "custom" else {},
                )
            )
            ts += rng.randrange(5_000, 300_000)
        first, last = events[-len(pages)], events[-1]
        sessions[session_id] = Session(
            session_id=session_id,
            site_id=site,
            visitor_id=visitor,
            started_at=first.timestamp,
            last_seen=last.timestamp,
            entry_page=pages[0],
            exit_page=pages[-1],
            pageviews=sum(1 for e in events[-len(pages) :] if e.type == "pageview"),
            events=len(pages),
            source=source,
            browser=browser,
            country=country,
        )
    events.sort(key=lambda e: e.timestamp)
    return events, sessions


def dashboard_pages(month: Range) -> StatsQuery:
    """The page panel of the dashboard asks for these two metrics only."""
    return StatsQuery(SITE, month, ("visitors", "pageviews"), property="page", limit=10)


def replace_tz(month: Range) -> StatsQuery:
    return StatsQuery(SITE, month, interval="day", tz="Europe/Berlin")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


async def write_all(
    store: DuckDBStore, events: list[ProcessedEvent], sessions: dict[str, Session], size: int
) -> list[float]:
    took: list[float] = []
    for offset in range(0, len(events), size):
        chunk = events[offset : offset + size]
        touched = [sessions[sid] for sid in dict.fromkeys(e.session_id for e in chunk)]
        batch = WriteBatch("events", {0: offset + len(chunk)}, chunk, touched)
        began = time.perf_counter()
        await store.write(batch)
        took.append(time.perf_counter() - began)
    return took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--checkpoint-mb", type=int, default=64)
    parser.add_argument(
        "--rollups",
        choices=["on", "off", "both"],
        default="both",
        help="keep the rollups (on), scan raw events (off), or both, off first (the baseline)",
    )
    args = parser.parse_args()

    began = time.perf_counter()
    events, sessions = generate(args.events)
    elapsed = time.perf_counter() - began
    print(f"generated {len(events):,} events, {len(sessions):,} visits in {elapsed:.1f} s")

    for mode in ["off", "on"] if args.rollups == "both" else [args.rollups]:
        print(f"== rollups {mode}")
        await run(args, events, sessions, rollups=mode == "on")


async def run(
    args: argparse.Namespace,
    events: list[ProcessedEvent],
    sessions: dict[str, Session],
    *,
    rollups: bool,
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.duckdb"
        store = DuckDBStore(path, checkpoint_mb=args.checkpoint_mb, rollups=rollups)
        await store.start()
        took = await write_all(store, events, sessions, args.batch)
        total = sum(took)
        quantiles = statistics.quantiles(took, n=20)
        rate = len(events) / total
        print(f"wrote {len(events):,} events in {len(took)} batches: {total:.1f} s, {rate:,.0f}/s")
        print(
            f"  per batch of {args.batch:,}: median {ms(statistics.median(took))}, "
            f"p95 {ms(quantiles[-1])}, max {ms(max(took))}"
        )
        size = path.stat().st_size / 1e6
        print(f"  file {size:,.0f} MB; {await store.count_events(SITE):,} events of {SITE}")

        month = Range(START_MS, START_MS + 30 * DAY_MS)
        last_day = Range(month.end - DAY_MS, month.end)
        pricing = (Filter("page", "==", ("/pricing",)),)
        print(f"queries over 30 days of {SITE} (the first, then the median of {args.runs} more):")
        for label, method, query in [
            ("aggregate, default metrics", "aggregate", StatsQuery(SITE, month)),
            ("aggregate, all 9 metrics", "aggregate", StatsQuery(SITE, month, METRICS)),
            ("aggregate, page==/pricing", "aggregate", StatsQuery(SITE, month, filters=pricing)),
            (
                "aggregate, all, page==/pricing",
                "aggregate",
                StatsQuery(SITE, month, METRICS, pricing),
            ),
            ("aggregate, last 24 h", "aggregate", StatsQuery(SITE, last_day)),
            ("timeseries by day, UTC", "timeseries", StatsQuery(SITE, month)),
            ("timeseries by day, Europe/Berlin", "timeseries", replace_tz(month)),
            ("breakdown page, limit 100", "breakdown", StatsQuery(SITE, month, property="page")),
            ("breakdown page, visitors+pageviews", "breakdown", dashboard_pages(month)),
            ("breakdown entry_page", "breakdown", StatsQuery(SITE, month, property="entry_page")),
            ("breakdown prop:plan", "breakdown", StatsQuery(SITE, month, property="prop:plan")),
        ]:
            samples = []
            seen = store.answered.copy()
            for _ in range(args.runs + 1):
                began = time.perf_counter()
                await getattr(store, method)(query)
                samples.append(time.perf_counter() - began)
            answered = ",".join(sorted(store.answered - seen))
            first, median = ms(samples[0]), ms(statistics.median(samples[1:]))
            print(f"  {label:<36} first {first}, then {median}  {answered}")
        await store.close()


if __name__ == "__main__":
    asyncio.run(main())
