"""``hitstream serve`` (or the collector role) under a steady paced load: CPU per event and p99.

Rows 1 and 2 drive the server as hard as 16 or 64 connections can (closed loop: each waits
for its answer, so latency turns into throughput). Real traffic is many browsers that do not
wait for each other; what it costs is the CPU per event at the rate it comes. Here paced wrk
(``benchmarks/wrk.py`` ``paced``: 64 connections, each waiting after every answer) sends single
events at each ``--rates`` figure; after 5 s of warm-up a window of ``--seconds`` reads the
server's CPU from ``/proc`` and the accepted events from ``/metrics``. Run it once per tree
(``PYTHONPATH`` for an older one) and alternate::

    .venv/bin/python -m benchmarks.paced_ingest --rates 3000,6000 --target serve
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from benchmarks import targets
from benchmarks.harness import scratch, write_result
from benchmarks.proc import Window
from benchmarks.wrk import Background, paced, require_wrk

SITE = "paced.example"
WARMUP_S = 5


def one(kind: str, rate: float, seconds: int) -> dict[str, Any]:
    wrk = require_wrk()
    with scratch("hitstream-paced-", keep=False) as workdir:
        target = targets.start(kind, workdir, sites=[SITE])
        sender = Background(wrk, target.url, SITE, 1, paced(rate, WARMUP_S + seconds + 5, 64))
        try:
            time.sleep(WARMUP_S)
            accepted0 = target.counter("hitstream_events_accepted_total")
            window = Window(target.pid).start()
            time.sleep(seconds)
            window.stop()
            accepted = target.counter("hitstream_events_accepted_total") - accepted0
            sent = sender.finish()
        finally:
            if sender.proc.poll() is None:
                sender.finish()
            target.stop()
    result: dict[str, Any] = {"target": kind, "rate": rate, **window.figures()}
    result["events_per_s"] = round(accepted / window.wall_s, 1)
    result["cpu_us_per_event"] = round(window.cpu_s / max(accepted, 1) * 1e6, 1)
    result["p50_ms"] = sent["latency_us"]["p50"] / 1000
    result["p99_ms"] = sent["latency_us"]["p99"] / 1000
    result["non_2xx"] = sent["errors"]["status"]
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="3000,6000", help="events per second, comma list")
    parser.add_argument("--target", default="serve", choices=("serve", "collector"))
    parser.add_argument("--seconds", type=int, default=15, help="measured window per rate")
    args = parser.parse_args(argv)
    runs = []
    for rate in (float(r) for r in args.rates.split(",")):
        result = one(args.target, rate, args.seconds)
        runs.append(result)
        print(
            f"{args.target} at {rate:,.0f}/s: {result['events_per_s']:,.0f} events/s, "
            f"{result['cpu_us_per_event']} µs CPU an event, {result['core_percent']} % core, "
            f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms",
            flush=True,
        )
    path = write_result("paced", {"args": vars(args), "runs": runs})
    print(json.dumps(runs, indent=1))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
