"""The Stats API queries a dashboard sends, and two ways of timing them from a client.

``measure_rounds``: every kind once per round, one request at a time, so machine noise falls on
all kinds alike (uncached latency). ``measure_blocks``: each kind back to back, with the
server's own cache hit and miss counts read around each block (cached latency).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx

from benchmarks.fill import SITE
from benchmarks.harness import median, percentile
from benchmarks.sampling import scrape

FILTER = "device==mobile"
QUERIES: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("aggregate 30d, compare", "aggregate", {"period": "30d", "compare": "previous_period"}),
    ("aggregate 30d, filter", "aggregate", {"period": "30d", "filters": FILTER}),
    ("timeseries 30d by day", "timeseries", {"period": "30d", "interval": "day"}),
    ("timeseries day by hour", "timeseries", {"period": "day", "interval": "hour"}),
    ("breakdown page", "breakdown", {"property": "page"}),
    ("breakdown page, filter", "breakdown", {"property": "page", "filters": FILTER}),
    ("breakdown source", "breakdown", {"property": "source"}),
    ("breakdown source, filter", "breakdown", {"property": "source", "filters": FILTER}),
    ("breakdown country", "breakdown", {"property": "country"}),
    ("breakdown country, filter", "breakdown", {"property": "country", "filters": FILTER}),
    ("breakdown prop:plan", "breakdown", {"property": "prop:plan"}),
    ("breakdown prop:plan, filter", "breakdown", {"property": "prop:plan", "filters": FILTER}),
    ("realtime", "realtime", {}),
)  # fmt: skip
"""(name, endpoint, parameters); breakdowns use the default period, 30d."""


def query_counts(url: str) -> dict[str, float]:
    """The server's own ``hitstream_query_seconds`` count and sum series, by kind and cache."""
    with httpx.Client(timeout=10.0) as client:
        series = scrape(client, url)
    wanted = ("hitstream_query_seconds_count{", "hitstream_query_seconds_sum{")
    return {k: v for k, v in series.items() if k.startswith(wanted)}


def timed_get(conn: http.client.HTTPConnection, path: str, name: str = "") -> float:
    """Milliseconds for one GET on a kept-alive connection, send to last byte; a non-200 or
    non-JSON answer is an error, never a timing."""
    began = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - began) * 1000
    if response.status != 200 or not body.startswith(b"{"):
        raise RuntimeError(f"{name or path}: HTTP {response.status} {body[:300]!r}")
    return elapsed


def _timer(port: int) -> tuple[http.client.HTTPConnection, Callable[[str, str], float]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    return conn, lambda name, path: timed_get(conn, path, name)


def _path(kind: str, params: dict[str, str]) -> str:
    return f"/api/v1/stats/{kind}?{urlencode({'site_id': SITE, **params})}"


def _figures(values: list[float], first: float) -> dict[str, Any]:
    return {
        "median_ms": round(median(values), 2),
        "p95_ms": round(percentile(values, 95), 2),
        "first_ms": round(first, 2),
        "n": len(values),
    }


def measure_rounds(port: int, rounds: int) -> dict[str, dict[str, Any]]:
    """``rounds`` rounds of every query after a first one; one request at a time."""
    times: dict[str, list[float]] = {name: [] for name, _, _ in QUERIES}
    first: dict[str, float] = {}
    conn, timed = _timer(port)
    try:
        for round_number in range(rounds + 1):
            for name, kind, params in QUERIES:
                elapsed = timed(name, _path(kind, params))
                if round_number == 0:
                    first[name] = elapsed
                else:
                    times[name].append(elapsed)
    finally:
        conn.close()
    return {name: _figures(values, first[name]) for name, values in times.items()}


def measure_blocks(url: str, port: int, count: int) -> dict[str, dict[str, Any]]:
    """Per kind: one warm-up request, then ``count`` back to back; with server hits/misses."""
    out: dict[str, dict[str, Any]] = {}
    conn, timed = _timer(port)
    try:
        for name, kind, params in QUERIES:
            path = _path(kind, params)
            first = timed(name, path)
            before = query_counts(url)
            values = [timed(name, path) for _ in range(count)]
            after = query_counts(url)
            out[name] = _figures(values, first)
            for outcome, label in (("hit", "hits"), ("miss", "misses")):
                key = f'hitstream_query_seconds_count{{cache="{outcome}",kind="{kind}"}}'
                out[name][label] = int(after.get(key, 0) - before.get(key, 0))
    finally:
        conn.close()
    return out


def markdown(uncached: dict[str, dict[str, Any]], cached: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| query | uncached median ms | uncached p95 ms | uncached first ms "
        "| cached median ms | cached p95 ms | cache hits / misses |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, _, _ in QUERIES:
        u, c = uncached[name], cached[name]
        lines.append(
            f"| {name} | {u['median_ms']:.1f} | {u['p95_ms']:.1f} | {u['first_ms']:.1f} "
            f"| {c['median_ms']:.2f} | {c['p95_ms']:.2f} | {c['hits']} / {c['misses']} |"
        )
    return "\n".join(lines)
