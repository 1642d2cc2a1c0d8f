"""Live latency: event received by the collector -> its WebSocket ``event`` frame, at 1,000/s.

Usage (from the repository root)::

    .venv/bin/python -m benchmarks.live_latency                  # 3 x (1, 5 dashboards) x 30 s
    .venv/bin/python -m benchmarks.live_latency --repeats 1 --duration 10 --clients 1   # quick

Each run starts a fresh ``hitstream serve`` (scratch data folder, 127.0.0.1 trusted as a
proxy), opens ``N`` dashboards (``/api/v1/live?site_id=...&period=day``) from this process and
waits for their snapshots, then a SEPARATE process (``hitstream generate --rate 1000``) sends a
steady load for ``--duration`` seconds to 127.0.0.1 only. The sender defaults to
``--mixed-visitors --batch 25 --concurrency 8`` (25 events of many visitors per request, ~40
requests/s at 1,000 events/s): with one visit per request (``--per-visit``, ~3 events per
request) it could not reach 1,000 events/s on a 2-core box. Check ``accepted_per_s`` against
``--rate``: a run that falls short measures latency at a lower load. Latency is measured two
ways:

- **server**: the delta of ``hitstream_live_latency_seconds`` in ``/metrics`` over the run
  (p50/p99 interpolated inside buckets, as Prometheus' ``histogram_quantile`` does; bucket
  bounds are coarse) and the p50/p99 of ``GET /api/v1/live/stats`` (its last 2,048 samples);
- **client**: for each ``event`` frame received, now minus each event's ``received_at`` (the
  collector's wall clock; same machine, so the same clock), p50/p99/max. This adds the
  socket, this process's event loop and JSON decoding to the server's figure.

Also recorded: what the sender got 202 for against its target, frames dropped, events skipped
by the per-client rate limit, and the spacing of ``update`` frames. Figures quoted are medians
over repetitions. Every run is bounded: the sender stops by itself after ``--duration``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec
from tests.server import ServerProcess
from websockets.asyncio.client import connect

from benchmarks.harness import machine, median, percentile, scratch, source_digest, write_result
from benchmarks.sampling import scrape

HISTOGRAM = "hitstream_live_latency_seconds_bucket"
_SENT = re.compile(
    r"sent (\d+) events in (\d+) requests over ([\d.]+)s \((\d+)/s\): "
    r"accepted (\d+), rejected (\d+), failed (\d+); "
    r"latency p50 ([\d.]+) ms, p99 ([\d.]+) ms"
)


@dataclass(slots=True)
class Dashboard:
    """One WebSocket client: what it received and when (wall-clock ms)."""

    latencies_ms: list[float] = field(default_factory=list)
    event_frames: int = 0
    events: int = 0
    skipped: int = 0
    updates_at: list[float] = field(default_factory=list)
    other: dict[str, int] = field(default_factory=dict)
    snapshot: asyncio.Event = field(default_factory=asyncio.Event)

    def take(self, text: str | bytes) -> None:
        now_ms = time.time() * 1000
        frame = msgspec.json.decode(text)
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "event":
            self.event_frames += 1
            self.skipped += int(frame.get("skipped", 0))
            for event in frame.get("events", []):
                self.events += 1
                received = event.get("received_at")
                if isinstance(received, int) and received > 0:
                    self.latencies_ms.append(now_ms - received)
        elif kind == "update":
            self.updates_at.append(now_ms)
        elif kind == "snapshot":
            self.snapshot.set()
        else:
            self.other[str(kind)] = self.other.get(str(kind), 0) + 1


async def follow(url: str, board: Dashboard, stop: asyncio.Event) -> None:
    async with connect(url, max_size=2**24) as socket:
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(socket.recv(), timeout=0.5)
            except TimeoutError:
                continue
            board.take(text)


def buckets(metrics: dict[str, float]) -> dict[float, float]:
    """Cumulative counts of the live latency histogram by upper bound (``+Inf`` included)."""
    out: dict[float, float] = {}
    for key, value in metrics.items():
        if key.startswith(HISTOGRAM + "{"):
            found = re.search(r'le="([^"]+)"', key)
            if found:
                out[float(found.group(1))] = value
    return out


def histogram_quantile(before: dict[float, float], after: dict[float, float], q: float) -> Any:
    """The ``q`` quantile (0..1, seconds) of observations made between two scrapes, linearly
    interpolated inside its bucket; ``None`` without observations."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower  # past the last finite bound: all we know is "at least"
            share = (rank - below) / (cumulative - below) if cumulative > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, cumulative
    return None


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def _pcts(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(percentile(values, 50), 1),
        "p99": round(percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


async def send_load(url: str, site: str, args: argparse.Namespace, repeat: int) -> dict[str, Any]:
    """``hitstream generate`` in its own process; its summary line parsed."""
    command = [sys.executable, "-m", "hitstream.cli", "generate", "--url", url, "--site", site]
    command += ["--rate", str(args.rate), "--duration", str(args.duration)]
    command += ["--batch", str(args.batch), "--concurrency", str(args.concurrency)]
    command += ["--seed", str(repeat)]
    command.append("--no-mixed-visitors" if args.per_visit else "--mixed-visitors")
    cpu = _children_cpu()
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=args.duration + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    cpu = _children_cpu() - cpu
    text = out.decode(errors="replace")
    found = _SENT.search(text)
    if found is None:
        raise RuntimeError(f"generate printed no summary (exit {proc.returncode}): {text[-800:]}")
    sent, requests, elapsed, _, accepted, rejected, failed, p50, p99 = found.groups()
    return {
        "target": round(args.rate * args.duration),
        "sent": int(sent),
        "requests": int(requests),
        "elapsed_s": float(elapsed),
        "accepted": int(accepted),
        "rejected": int(rejected),
        "failed": int(failed),
        "per_request": round(int(sent) / int(requests), 1) if int(requests) else 0.0,
        "accepted_per_s": round(int(accepted) / float(elapsed), 1) if float(elapsed) else 0.0,
        "request_p50_ms": float(p50),
        "request_p99_ms": float(p99),
        "cpu_s": round(cpu, 1),
    }


def _children_cpu() -> float:
    """CPU seconds of reaped children: the sender's own, a sign of whether it saturated."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def measure(
    server: ServerProcess, clients: int, repeat: int, args: argparse.Namespace
) -> Any:
    site = f"live-{clients}-{repeat}.bench"
    server.add_site(site, public=True)  # dashboards of a public site need no credential
    ws_url = server.url.replace("http://", "ws://") + f"/api/v1/live?site_id={site}&period=day"
    boards = [Dashboard() for _ in range(clients)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(follow(ws_url, board, stop)) for board in boards]
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0, headers=server.headers) as http:
        try:
            await asyncio.wait_for(asyncio.gather(*(b.snapshot.wait() for b in boards)), 30)
            before = await asyncio.to_thread(_scrape, server.url)
            sender = await send_load(server.url, site, args, repeat)
            await asyncio.sleep(args.settle)  # frames of the last events still on their way
            after = await asyncio.to_thread(_scrape, server.url)
            live_stats = (await http.get("/api/v1/live/stats")).json()
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
    hist_before, hist_after = buckets(before), buckets(after)
    observed = hist_after.get(float("inf"), 0.0) - hist_before.get(float("inf"), 0.0)
    client_ms = [v for b in boards for v in b.latencies_ms]
    update_gaps = [g / 1000 for b in boards for g in gaps(b.updates_at)]
    dropped = "hitstream_live_frames_dropped_total"
    return {
        "clients": clients,
        "repeat": repeat,
        "sender": sender,
        "server_accepted": int(
            after.get("hitstream_events_accepted_total", 0)
            - before.get("hitstream_events_accepted_total", 0)
        ),
        "server_histogram": {
            "observations": int(observed),
            "p50_ms": _ms(histogram_quantile(hist_before, hist_after, 0.50)),
            "p99_ms": _ms(histogram_quantile(hist_before, hist_after, 0.99)),
        },
        "live_stats": live_stats,
        "client": {
            "event_frames": sum(b.event_frames for b in boards),
            "events": sum(b.events for b in boards),
            "skipped": sum(b.skipped for b in boards),
            "latency_ms": _pcts(client_ms),
            "other_frames": {k: sum(b.other.get(k, 0) for b in boards) for k in _kinds(boards)},
        },
        "updates": {
            "frames": sum(len(b.updates_at) for b in boards),
            "gap_s": {
                "p50": round(percentile(update_gaps, 50), 3) if update_gaps else None,
                "max": round(max(update_gaps), 3) if update_gaps else None,
            },
        },
        "frames_dropped": int(after.get(dropped, 0) - before.get(dropped, 0)),
    }


def _scrape(url: str) -> dict[str, float]:
    with httpx.Client() as client:
        return scrape(client, url)


def _ms(seconds: Any) -> float | None:
    return None if seconds is None else round(float(seconds) * 1000, 1)


def _kinds(boards: list[Dashboard]) -> list[str]:
    return sorted({k for b in boards for k in b.other})


def run_one(clients: int, repeat: int, args: argparse.Namespace) -> dict[str, Any]:
    with scratch("hitstream-live-", args.keep) as workdir:
        env = {"HITSTREAM_LOG_LEVEL": "warning", "HITSTREAM_INGEST_RATE_PER_IP": "0"}
        server = ServerProcess(workdir / "data", env=env)
        try:
            result: dict[str, Any] = asyncio.run(measure(server.start(60), clients, repeat, args))
            return result
        finally:
            try:
                server.terminate(timeout=60)
            finally:
                server.kill()
            errors = [line for line in server.output().splitlines() if "ERROR" in line]
            if errors:
                print(f"  server log has errors: {errors[:5]}", file=sys.stderr)


def _mid(runs: list[dict[str, Any]], *path: str) -> float | None:
    values = []
    for run in runs:
        value: Any = run
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            values.append(float(value))
    return round(median(values), 3) if values else None


def summarize(runs: list[dict[str, Any]]) -> dict[int, dict[str, float | None]]:
    summary: dict[int, dict[str, float | None]] = {}
    for clients in dict.fromkeys(r["clients"] for r in runs):
        mine = [r for r in runs if r["clients"] == clients]
        summary[clients] = {
            "accepted_per_s": _mid(mine, "sender", "accepted_per_s"),
            "accepted": _mid(mine, "sender", "accepted"),
            "failed": _mid(mine, "sender", "failed"),
            "sender_cpu_s": _mid(mine, "sender", "cpu_s"),
            "request_p50_ms": _mid(mine, "sender", "request_p50_ms"),
            "request_p99_ms": _mid(mine, "sender", "request_p99_ms"),
            "server_hist_p50_ms": _mid(mine, "server_histogram", "p50_ms"),
            "server_hist_p99_ms": _mid(mine, "server_histogram", "p99_ms"),
            "live_stats_p50_ms": _mid_s(mine, "p50"),
            "live_stats_p99_ms": _mid_s(mine, "p99"),
            "client_p50_ms": _mid(mine, "client", "latency_ms", "p50"),
            "client_p99_ms": _mid(mine, "client", "latency_ms", "p99"),
            "client_max_ms": _mid(mine, "client", "latency_ms", "max"),
            "events_per_client": _per_client(mine, "events", clients),
            "skipped_per_client": _per_client(mine, "skipped", clients),
            "frames_dropped": _mid(mine, "frames_dropped"),
            "update_gap_p50_s": _mid(mine, "updates", "gap_s", "p50"),
            "update_gap_max_s": _mid(mine, "updates", "gap_s", "max"),
        }
    return summary


def _mid_s(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r["live_stats"]["latency_seconds"].get(key) for r in runs]
    known = [float(v) * 1000 for v in values if isinstance(v, int | float)]
    return round(median(known), 1) if known else None


def _per_client(runs: list[dict[str, Any]], key: str, clients: int) -> float | None:
    value = _mid(runs, "client", key)
    return None if value is None or clients == 0 else round(value / clients)


def markdown(summary: dict[int, dict[str, float | None]]) -> str:
    columns = list(next(iter(summary.values())))
    lines = ["| dashboards | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for clients, row in summary.items():
        lines.append(f"| {clients} | " + " | ".join(str(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clients", default="1,5", help="comma list of dashboard counts")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per run")
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--batch", type=int, default=25, help="events per request (sender)")
    parser.add_argument("--concurrency", type=int, default=8, help="sender requests in flight")
    parser.add_argument(
        "--per-visit",
        action="store_true",
        help="one visit per request (the earlier sender) instead of --mixed-visitors batches",
    )
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to wait after load")
    parser.add_argument("--keep", action="store_true", help="keep the data folders")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    before = machine()
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for clients in [int(c) for c in args.clients.split(",")]:
            run = run_one(clients, repeat, args)
            runs.append(run)
            print(
                f"#{repeat} {clients} dashboards: sender {run['sender']}"
                f" | hist {run['server_histogram']} | stats {run['live_stats']['latency_seconds']}"
                f" | client {run['client']} | updates {run['updates']}"
                f" | dropped {run['frames_dropped']}",
                flush=True,
            )
    summary = summarize(runs)
    result = {
        "benchmark": "live_latency",
        "command": " ".join(["python -m benchmarks.live_latency", *sys.argv[1:]]),
        "settings": vars(args),
        "machine": before,
        "loadavg_after": Path("/proc/loadavg").read_text().strip(),
        "src_digest_after": source_digest(),
        "summary": summary,
        "runs": runs,
    }
    path = write_result("live_latency", result)
    print(markdown(summary))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
