"""Fill a data folder's event log with 30 days of synthetic traffic, fast, without HTTP.

Events of ``TrafficModel.history`` go through the real collector service (validation, visitor
hash from each event's own IP and User-Agent, country lookup) into the folder's SQLite event
log, exactly as ``POST /api/v1/events`` would put them there, minus the web layer. The
collector's per-event Python work is the cost, so ``parts`` processes share it by visitor.

Exactly ``target`` events: the model is drawn once to count its events, then each worker
draws the same seeded stream again and keeps the same ``target`` of them (Knuth's selection
sampling: spread evenly over the 30 days), sending only its own visitors' events.

Visitor ids change every day, as they do for events that arrive in real time (the collector
salts with the day's random salt): each simulated day's events go to the collector with its
clock set to that day and a salt made for that day from the seed (``DaySalts``). With
``daily_ids=False`` every event is salted with one salt of today, so an anonymous visitor
keeps one id for all 30 days: the shape of a site whose visitors are identified users
(``user_id``: unsalted), the costly case for the rollups (a visitor's chains span its
history), which row 4 measures apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import random
import shutil
import sqlite3
import time
import zlib
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from hitstream.domain.events import Limits
from hitstream.domain.sites import Site
from hitstream.domain.visitors import SALT_BYTES, Salts, day_key
from hitstream.enrich.geo import IptoccCountryLookup
from hitstream.log.sqlite import SQLiteLog
from hitstream.metrics import Metrics
from hitstream.salts.base import SaltKeeper
from hitstream.salts.file import FileSaltKeeper
from hitstream.services.collector import Collector
from hitstream.synthetic.traffic import DAY_MS, TrafficModel

SITE = "stats.bench"
DAYS = 30
CHUNK = 20_000
"""Events gathered before sending: their visitors' requests go to the log concurrently, so
the log's group commit turns thousands of appends into a few transactions."""
MAX_BATCH = 500
_ENCODER = msgspec.json.Encoder()


class _Sites:
    """The fill's one site, registered (a fill writes the log directly, not through a server:
    register the site in the store too before reading it, ``hitstream sites add``)."""

    async def sites(self) -> Mapping[str, Site]:
        return {SITE: Site(SITE)}


class DaySalts(SaltKeeper):
    """The fill's salts: one per UTC day, made from the seed (the same for every worker, so a
    visitor's id is one per day whichever worker sends its events)."""

    name = "fill-days"

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def _salt(self, day: int) -> bytes:
        seeded = f"fill/{self._seed}/{day}".encode()
        return hashlib.blake2b(seeded, digest_size=SALT_BYTES).digest()

    async def salts(self, now_ms: int) -> Salts:
        day = now_ms // DAY_MS
        return Salts(day_key(now_ms), self._salt(day), self._salt(day - 1))


@dataclass(frozen=True)
class FillSpec:
    data_dir: Path
    target: int
    drawn: int
    per_day: int
    seed: int
    now_ms: int
    parts: int
    daily_ids: bool = True


def model(seed: int) -> TrafficModel:
    return TrafficModel(SITE, random.Random(seed), pages=200, visitors=20_000)


async def _send(collector: Collector, ip: str, user_agent: str, bodies: list[object]) -> None:
    for start in range(0, len(bodies), MAX_BATCH):
        part = bodies[start : start + MAX_BATCH]
        result = await collector.collect(_ENCODER.encode(part), "application/json", ip, user_agent)
        if result.status != 202 or result.rejected:
            raise RuntimeError(f"collector refused fill events: {result.body()}")


def _part(ip: str, user_agent: str, parts: int) -> int:
    """Which worker sends this visitor's events: all of one visitor's go through one."""
    return zlib.crc32(f"{ip}\x1f{user_agent}".encode()) % parts


async def _fill_part(spec: FillSpec, part: int) -> int:
    """Send this worker's share of the selected events; return the log's commit count."""
    log = SQLiteLog(spec.data_dir / "log.sqlite3")
    await log.start()
    clock = [spec.now_ms]
    """The collector's now: with daily ids, just after the last event of the chunk it takes."""
    collector = Collector(
        log,
        DaySalts(spec.seed) if spec.daily_ids else FileSaltKeeper(spec.data_dir / "salts.json"),
        IptoccCountryLookup(),
        Metrics(),
        sites=_Sites(),
        limits=Limits(max_past_ms=(DAYS + 1) * DAY_MS),
        clock=lambda: clock[0],
    )
    pick = random.Random(spec.seed + 1).random
    groups: dict[tuple[str, str], list[object]] = {}
    kept = seen = in_chunk = 0
    day = latest = 0

    async def send() -> None:
        if spec.daily_ids:
            clock[0] = latest + 1
        await asyncio.gather(*(_send(collector, *k, v) for k, v in groups.items()))

    try:
        for event in model(spec.seed).history(DAYS, spec.per_day, spec.now_ms):
            seen += 1
            if pick() * (spec.drawn - seen + 1) >= spec.target - kept:
                continue
            kept += 1
            if _part(event.ip, event.user_agent, spec.parts) != part:
                continue
            if spec.daily_ids and event.timestamp // DAY_MS != day:
                if groups:  # a chunk holds one day: the collector's clock and salt are its
                    await send()
                    groups, in_chunk = {}, 0
                day = event.timestamp // DAY_MS
            latest = max(latest, event.timestamp)
            in_chunk += 1
            groups.setdefault((event.ip, event.user_agent), []).append(event.body)
            if in_chunk >= CHUNK:
                await send()
                groups, in_chunk = {}, 0
        await send()
    finally:
        await log.close()
    return log.commits


def fill_part(spec: FillSpec, part: int) -> int:
    return asyncio.run(_fill_part(spec, part))


def fill(
    data_dir: Path, target: int, seed: int, now_ms: int, parts: int, *, daily_ids: bool = True
) -> dict[str, Any]:
    """Append exactly ``target`` events from the 30 days before ``now_ms`` to the event log
    (``daily_ids``: visitor ids change daily, as in real time; else one id for 30 days)."""
    began = time.perf_counter()
    per_day = int(target / DAYS * 1.1) + 1  # the model's total varies by a few %: draw extra
    drawn = sum(1 for _ in model(seed).history(DAYS, per_day, now_ms))
    if drawn < target:
        raise RuntimeError(f"the model drew {drawn} events, fewer than {target}")
    if not daily_ids:  # one salts file, made before the workers share it
        asyncio.run(FileSaltKeeper(data_dir / "salts.json").salts(int(time.time() * 1000)))
    spec = FillSpec(data_dir, target, drawn, per_day, seed, now_ms, parts, daily_ids)
    with ProcessPoolExecutor(parts, mp_context=multiprocessing.get_context("spawn")) as pool:
        commits = sum(pool.map(fill_part, [spec] * parts, range(parts)))
    elapsed = time.perf_counter() - began
    return {
        "events": log_count(data_dir),
        "drawn": drawn,
        "workers": parts,
        "seconds": round(elapsed, 1),
        "events_per_s": round(target / elapsed),
        "log_commits": commits,
        "visitor_ids": "daily" if daily_ids else "one for 30 days",
    }


def log_count(data_dir: Path) -> int:
    """Messages in a data folder's event log: frames (decision 0043) and, in a log written
    by code before them (a ``git archive`` baseline), rows of ``messages``."""
    with sqlite3.connect(data_dir / "log.sqlite3") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
        count = 0
        if "frames" in tables:
            count += int(conn.execute("SELECT COALESCE(SUM(count), 0) FROM frames").fetchone()[0])
        if "messages" in tables:
            count += int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
        return count


def reuse(source: Path, data_dir: Path, target: int) -> dict[str, Any]:
    """Copy the event log of an earlier ``--keep`` run instead of filling anew."""
    for name in ("log.sqlite3", "log.sqlite3-wal", "salts.json"):
        if (source / name).exists():
            shutil.copy2(source / name, data_dir / name)
    with sqlite3.connect(data_dir / "log.sqlite3") as conn:
        conn.execute("DELETE FROM commits")  # start from the first event again
    count = log_count(data_dir)
    if count != target:
        raise SystemExit(f"{source} holds {count} events, not {target}")
    return {"events": count, "reused": str(source)}
