"""Stats API latency over a million events, and the processor's throughput into the store.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.stats_latency                  # 1,000,000 events
    .venv/bin/python -m benchmarks.stats_latency --events 100000 --uncached 5 --cached 50

1. Fill (``benchmarks/fill.py``): 30 days of one site's synthetic traffic through the real
   collector service into the SQLite event log of a fresh data folder, without HTTP.
2. Process: ``hitstream serve`` starts on that folder and its processor works through the
   backlog; ``hitstream_events_processed_total`` is sampled every 0.5 s until it reaches the
   total. That rate is the processor's throughput into DuckDB (pipeline, sessions, store
   writes, log commits), with nothing else for the server to do.
3. Uncached: the same server (``HITSTREAM_CACHE_ENTRIES=0``) answers ``--uncached`` rounds of
   every query kind, one request at a time, from this process over one keep-alive
   connection. One request per kind per round, so machine noise spreads over all kinds alike.
   The first round is reported apart ("first": cold file pages, no warm DuckDB buffers).
4. Cached: a second server on the same folder with the default cache answers ``--cached``
   back-to-back requests per kind (a block per kind), after one warm-up request each. The
   server's own hit/miss counters are read around each block and reported beside the times,
   because a cache key changes every second (see RESULTS.md) and a miss costs a full query.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
from tests.server import ServerProcess

from benchmarks.fill import DAYS, SITE, fill, reuse
from benchmarks.harness import machine, source_digest, write_result
from benchmarks.queries import markdown, measure_blocks, measure_rounds, query_counts
from benchmarks.sampling import scrape


def wait_processed(url: str, target: int, timeout: float) -> dict[str, Any]:
    """Sample the processor's counters until it has handled ``target`` events.

    Besides the overall rate, the rate and the store's mean write time per batch over each
    tenth of the work: a processor that slows down as the store grows shows here.
    """
    samples: list[tuple[float, float, float, float]] = []  # t, handled, write s, write count
    deadline = time.monotonic() + timeout
    done = dropped = 0.0
    with httpx.Client(timeout=10.0) as client:
        while time.monotonic() < deadline:
            try:
                series = scrape(client, url)
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            done = series.get("hitstream_events_processed_total", 0.0)
            dropped = series.get("hitstream_events_dropped_total", 0.0)
            write_s = series.get("hitstream_store_write_seconds_sum", 0.0)
            writes = series.get("hitstream_store_write_seconds_count", 0.0)
            samples.append((time.monotonic(), done + dropped, write_s, writes))
            if done + dropped >= target:
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"processor handled {done + dropped:.0f} of {target} in time")
    (t0, n0, _, _), (t1, n1, _, _) = samples[0], samples[-1]
    return {
        "processed": int(done),
        "dropped": int(dropped),
        "seconds": round(t1 - t0, 1),
        "events_per_s": round((n1 - n0) / (t1 - t0)) if t1 > t0 else None,
        "done_at_first_sample": int(n0),
        "by_tenth": _by_tenth(samples, target),
    }


def _by_tenth(
    samples: list[tuple[float, float, float, float]], target: int
) -> list[dict[str, float]]:
    """Events/s and mean store write ms per batch between the samples nearest each 10%."""
    marks = []
    for tenth in range(11):
        goal = target * tenth / 10
        marks.append(next((s for s in samples if s[1] >= goal), samples[-1]))
    out = []
    for (ta, na, wa, ca), (tb, nb, wb, cb) in pairwise(marks):
        if tb <= ta or cb <= ca:
            continue
        out.append(
            {
                "up_to": round(nb),
                "events_per_s": round((nb - na) / (tb - ta)),
                "write_ms_per_batch": round((wb - wa) / (cb - ca) * 1000, 1),
            }
        )
    return out


def stored(url: str) -> int:
    today = datetime.now(UTC).date()
    params = {
        "site_id": SITE,
        "metrics": "events",
        "period": "custom",
        "from": (today - timedelta(days=DAYS + 1)).isoformat(),
        "to": today.isoformat(),
    }
    response = httpx.get(f"{url}/api/v1/stats/aggregate", params=params, timeout=300.0)
    response.raise_for_status()
    return int(response.json()["results"]["events"]["value"])


def serve(
    data_dir: Path, cache_entries: int | None, extra_env: dict[str, str] | None = None
) -> ServerProcess:
    env = {
        **(extra_env or {}),
        "HITSTREAM_MAX_EVENT_AGE_S": str((DAYS + 10) * 86_400),
        # the filled site, public: its stats are read without a key, through the access check
        "HITSTREAM_SITES": f'[{{"site_id": "{SITE}", "public": true}}]',
    }
    if cache_entries is not None:
        env["HITSTREAM_CACHE_ENTRIES"] = str(cache_entries)
    return ServerProcess(data_dir, env=env)


def stop(server: ServerProcess) -> None:
    try:
        server.terminate(timeout=120)
    finally:
        server.kill()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=20261121)
    parser.add_argument("--uncached", type=int, default=15, help="rounds without the cache")
    parser.add_argument("--cached", type=int, default=200, help="requests per kind, cached")
    parser.add_argument("--fill-workers", type=int, default=2, help="processes that fill")
    parser.add_argument("--process-timeout", type=float, default=900.0)
    parser.add_argument("--reuse-log", type=Path, help="copy this --keep folder's event log")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    if args.reuse_log is not None:
        filled = reuse(args.reuse_log, data_dir, args.events)
    else:
        print(f"filling {data_dir} with {args.events:,} events ...", flush=True)
        now_ms = int(time.time() * 1000)
        filled = fill(data_dir, args.events, args.seed, now_ms, args.fill_workers)
    print(f"fill: {filled}", flush=True)
    spawned = time.monotonic()
    server = serve(data_dir, cache_entries=0).start(timeout=120)
    ready_s = round(time.monotonic() - spawned, 1)
    try:
        processing = wait_processed(server.url, args.events, args.process_timeout)
        processing["spawn_to_ready_s"] = ready_s
        processing["spawn_to_done_s"] = round(time.monotonic() - spawned, 1)
        processing["stored"] = stored(server.url)
        print(f"processor: {processing}", flush=True)
        before = query_counts(server.url)
        uncached = measure_rounds(server.port, args.uncached)
        uncached_server = {k: v - before.get(k, 0) for k, v in query_counts(server.url).items()}
        print(f"uncached: {uncached}", flush=True)
    finally:
        stop(server)
    server = serve(data_dir, cache_entries=None).start(timeout=120)
    try:
        cached = measure_blocks(server.url, server.port, args.cached)
        print(f"cached: {cached}", flush=True)
        before = query_counts(server.url)
        measure_rounds(server.port, 1)  # two rounds, interleaved as a dashboard's would be
        after = query_counts(server.url)
    finally:
        stop(server)
    interleaved = {
        outcome: sum(
            value - before.get(key, 0)
            for key, value in after.items()
            if key.startswith("hitstream_query_seconds_count{") and f'cache="{outcome}"' in key
        )
        for outcome in ("hit", "miss")
    }
    return {
        "fill": filled,
        "processing": processing,
        "uncached": uncached,
        "uncached_server_side": uncached_server,
        "cached": cached,
        "cached_server_interleaved_rounds": interleaved,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    before = machine()
    workdir = Path(tempfile.mkdtemp(prefix="hitstream-stats-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    try:
        figures = run(args, data_dir)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "benchmark": "stats_latency",
        "command": " ".join(["python -m benchmarks.stats_latency", *sys.argv[1:]]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": before,
        "loadavg_after": Path("/proc/loadavg").read_text().strip(),
        "src_digest_after": source_digest(),
        **figures,
    }
    path = write_result("stats-latency", result)
    print(markdown(figures["uncached"], figures["cached"]))
    print(f"interleaved rounds on the cached server: {figures['cached_server_interleaved_rounds']}")
    print(f"results: {path}")
    processing = figures["processing"]
    if processing["dropped"] or processing["stored"] != args.events:
        raise SystemExit(f"stored {processing['stored']} of {args.events} events")


if __name__ == "__main__":
    main()
