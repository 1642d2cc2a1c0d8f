"""Rows 5 and 6 of issue 11: every dashboard query over 10 M events (DuckDB, then PostgreSQL),
uncached, quiet and while 1,000 events/s arrive, and the whole dashboard.

The data are the kept 10 M set (``benchmarks/dataset.py``): 30 days, ~9 M events of
``big.example``. ``hitstream serve`` runs on it (DuckDB: on a working copy of the kept folder;
PostgreSQL: ``HITSTREAM_STORE_URL``) with ``HITSTREAM_CACHE_ENTRIES=0``, so every request is a
store query. Queries, over the data set's 30 days (``period=custom``):

- the dashboard's own: the live snapshot's aggregate (every metric, previous period), its
  timeseries, its 13 breakdowns and the ``prop:`` breakdown, with the metrics and limit it asks
  (``hitstream.services.live_views``), realtime and the data-quality panel;
- the issue's: aggregate with the default metrics, page breakdown with the API's default
  metrics (limit 100), and filtered ones (``country==DE``: ~12 % of the events).

Timed from this process over one keep-alive connection, send to last byte, one request at a
time: a first round apart (cold: just-opened store), then ``--repeats`` rounds, each round every
query once. The whole dashboard: a WebSocket ``/api/v1/live`` connection until its
``snapshot`` frame (the server runs all the panels' queries at once), unfiltered and filtered,
the first apart, then ``--repeats`` more. Then the same again while a paced wrk sends 1,000
events/s (batches of 25) to the site. The server's CPU per dashboard comes from ``/proc``.

Same-run reference: the bare store's scan of the site's 30 days (``count(*)``,
``count(DISTINCT visitor_id)``, and grouped by path), outside hitstream, so a reader sees what
a raw scan of 9 M rows costs on this box beside what the Stats API pays.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from tests.server import ServerProcess
from websockets.sync.client import connect

from benchmarks import dataset
from benchmarks.harness import median, percentile, scratch
from benchmarks.proc import Window
from benchmarks.profile import Recorder, summarize
from benchmarks.queries import timed_get
from benchmarks.wrk import Background, paced, require_wrk

SITE = "big.example"
FILTER = "country==DE"
UNSEGMENTED = "country==US"
"""The same-run baseline of a filter whose segment the data set does not hold (~12 % of the
events too): asking registers it from now on, so over the data set's 30 days it scans."""
LIVE_RATE = 1000.0
LIVE_BATCH = 25


def dashboard_queries() -> list[tuple[str, str, dict[str, str]]]:
    """(name, endpoint, parameters) of every query the dashboard's snapshot runs, then the
    issue's named ones. Read from the live views so that the list follows the dashboard."""
    from hitstream.domain.stats import METRICS
    from hitstream.services.live_views import BREAKDOWNS, PROP_METRICS, SERIES_METRICS

    out: list[tuple[str, str, dict[str, str]]] = [
        (
            "dash: aggregate, every metric, previous period",
            "aggregate",
            {"metrics": ",".join(METRICS), "compare": "previous_period"},
        ),
        ("dash: timeseries by day", "timeseries", {"metrics": SERIES_METRICS}),
    ]
    for prop, metrics in BREAKDOWNS.items():
        out.append(
            (
                f"dash: breakdown {prop}",
                "breakdown",
                {"property": prop, "metrics": metrics, "limit": "10"},
            )
        )
    out.append(
        (
            "dash: breakdown prop:plan",
            "breakdown",
            {"property": "prop:plan", "metrics": PROP_METRICS, "limit": "10"},
        )
    )
    page = {"property": "page", "metrics": "visitors,pageviews", "limit": "10"}
    out += [
        ("dash: realtime", "realtime", {}),
        ("dash: quality", "quality", {}),
        ("aggregate, default metrics", "aggregate", {}),
        ("breakdown page, default metrics, limit 100", "breakdown", {"property": "page"}),
        ("filtered: aggregate", "aggregate", {"filters": FILTER}),
        ("filtered: timeseries", "timeseries", {"filters": FILTER}),
        ("filtered: breakdown page", "breakdown", {**page, "filters": FILTER}),
        ("filtered: prop:plan", "breakdown", {"property": "prop:plan", "filters": FILTER}),
        ("filtered: breakdown source", "breakdown", {"property": "source", "filters": FILTER}),
        ("filtered: entry_page", "breakdown", {"property": "entry_page", "filters": FILTER}),
    ]  # fmt: skip
    bare = {"filters": UNSEGMENTED}
    out += [  # the same-run baseline: these scan
        ("no segment: breakdown page", "breakdown", {**page, **bare}),
        ("no segment: prop:plan", "breakdown", {"property": "prop:plan", **bare}),
        ("no segment: breakdown source", "breakdown", {"property": "source", **bare}),
    ]
    return out


def _path(endpoint: str, params: dict[str, str], period: dict[str, str]) -> str:
    if endpoint == "realtime":
        return f"/api/v1/stats/realtime?{urlencode({'site_id': SITE})}"
    if endpoint == "quality":
        return f"/api/v1/quality?{urlencode({'site_id': SITE})}"
    return f"/api/v1/stats/{endpoint}?{urlencode({'site_id': SITE, **period, **params})}"


def rounds(port: int, count: int, period: dict[str, str], first: bool) -> dict[str, Any]:
    """Every query once per round; with ``first``, one more round before, reported apart."""
    queries = dashboard_queries()
    times: dict[str, list[float]] = {name: [] for name, _, _ in queries}
    firsts: dict[str, float] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1800)
    try:
        for number in range(count + (1 if first else 0)):
            total = 0.0
            for name, endpoint, params in queries:
                took = timed_get(conn, _path(endpoint, params, period), name)
                total += took
                if first and number == 0:
                    firsts[name] = round(took, 1)
                else:
                    times[name].append(took)
            print(f"    round {number}: {len(queries)} queries in {total:,.0f} ms", flush=True)
    finally:
        conn.close()
    out: dict[str, Any] = {}
    for name, values in times.items():
        out[name] = {
            "p50_ms": round(median(values), 1),
            "p95_ms": round(percentile(values, 95), 1),
            "n": len(values),
        }
        if name in firsts:
            out[name]["first_ms"] = firsts[name]
    return out


def snapshot(port: int, period: dict[str, str], filters: str = "") -> float:
    """Milliseconds from opening ``/api/v1/live`` to its ``snapshot`` frame."""
    params = {"site_id": SITE, **period}
    if filters:
        params["filters"] = filters
    url = f"ws://127.0.0.1:{port}/api/v1/live?{urlencode(params)}"
    began = time.perf_counter()
    with connect(url, open_timeout=60, max_size=None) as ws:
        while True:
            frame = ws.recv(timeout=1800)
            if isinstance(frame, bytes):
                frame = frame.decode()
            if frame.startswith('{"type":"snapshot"'):
                return (time.perf_counter() - began) * 1000
            if frame.startswith('{"type":"error"'):
                raise RuntimeError(f"live snapshot failed: {frame[:300]}")


def dashboards(
    pid: int, port: int, count: int, period: dict[str, str], first: bool
) -> dict[str, Any]:
    """The whole dashboard, unfiltered and filtered: snapshot times, server CPU per load."""
    out: dict[str, Any] = {}
    for label, filters in (
        ("dashboard", ""),
        (f"dashboard, filter {FILTER}", FILTER),
        (f"dashboard, filter {UNSEGMENTED} (no segment)", UNSEGMENTED),
    ):
        took: list[float] = []
        cpu: list[float] = []
        for number in range(count + (1 if first else 0)):
            window = Window(pid).start()
            ms = snapshot(port, period, filters)
            window.stop()
            if first and number == 0:
                out.setdefault(label, {})["first_ms"] = round(ms, 1)
                continue
            took.append(ms)
            cpu.append(window.cpu_s)
            print(f"    {label}: {ms:,.0f} ms, server CPU {window.cpu_s:.2f} s", flush=True)
        out.setdefault(label, {}).update(
            {
                "p50_ms": round(median(took), 1),
                "p95_ms": round(percentile(took, 95), 1),
                "n": len(took),
                "server_cpu_s_per_load": round(median(cpu), 2),
            }
        )
    return out


def measure(server: ServerProcess, args: Any, label: str, *, loaded: bool = True) -> dict[str, Any]:
    """Quiet rounds and dashboards, then (``loaded``) the same under 1,000 events/s."""
    assert server.proc is not None
    pid, port, period = server.proc.pid, server.port, dataset.PERIOD
    out: dict[str, Any] = {}
    print(f"  {label}: queries, quiet", flush=True)
    out["queries_quiet"] = rounds(port, args.repeats, period, first=True)
    print(f"  {label}: dashboards, quiet", flush=True)
    out["dashboards_quiet"] = dashboards(pid, port, args.repeats, period, first=True)
    if not loaded:
        return out
    wrk = require_wrk()
    load = paced(LIVE_RATE / LIVE_BATCH, 3600)
    sender = Background(wrk, server.url, SITE, LIVE_BATCH, load)
    window = Window(pid).start()
    try:
        time.sleep(3)
        print(f"  {label}: queries, {LIVE_RATE:,.0f} events/s arriving", flush=True)
        out["queries_under_load"] = rounds(port, args.repeats, period, first=False)
        print(f"  {label}: dashboards, {LIVE_RATE:,.0f} events/s arriving", flush=True)
        out["dashboards_under_load"] = dashboards(pid, port, args.repeats, period, first=False)
    finally:
        sent = sender.finish()
        window.stop()
    out["load"] = {
        "target_events_per_s": LIVE_RATE,
        "sent_events_per_s": sent["events_per_s"],
        "non_2xx": sent["errors"]["status"],
        "request_p99_ms": sent["latency_us"]["p99"] / 1000,
        "server": window.figures(),
    }
    return out


def summary(measured: dict[str, Any], previous: dict[str, str]) -> dict[str, Any]:
    """The figures the issue's table asks: p95 per query (worst, and each), whole dashboard."""
    quiet, loaded = measured["queries_quiet"], measured["queries_under_load"]
    quiet = {n: v for n, v in quiet.items() if not n.startswith("no segment")}
    loaded = {n: v for n, v in loaded.items() if not n.startswith("no segment")}
    dash = [n for n in quiet if n.startswith("dash:")]
    filtered = f"dashboard, filter {FILTER}"
    return {
        "worst_query_p95_ms_quiet": max(quiet[n]["p95_ms"] for n in quiet),
        "worst_dashboard_query_p95_ms_quiet": max(quiet[n]["p95_ms"] for n in dash),
        "worst_query_p95_ms_under_load": max(loaded[n]["p95_ms"] for n in loaded),
        "sum_of_dashboard_query_p50_ms_quiet": round(sum(quiet[n]["p50_ms"] for n in dash)),
        "dashboard_p50_ms_quiet": measured["dashboards_quiet"]["dashboard"]["p50_ms"],
        "dashboard_p50_ms_under_load": measured["dashboards_under_load"]["dashboard"]["p50_ms"],
        "filtered_dashboard_p50_ms_quiet": measured["dashboards_quiet"][filtered]["p50_ms"],
        "unsegmented_dashboard_p50_ms_quiet": measured["dashboards_quiet"][
            f"dashboard, filter {UNSEGMENTED} (no segment)"
        ]["p50_ms"],
        "previous": previous,
    }  # fmt: skip


_DUCKDB_REFERENCE = """
import duckdb, json, sys, time
conn = duckdb.connect(sys.argv[1], read_only=True)
conn.execute("SET enable_progress_bar = false")
lo, hi = int(sys.argv[2]), int(sys.argv[3])
out = {}
for name, sql in (
    ("count(*)", "SELECT count(*) FROM events WHERE site_id = $s AND ts >= $lo AND ts < $hi"),
    ("count(DISTINCT visitor_id)", "SELECT count(DISTINCT visitor_id) FROM events WHERE site_id = $s AND ts >= $lo AND ts < $hi"),
    ("GROUP BY path: count(DISTINCT visitor_id), count(*)", "SELECT path, count(DISTINCT visitor_id), count(*) FROM events WHERE site_id = $s AND ts >= $lo AND ts < $hi GROUP BY path ORDER BY 2 DESC LIMIT 10"),
):
    took = []
    for _ in range(4):
        began = time.perf_counter()
        conn.execute(sql, {"s": "big.example", "lo": lo, "hi": hi}).fetchall()
        took.append((time.perf_counter() - began) * 1000)
    out[name] = {"first_ms": round(took[0], 1), "p50_ms": round(sorted(took[1:])[1], 1)}
print(json.dumps(out))
"""  # noqa: E501


_EXPLAIN = """
import json, os, sys, tempfile, time, duckdb
from hitstream.domain.stats import METRICS, bucket_starts, build_query
from hitstream.stores.sql.duckdb.stats import stats_sql

conn = duckdb.connect(sys.argv[1], read_only=True)
conn.execute("SET enable_progress_bar = false")
period = dict(period="custom", date_from=sys.argv[2], date_to=sys.argv[3])
asks = [
    ("aggregate, every metric", dict(metrics=",".join(METRICS)), None, False),
    ("aggregate, default metrics", {}, None, False),
    ("timeseries by day, visitors+pageviews", dict(metrics="visitors,pageviews"), None, True),
    ("breakdown page, visitors+pageviews", dict(metrics="visitors,pageviews", limit=10), "page", False),
    ("breakdown page, default metrics, limit 100", {}, "page", False),
    ("breakdown entry_page, visitors+visits", dict(metrics="visitors,visits", limit=10), "entry_page", False),
    ("breakdown source, visitors+visits", dict(metrics="visitors,visits", limit=10), "source", False),
    ("breakdown prop:plan, visitors+events", dict(metrics="visitors,events", limit=10), "prop:plan", False),
    ("filtered country==DE: aggregate", dict(filters="country==DE"), None, False),
    ("filtered country==DE: timeseries", dict(filters="country==DE"), None, True),
    ("filtered country==DE: breakdown page", dict(filters="country==DE", metrics="visitors,pageviews", limit=10), "page", False),
    ("filtered country==DE: prop:plan", dict(filters="country==DE"), "prop:plan", False),
]
out = tempfile.mktemp(suffix=".json")
conn.execute("SET enable_profiling = 'json'")
conn.execute(f"SET profiling_output = '{out}'")

def nodes(node, depth=0):
    yield node, depth
    for child in node.get("children", []):
        yield from nodes(child, depth + 1)

for name, extra, prop, series in asks:
    q = build_query(site_id="big.example", now_ms=int(time.time() * 1000), property=prop, **period, **extra)
    sql, params = stats_sql(q, group=prop, buckets=bucket_starts(q) if series else None)
    conn.execute(sql, params).fetchall()  # warm
    began = time.perf_counter()
    conn.execute(sql, params).fetchall()
    wall = (time.perf_counter() - began) * 1000
    prof = json.load(open(out))
    query, system = prof["query"], prof["system"]
    ops = [(n, d) for root in prof["operator"] for n, d in nodes(root)]
    total = sum(n.get("timing", 0) for n, _ in ops) or 1
    print(f"==== {name}: {wall:.0f} ms wall, DuckDB cpu {query['cpu_time'] * 1000:.0f} ms, "
          f"{query['total_rows_scanned']:,} rows scanned, row groups "
          f"{query['total_row_groups_scanned']}/{query['total_row_groups_to_scan']}, "
          f"peak buffer {system['peak_buffer_memory'] / 1e6:.0f} MB")
    for n, d in sorted(ops, key=lambda x: -x[0].get("timing", 0))[:7]:
        info = n.get("extra_info", {})
        keys = ("Aggregates", "Groups", "Join Type", "Conditions", "Filters", "Projections")
        detail = "; ".join(f"{k}: {str(info[k])[:90]}" for k in keys if info.get(k))
        print(f"  {n['timing'] / total * 100:5.1f} %  {n['timing'] * 1000:7.1f} ms  "
              f"{n['type']:<22} {n.get('intermediate_rows', 0):>12,} rows  {detail}")
    print(f"  SQL: {sql[:600]}")
    print()
"""  # noqa: E501


def duckdb_explain(path: Path, out: Path) -> str:
    """DuckDB's EXPLAIN ANALYZE of the heaviest dashboard queries, written to ``out``: which
    operator the time goes to (the schema may have moved on: then the error is written)."""
    done = subprocess.run(
        [sys.executable, "-c", _EXPLAIN, str(path), dataset.FIRST_DAY, dataset.LAST_DAY],
        capture_output=True, text=True, check=False, timeout=1200,
    )  # fmt: skip
    out.write_text(done.stdout + done.stderr[-3000:])
    return str(out)


def _range_ms() -> tuple[int, int]:
    start = int(dataset.START.timestamp() * 1000)
    return start, int(dataset.END.timestamp() * 1000)


def duckdb_reference(path: Path) -> dict[str, Any]:
    """Bare DuckDB scans of the site's 30 days (read-only, before the server opens the file)."""
    lo, hi = _range_ms()
    try:
        done = subprocess.run(
            [sys.executable, "-c", _DUCKDB_REFERENCE, str(path), str(lo), str(hi)],
            capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:  # the schema moved on: say so, go on
        return {"error": exc.stderr[-500:]}
    import json

    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def pg_reference(url: str) -> dict[str, Any]:
    import psycopg

    lo, hi = _range_ms()
    out: dict[str, Any] = {}
    where = "FROM events WHERE site_id = %(s)s AND ts >= %(lo)s AND ts < %(hi)s"
    sqls = {
        "count(*)": f"SELECT count(*) {where}",
        "count(DISTINCT visitor_id)": f"SELECT count(DISTINCT visitor_id) {where}",
    }
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for name, sql in sqls.items():
                took = []
                for _ in range(4):
                    began = time.perf_counter()
                    conn.execute(sql, {"s": SITE, "lo": lo, "hi": hi}).fetchall()
                    took.append((time.perf_counter() - began) * 1000)
                out[name] = {"first_ms": round(took[0], 1), "p50_ms": round(sorted(took[1:])[1], 1)}
    except psycopg.Error as exc:
        return {"error": str(exc)}
    return out


def _profile(server: ServerProcess, args: Any, name: str) -> dict[str, Any]:
    """py-spy over one quiet dashboard load and one round of every query."""
    assert server.proc is not None
    path = args.out_dir / f"profile-{name}-{args.stamp}.txt"
    recorder = Recorder(server.proc.pid, path, 600).start()
    window = Window(server.proc.pid).start()
    try:
        snapshot(server.port, dataset.PERIOD)
        rounds(server.port, 1, dataset.PERIOD, first=False)
    finally:
        window.stop()
        if recorder.proc is not None:
            recorder.proc.send_signal(2)  # SIGINT: py-spy writes what it has
        recorder.wait()
    found = summarize(path, threads_cpu_s=window.threads_cpu_s) if path.exists() else None
    return {"window": window.figures(), "summary": found}


def row5(args: Any) -> dict[str, Any]:
    kept = dataset.ensure_duckdb(args.duckdb_dir or dataset.DUCKDB_DIR, args.events)
    folder = Path(args.duckdb_dir or dataset.DUCKDB_DIR)
    out: dict[str, Any] = {
        "row": 5,
        "title": "DuckDB, 30 days of one site holding 9 M of 10 M events, uncached",
        "data": kept,
        "previous": "aggregate 1.8 s, all metrics 2.1 s, timeseries 1.9 s, page 2.0-5.3 s, entry pages 3.3 s, prop: 2.6 s",  # noqa: E501
        "goal": "every dashboard query p95 <= 100 ms, whole dashboard <= 300 ms",
    }
    with scratch("hitstream-scale-duckdb-", keep=False) as workdir:
        data_dir = dataset.working_copy(folder, workdir / "data")
        out["reference_bare_duckdb"] = duckdb_reference(data_dir / "hitstream.duckdb")
        if args.profile:
            explained = args.out_dir / f"profile-row5-explain-{args.stamp}.txt"
            out["explain"] = duckdb_explain(data_dir / "hitstream.duckdb", explained)
        env = {"HITSTREAM_CACHE_ENTRIES": "0", **dataset.SERVE_ENV}
        server = ServerProcess(data_dir, env=env).start(300)
        try:
            if not args.profile_only:
                out.update(measure(server, args, "duckdb"))
            if args.profile:
                out["profile"] = _profile(server, args, "row5-duckdb")
        finally:
            server.terminate(timeout=300)
            server.kill()
    if not args.profile_only and not args.no_baseline:
        # the same data, the same queries, without the rollups: every query scans raw events
        # (a fresh copy: a store that keeps no rollups marks the sites it writes uncovered)
        with scratch("hitstream-scale-duckdb-raw-", keep=False) as workdir:
            data_dir = dataset.working_copy(folder, workdir / "data")
            env = {
                "HITSTREAM_CACHE_ENTRIES": "0",
                "HITSTREAM_STORE_ROLLUPS": "false",
                **dataset.SERVE_ENV,
            }
            server = ServerProcess(data_dir, env=env).start(300)
            try:
                # quiet only: the same scans under load take minutes more and say no more
                out["raw_baseline"] = measure(server, args, "duckdb without rollups", loaded=False)
            finally:
                server.terminate(timeout=300)
                server.kill()
    if not args.profile_only:
        out["summary"] = summary(out, {"issue": out["previous"]})
    return out


def row6(args: Any) -> dict[str, Any]:
    import shutil

    free = shutil.disk_usage("/").free
    url = args.pg_url or dataset.PG_URL
    if free < 20e9 and dataset._pg_manifest(url) is None:
        return {"row": 6, "skipped": f"only {free / 1e9:.0f} GB free; the database needs ~11 GB"}
    kept = dataset.ensure_pg(url, args.events)
    out: dict[str, Any] = {
        "row": 6,
        "title": "PostgreSQL at 10 M events: every dashboard query, filtered and prop: breakdowns",
        "data": kept,
        "previous": "filtered queries and prop: breakdowns 12-50 s; a filtered dashboard takes minutes",  # noqa: E501
        "goal": "every query p95 <= 1 s",
        "reference_bare_postgresql": pg_reference(url),
    }
    with scratch("hitstream-scale-pg-", keep=False) as workdir:
        env = {"HITSTREAM_CACHE_ENTRIES": "0", "HITSTREAM_STORE_URL": url, **dataset.SERVE_ENV}
        server = ServerProcess(workdir / "data", env=env).start(300)
        try:
            out.update(measure(server, args, "postgresql"))
        finally:
            server.terminate(timeout=300)
            server.kill()
    out["summary"] = summary(out, {"issue": out["previous"]})
    return out
