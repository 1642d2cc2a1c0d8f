"""In-process CPU of ``Collector.collect`` per event: a batch of 100 and a single event.

Run against the tree on ``PYTHONPATH`` (the worktree's ``src`` by default), e.g. old vs new::

    git archive <commit> src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src .venv/bin/python -m benchmarks.collector_inproc
    PYTHONPATH=src .venv/bin/python -m benchmarks.collector_inproc

Prints µs of ``time.process_time`` per event, the median of ``--repeats`` rounds (the
rounds of batch and single are interleaved). A memory log, memory salts and no country
lookup: what is left is decode, validation, site checks, stamping and encoding.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import msgspec
from tests.access import Sites

from hitstream.log.memory import MemoryLog
from hitstream.metrics import Metrics
from hitstream.salts.memory import MemorySaltKeeper
from hitstream.services.collector import Collector

IP = "81.2.69.142"
UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


class _NoCountries:
    def country(self, ip: str) -> str:
        return ""


def _event(n: int) -> dict[str, object]:
    return {
        "site_id": "a.io",
        "type": "pageview",
        "url": f"https://a.io/page/{n % 20}?utm_source=x",
        "referrer": "https://www.google.com/",
        "title": "A page of the site",
        "screen_width": 1280,
        "load_time_ms": 320,
    }


def _round(collector: Collector, body: bytes, requests: int) -> float:
    async def go() -> None:
        for _ in range(requests):
            result = await collector.collect(body, "application/json", IP, UA)
            assert result.status == 202, result.body()

    started = time.process_time()
    asyncio.run(go())
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000, help="events per round")
    args = parser.parse_args()
    batch = msgspec.json.encode([_event(n) for n in range(100)])
    single = msgspec.json.encode(_event(1))
    per_batch: list[float] = []
    per_single: list[float] = []
    for _ in range(args.repeats):
        for body, requests, out in (
            (batch, args.events // 100, per_batch),
            (single, args.events, per_single),
        ):
            collector = Collector(
                MemoryLog(), MemorySaltKeeper(), _NoCountries(), Metrics(), sites=Sites("a.io")
            )
            out.append(_round(collector, body, requests) / args.events * 1e6)
    print(
        f"batch of 100: {statistics.median(per_batch):.2f} µs/event; "
        f"single: {statistics.median(per_single):.2f} µs/event"
    )


if __name__ == "__main__":
    main()
