"""hitstream's own Prometheus metrics, in a registry made per app (never at import time)."""

from __future__ import annotations

import bisect
import ctypes
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BACKLOG_BUCKETS = (*_LATENCY_BUCKETS, 30.0, 60.0, 300.0, 1800.0)
"""Ingest-to-store can reach minutes when processors fall behind: keep that visible."""


def observe_many(histogram: Histogram, amounts: Iterable[float]) -> None:
    """``histogram.observe`` of each of ``amounts``, with one locked increment per bucket
    rather than one a value (a processor batch observes thousands of events: ~3 µs each,
    bucket by bucket). Through prometheus_client's histogram internals when they are there
    (a test compares both ways' exposition), else value by value."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for amount in amounts:
            histogram.observe(amount)
        return
    found = [0] * len(bounds)
    summed = 0.0
    for amount in amounts:
        found[bisect.bisect_left(bounds, amount)] += 1  # the first bound >= amount
        summed += amount
    total.inc(summed)
    for i, n in enumerate(found):
        if n:
            buckets[i].inc(n)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mallinfo() -> Callable[[], _MallInfo2] | None:
    """glibc's ``mallinfo2`` (2.33+: every arena), None elsewhere (musl, macOS)."""
    try:
        found = ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        return None
    found.restype = _MallInfo2
    return cast(Callable[[], _MallInfo2], found)


class PythonHeap(Collector):
    """``hitstream_python_heap_bytes{process}``: what Python's own allocations hold in this
    process, when it runs with ``PYTHONTRACEMALLOC=1`` (tracing costs CPU, so it is off by
    default and the series are then absent); with it, on glibc, ``hitstream_malloc_bytes
    {process,state}``: what C's allocator holds (``in_use`` in its arenas, ``free`` there but
    kept, ``mmapped`` for big blocks; Python's small objects live outside it, in arenas of
    their own). Beside the resident size and the store's ``hitstream_store_memory_bytes``
    they tell what a process's memory is: Python objects, the store engine's own account, or
    neither (allocations no one tags, or free memory an allocator keeps)."""

    def __init__(self, process: str) -> None:
        self.process = process
        self._mallinfo = _mallinfo()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if not tracemalloc.is_tracing():
            return
        family = GaugeMetricFamily(
            "hitstream_python_heap_bytes",
            "Python's traced allocations in this process (only with PYTHONTRACEMALLOC set)",
            labels=["process"],
        )
        family.add_metric([self.process], tracemalloc.get_traced_memory()[0])
        yield family
        if self._mallinfo is None:
            return
        info = self._mallinfo()
        malloc = GaugeMetricFamily(
            "hitstream_malloc_bytes",
            "What glibc's malloc holds in this process, by state (only with PYTHONTRACEMALLOC)",
            labels=["process", "state"],
        )
        for state, held in (
            ("in_use", info.uordblks),
            ("free", info.fordblks),
            ("mmapped", info.hblkhd),
        ):
            malloc.add_metric([self.process, state], held)
        yield malloc


class Metrics:
    """Every series hitstream exports; one instance per process, built by bootstrap
    (``process``: its roles, the label of what differs between a unit's processes)."""

    def __init__(self, registry: CollectorRegistry | None = None, process: str = "") -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        r.register(PythonHeap(process or "all"))
        self.events_accepted = Counter(
            "hitstream_events_accepted_total", "Events answered 2xx by the collector", registry=r
        )
        self.events_rejected = Counter(
            "hitstream_events_rejected_total",
            "Events refused by the collector, by field and reason",
            ["field", "reason"],
            registry=r,
        )
        self.requests_rejected = Counter(
            "hitstream_requests_rejected_total",
            "Requests refused whole (bad body, size, content type, log down), by status",
            ["status", "reason"],
            registry=r,
        )
        self.grpc_calls = Counter(
            "hitstream_grpc_calls_total",
            "Calls the gRPC stats service answered, by method and status code",
            ["method", "code"],
            registry=r,
        )
        self.connections_closed = Counter(
            "hitstream_http_connections_closed_total",
            "Connections the HTTP edge closed early, by reason: evicted (at the cap, the "
            "longest waiting), refused (at the cap, none to evict), idle (sent nothing in "
            "the header timeout), body timeout",
            ["reason"],
            registry=r,
        )
        self.http_connections = Gauge(
            "hitstream_http_connections",
            "Open HTTP and WebSocket connections (HITSTREAM_MAX_CONNECTIONS caps them)",
            registry=r,
        )
        self.append_seconds = Histogram(
            "hitstream_log_append_seconds",
            "Time for the event log to durably store one request's events",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.events_processed = Counter(
            "hitstream_events_processed_total", "Events written to the store", registry=r
        )
        self.events_dropped = Counter(
            "hitstream_events_dropped_total",
            "Events dropped by the processor pipeline, by reason",
            ["reason"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "hitstream_pipeline_step_seconds",
            "Time per pipeline step per batch",
            ["step"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "hitstream_processor_batch_seconds",
            "Time to process and store one batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.store_write_seconds = Histogram(
            "hitstream_store_write_seconds",
            "Time of the store transaction per batch",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.processor_lag = Gauge(
            "hitstream_processor_lag_events",
            "Events in the log not yet processed",
            registry=r,
        )
        self.store_memory = Gauge(
            "hitstream_store_memory_bytes",
            "Memory the store's engine holds in this process, by what holds it (DuckDB: "
            "duckdb_memory() tags); read every 10 s by the processor",
            ["tag"],
            registry=r,
        )
        self.store_allocator = Gauge(
            "hitstream_store_allocator_bytes",
            "What the store engine's own allocator holds in this process, by state (DuckDB's "
            "jemalloc: allocated, active, resident); read every 10 s by the processor",
            ["state"],
            registry=r,
        )
        self.store_view_groups = Gauge(
            "hitstream_store_view_groups",
            "Groups the store's in-memory rollup views hold (~250 bytes each, at most "
            "200,000); read every 10 s by the processor",
            registry=r,
        )
        self.end_to_end_seconds = Histogram(
            "hitstream_ingest_to_store_seconds",
            "From collector receipt to the store commit, per event",
            buckets=_BACKLOG_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "hitstream_store_errors_total",
            "Store transactions that failed and were retried",
            registry=r,
        )
        self.late_events = Counter(
            "hitstream_late_events_total",
            "Events older than the visits the processor holds (sent hours late, or after a "
            "restart), for which it looked their visits up in the store",
            registry=r,
        )
        self.visits_recalled = Counter(
            "hitstream_visits_recalled_total",
            "Stored visits loaded back into the processor's visit state for late events",
            registry=r,
        )
        self.store_queries = Counter(
            "hitstream_store_queries_total",
            "Stats queries the store answered, by path: rollup (pre-aggregated) or raw (scan)",
            ["path"],
            registry=r,
        )
        self.query_seconds = Histogram(
            "hitstream_query_seconds",
            "Stats query latency by kind and cache outcome",
            ["kind", "cache"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )


def merge_exposition(*texts: str) -> str:
    """Prometheus text pages of several processes of one unit (``serve``'s parent and its
    processor process) as one page: each family once (its first ``HELP``/``TYPE``), each
    sample summed over the processes (counters, histogram buckets, gauges such as memory:
    the unit's total), ``*_created`` timestamps the earliest."""
    heads: dict[str, list[str]] = {}
    samples: dict[str, dict[str, float]] = {}
    for text in texts:
        family = ""
        for line in text.splitlines():
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    head = heads.setdefault(family, [])
                    samples.setdefault(family, {})
                    if not any(seen.startswith(f"# {parts[1]} ") for seen in head):
                        head.append(line)
                continue
            key, _, raw = line.rpartition(" ")
            if not key:
                continue
            try:
                value = float(raw)
            except ValueError:
                continue
            mine = samples.setdefault(family, {})
            heads.setdefault(family, [])
            name = key.split("{", 1)[0]
            if key in mine and name.endswith("_created"):
                mine[key] = min(mine[key], value)
            else:
                mine[key] = mine.get(key, 0.0) + value
    lines: list[str] = []
    for family, head in heads.items():
        lines.extend(head)
        lines.extend(f"{key} {value!r}" for key, value in samples[family].items())
    return "\n".join(lines) + "\n"
