"""Row 8 of issue 11: the CPU that open dashboards cost while 1,000 events/s arrive on a big site.

``hitstream serve`` runs on a working copy of the kept 10 M DuckDB folder with its default
cache; a paced wrk sends 1,000 events/s (batches of 25) to ``big.example`` for the whole row.
Dashboards are WebSocket ``/api/v1/live`` clients on a view holding the site's 10 M-event month
and today (``period=custom`` from the data set's first day to today), so every processed batch
changes what they show. Per repetition, in rotating order, windows of ``--live-seconds`` with:
0 dashboards (the baseline: ingest alone), 1 dashboard, 5 dashboards on the same view, and 3
dashboards on 3 different views (this month, ``day``, ``7d``), and 1 dashboard on the month
under ``country==DE`` (its breakdowns scan: decision 0029 spaces its updates). Each window
starts once the processor's backlog is under 2,000 events (waiting at most 3 minutes) and
every client got its snapshot (its time is kept). Per window: the server's CPU share (``/proc``);
the live loop's cost = that minus the 0-dashboard window of the same repetition; ``update``
frames per client and their spacing; the stats cache's hits and misses
(``hitstream_query_seconds_count``) and the seconds spent in queries; the processor's backlog.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.sync.client import connect

from benchmarks import dataset
from benchmarks.harness import median, scratch
from benchmarks.proc import Window
from benchmarks.sampling import scrape
from benchmarks.wrk import Background, paced, require_wrk

SITE = "big.example"
RATE, BATCH = 1000.0, 25


def month_to_today() -> dict[str, str]:
    return {
        "period": "custom",
        "from": dataset.FIRST_DAY,
        "to": datetime.now(UTC).date().isoformat(),
    }


CASES: dict[str, list[dict[str, str]]] = {
    "0 dashboards": [],
    "1 dashboard": [{}],
    "5 dashboards, one view": [{}] * 5,
    "3 dashboards, 3 views": [{}, {"period": "day"}, {"period": "7d"}],
    "1 dashboard, filtered": [{"filters": "country==DE"}],
}
"""Views per client ({} = the month up to today; a view without a period is that month)."""


class Client(threading.Thread):
    """One dashboard: connects, waits for its snapshot, then counts frames until stopped."""

    def __init__(self, port: int, view: dict[str, str]) -> None:
        super().__init__(daemon=True)
        params = {"site_id": SITE, **({} if "period" in view else month_to_today()), **view}
        self.url = f"ws://127.0.0.1:{port}/api/v1/live?{urlencode(params)}"
        self.ready = threading.Event()
        self.halt = threading.Event()
        self.snapshot_ms: float | None = None
        self.updates: list[float] = []
        self.events = 0
        self.error = ""

    def run(self) -> None:
        began = time.perf_counter()
        try:
            with connect(self.url, open_timeout=60, max_size=None) as ws:
                while not self.halt.is_set():
                    try:
                        frame = ws.recv(timeout=0.5)
                    except TimeoutError:
                        continue
                    text = frame.decode() if isinstance(frame, bytes) else frame
                    if text.startswith('{"type":"snapshot"'):
                        self.snapshot_ms = (time.perf_counter() - began) * 1000
                        self.ready.set()
                    elif text.startswith('{"type":"update"'):
                        self.updates.append(time.monotonic())
                    elif text.startswith('{"type":"event"'):
                        self.events += 1
        except Exception as exc:  # reported with the window's figures
            self.error = repr(exc)
        finally:
            self.ready.set()


def _counters(url: str) -> dict[str, float]:
    with httpx.Client(timeout=30.0) as client:
        series = scrape(client, url)
    out = {
        "accepted": series.get("hitstream_events_accepted_total", 0.0),
        "processed": series.get("hitstream_events_processed_total", 0.0),
        "query_seconds": series.get("hitstream_query_seconds_sum", 0.0),
        "writes": series.get("hitstream_store_write_seconds_count", 0.0),
        "write_seconds": series.get("hitstream_store_write_seconds_sum", 0.0),
    }
    for outcome in ("hit", "miss"):
        out[outcome] = sum(
            v
            for k, v in series.items()
            if k.startswith("hitstream_query_seconds_count{") and f'cache="{outcome}"' in k
        )
    return out


def settle(url: str, backlog: int = 2_000, timeout: float = 180.0) -> float:
    """Wait until the processor's backlog is under ``backlog`` events (dashboards of the
    previous window may have starved it), so each window starts from the same state; return
    the seconds waited."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        now = _counters(url)
        if now["accepted"] - now["processed"] < backlog:
            break
        time.sleep(1.0)
    return round(time.monotonic() - began, 1)


def window(pid: int, url: str, port: int, case: str, seconds: int) -> dict[str, Any]:
    settled_s = settle(url)
    clients = [Client(port, view) for view in CASES[case]]
    for client in clients:
        client.start()
    for client in clients:
        client.ready.wait(1800)
    before = _counters(url)
    for client in clients:
        client.updates.clear()
    measured = Window(pid).start()
    time.sleep(seconds)
    measured.stop()
    after = _counters(url)
    for client in clients:
        client.halt.set()
    for client in clients:
        client.join(30)
    gaps = [b - a for c in clients for a, b in zip(c.updates, c.updates[1:], strict=False)]
    delta = {k: after[k] - before[k] for k in after}
    return {
        "case": case,
        "settle_s": settled_s,
        "backlog_at_start": int(before["accepted"] - before["processed"]),
        **measured.figures(),
        "snapshot_ms": [round(c.snapshot_ms) for c in clients if c.snapshot_ms is not None],
        "errors": [c.error for c in clients if c.error],
        "updates_per_client": round(median([float(len(c.updates)) for c in clients]), 1)
        if clients
        else 0,
        "update_gap_s_median": round(median(gaps), 2) if gaps else None,
        "cache_hits": int(delta["hit"]),
        "cache_misses": int(delta["miss"]),
        "query_seconds_per_s": round(delta["query_seconds"] / measured.wall_s, 2),
        "accepted_per_s": round(delta["accepted"] / measured.wall_s),
        "processed_per_s": round(delta["processed"] / measured.wall_s),
        "backlog_at_end": int(after["accepted"] - after["processed"]),
        "store_writes_per_s": round(delta["writes"] / measured.wall_s, 1),
        "store_write_ms_mean": round(delta["write_seconds"] / delta["writes"] * 1000, 1)
        if delta["writes"]
        else None,
    }


def row(args: Any) -> dict[str, Any]:
    from tests.server import ServerProcess

    folder = Path(args.duckdb_dir or dataset.DUCKDB_DIR)
    kept = dataset.ensure_duckdb(folder, args.events)
    runs: list[dict[str, Any]] = []
    names = [name for name in CASES if not args.live_cases or name in args.live_cases]
    with scratch("hitstream-scale-live-", keep=False) as workdir:
        data_dir = dataset.working_copy(folder, workdir / "data")
        server = ServerProcess(data_dir, env=dataset.SERVE_ENV).start(300)
        assert server.proc is not None
        total = args.repeats * len(names) * (args.live_seconds + 120) + 600
        sender = Background(require_wrk(), server.url, SITE, BATCH, paced(RATE / BATCH, total))
        try:
            time.sleep(5)
            for repeat in range(args.repeats):
                shift = repeat % len(names)
                for case in names[shift:] + names[:shift]:
                    result = window(
                        server.proc.pid, server.url, server.port, case, args.live_seconds
                    )
                    result["repeat"] = repeat
                    runs.append(result)
                    print(
                        f"row 8 #{repeat} {case:24} {result['core_percent']:6.1f} % core, "
                        f"updates/client {result['updates_per_client']}, hits "
                        f"{result['cache_hits']} misses {result['cache_misses']}, snapshots "
                        f"{result['snapshot_ms']} ms, backlog {result['backlog_at_end']}",
                        flush=True,
                    )
        finally:
            sent = sender.finish()
            server.terminate(timeout=600)
            server.kill()
    return {
        "row": 8,
        "title": "open dashboards on a 10 M-event site while 1,000 events/s arrive: live loop CPU",
        "previous": "every write bumps the data version: the cache never hits; each update re-runs range queries",  # noqa: E501
        "goal": "live updates every second costing <= 10 % of a core per watched site",
        "data": kept,
        "sender": {"events_per_s": sent["events_per_s"], "non_2xx": sent["errors"]["status"]},
        "runs": runs,
        "summary": summarize_runs(runs),
    }


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case in CASES:
        mine = [r for r in runs if r["case"] == case]
        if not mine:  # not asked (--live-cases)
            continue
        extra = []
        for r in mine:
            base = next(
                (b for b in runs if b["repeat"] == r["repeat"] and b["case"] == "0 dashboards"),
                None,
            )
            if base is not None:
                extra.append(r["core_percent"] - base["core_percent"])
        hits = sum(r["cache_hits"] for r in mine)
        misses = sum(r["cache_misses"] for r in mine)
        out[case] = {
            "core_percent": median([r["core_percent"] for r in mine]),
            "live_loop_core_percent": round(median(extra), 1) if extra else None,
            "updates_per_client": median([float(r["updates_per_client"]) for r in mine]),
            "update_gap_s": median(
                [r["update_gap_s_median"] for r in mine if r["update_gap_s_median"]]
            )
            if any(r["update_gap_s_median"] for r in mine)
            else None,
            "cache_hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
            "query_seconds_per_s": median([r["query_seconds_per_s"] for r in mine]),
            "processed_per_s": median([float(r["processed_per_s"]) for r in mine]),
            "backlog_at_end": median([float(r["backlog_at_end"]) for r in mine]),
        }
    return out
