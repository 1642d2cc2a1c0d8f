"""The embedded event log alone, before and after a change: CPU per event to append and to read.

Decision 0043 (frames: a commit's messages in one SQLite row) changed only ``SQLiteLog``; the
ingest rows of ``scale.py`` see it through a whole HTTP server, whose noise on these shared
machines is larger than the change. This measures the log by itself. Two source trees take
turns: ``--before`` (a git revision, exported with ``git archive``) and this working tree.
Each turn is a fresh child process (``PYTHONPATH`` puts that tree's ``src`` first) on a fresh
log file that

- appends ``--events`` messages of ``--size`` bytes (an accepted event's size as the collector
  encodes it) from ``--appenders`` concurrent tasks, each appending ``n`` messages at a time
  (case "single": n = 1 with 64 appenders, the tracker's requests; "few": n = 1 with 8, a
  commit of a few events as at 16 connections; "batch": n = 100 with 16 appenders, a
  server's batches); group commit works as in the collector (one loop turn, one commit);
- then reads them all back with one consumer in polls of 5,000 (the processor's way).

The figure is the child's CPU time (every thread: the writer's too) per event, with the wall
rate beside it. Trees alternate per repetition and case; medians of ``--repeats`` and the
ratio after/before. Loopback-free: nothing leaves the process but the file.

    .venv/bin/python -m benchmarks.log_ab --before ba074a4 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import machine, median, write_result
from benchmarks.live_ab import ROOT, export

CASES = {"single": (1, 64), "few": (1, 8), "batch": (100, 16)}


async def _child(events: int, per_append: int, appenders: int, size: int) -> dict[str, float]:
    from hitstream.log.sqlite import SQLiteLog

    value = (b'{"event_id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",' + b"x" * size)[:size]
    key = b"bench.example\x1fa1b2c3d4e5f60718293a4b5c6d7e8f90"
    with tempfile.TemporaryDirectory(prefix="log_ab-") as folder:
        log = SQLiteLog(Path(folder) / "log.sqlite3")
        await log.start()
        rounds = events // (per_append * appenders)
        message = [(key, value)] * per_append

        async def appender() -> None:
            for _ in range(rounds):
                await log.append(message)

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(appender() for _ in range(appenders)))
        append_cpu, append_wall = time.process_time() - cpu, time.perf_counter() - wall
        written = rounds * per_append * appenders

        async def nowhere(partition: int) -> int | None:
            return None

        consumer = log.consumer("bench", nowhere)
        read = 0
        cpu, wall = time.process_time(), time.perf_counter()
        while read < written:
            got = await consumer.poll(5_000, 1.0)
            if not got:
                raise SystemExit(f"read {read} of {written}")
            read += len(got)
        read_cpu, read_wall = time.process_time() - cpu, time.perf_counter() - wall
        await consumer.close()
        commits = log.commits
        await log.close()
    return {
        "events": written,
        "commits": commits,
        "append_cpu_us_per_event": append_cpu / written * 1e6,
        "append_events_per_s": written / append_wall,
        "read_cpu_us_per_event": read_cpu / read * 1e6,
        "read_events_per_s": read / read_wall,
    }


def turn(src: Path, case: str, args: argparse.Namespace) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    command = [sys.executable, "-m", "benchmarks.log_ab", "--child", case]
    command += ["--events", str(args.events), "--size", str(args.size)]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--before",
        help="git revision without the change (required: HEAD after the commit compares the "
        "change with itself)",
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--events", type=int, default=128_000, help="per turn")
    parser.add_argument("--size", type=int, default=756, help="bytes of each message's value")
    parser.add_argument("--child", choices=sorted(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        per_append, appenders = CASES[args.child]
        print(json.dumps(asyncio.run(_child(args.events, per_append, appenders, args.size))))
        return
    if not args.before:
        parser.error("--before REVISION is required")
    with tempfile.TemporaryDirectory(prefix="log_ab-src-") as folder:
        trees = {"before": export(args.before, Path(folder)), "after": ROOT / "src"}
        runs: dict[str, dict[str, list[dict[str, float]]]] = {
            case: {name: [] for name in trees} for case in CASES
        }
        for repeat in range(args.repeats):
            for case in CASES:
                order = list(trees) if repeat % 2 == 0 else list(reversed(trees))
                for name in order:
                    result = turn(trees[name], case, args)
                    runs[case][name].append(result)
                    print(
                        f"{case:6s} #{repeat} {name:6s} append "
                        f"{result['append_cpu_us_per_event']:6.2f} µs CPU/event "
                        f"{result['append_events_per_s']:>9,.0f}/s ({result['commits']} commits)"
                        f"  read {result['read_cpu_us_per_event']:5.2f} µs "
                        f"{result['read_events_per_s']:>10,.0f}/s",
                        flush=True,
                    )
    summary: dict[str, Any] = {}
    for case, by_tree in runs.items():
        summary[case] = {}
        for figure in ("append_cpu_us_per_event", "read_cpu_us_per_event"):
            before = median([r[figure] for r in by_tree["before"]])
            after = median([r[figure] for r in by_tree["after"]])
            summary[case][figure] = {
                "before": round(before, 2),
                "after": round(after, 2),
                "ratio": round(after / before, 3),
            }
        print(case, json.dumps(summary[case]))
    path = write_result(
        "log_ab",
        {"machine": machine(), "args": vars(args), "summary": summary, "runs": runs},
    )
    print(f"results: {path}")


if __name__ == "__main__":
    main()
