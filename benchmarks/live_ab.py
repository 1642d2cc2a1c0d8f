"""Row 8 before and after a change, on one data set in one run: the live loop's CPU per view.

Two source trees take turns: ``--before`` (a git revision, exported with ``git archive`` into
a scratch folder) and this working tree. Each turn starts ``hitstream serve`` from one tree
(``PYTHONPATH`` puts that tree's ``src`` first; the processor child inherits it) on a fresh
working copy of the kept DuckDB folder, sends 1,000 events/s with a paced wrk (batches of 25,
loopback only, bounded by time and a request cap) and measures row 8's windows
(``scale_live.window``: the server's CPU share with 0, 1 and 3 dashboards). The order of the
two trees alternates per repetition; the live loop's cost is a window's share minus the same
turn's 0-dashboard window. With ``--profile``, the first repetition of each tree ends with one
more 1-dashboard window under ``py-spy record --subprocesses`` (both processes, one file in
``benchmarks/out``; read it with ``python -m benchmarks.profile FILE``), outside the measured
windows, since sampling costs CPU too.

    .venv/bin/python -m benchmarks.live_ab --before f7db635 --events 1000000 \\
        --duckdb-dir benchmarks/out/duckdb-1m --repeats 3 --live-seconds 20 [--profile]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from benchmarks import dataset, scale_live
from benchmarks.harness import OUT, median, scratch
from benchmarks.wrk import Background, paced, require_wrk

ROOT = Path(__file__).resolve().parent.parent
CASES = ("0 dashboards", "1 dashboard", "3 dashboards, 3 views")
VIEWS = {"1 dashboard": 1, "3 dashboards, 3 views": 3}


def export(revision: str, into: Path) -> Path:
    """``src`` of ``revision`` under ``into`` (``git archive``: the repository is untouched)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "src.tar"
    subprocess.run(
        ["git", "-C", str(ROOT), "archive", "-o", str(archive), revision, "src"], check=True
    )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def profiled(pid: int, port: int, seconds: int, out: Path) -> None:
    """One dashboard open (after its snapshot) while py-spy samples ``serve``'s processes."""
    from benchmarks.profile import Recorder

    client = scale_live.Client(port, {})
    client.start()
    client.ready.wait(600)
    recorder = Recorder(pid, out, seconds, rate=200).start()
    recorder.wait(seconds + 120)
    client.halt.set()
    client.join(30)
    print(f"profile: {out}", flush=True)


def turn(
    name: str, src: Path, folder: Path, workdir: Path, seconds: int, profile: Path | None
) -> list[dict[str, Any]]:
    from tests.server import ServerProcess

    data_dir = dataset.working_copy(folder, workdir / f"data-{name}")
    env = {**dataset.SERVE_ENV, "PYTHONPATH": str(src)}
    server = ServerProcess(data_dir, env=env).start(300)
    assert server.proc is not None
    total = (len(CASES) + 1) * (seconds + 200) + 120
    rate, batch = scale_live.RATE, scale_live.BATCH
    sender = Background(
        require_wrk(), server.url, scale_live.SITE, batch, paced(rate / batch, total)
    )
    runs = []
    try:
        time.sleep(5)
        for case in CASES:
            result = scale_live.window(server.proc.pid, server.url, server.port, case, seconds)
            result["tree"] = name
            runs.append(result)
            print(
                f"{name:6} {case:24} {result['core_percent']:6.1f} % core, updates/client "
                f"{result['updates_per_client']}, processed {result['processed_per_s']}/s, "
                f"load {result['load_start']}",
                flush=True,
            )
        if profile is not None:
            profiled(server.proc.pid, server.port, seconds, profile)
    finally:
        sender.finish()
        server.terminate(timeout=600)
        server.kill()
    return runs


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tree in ("before", "after"):
        mine = [r for r in runs if r["tree"] == tree]
        for case in CASES:
            windows = [r for r in mine if r["case"] == case]
            extra = []
            for r in windows:
                base = next(
                    b for b in mine if b["repeat"] == r["repeat"] and b["case"] == "0 dashboards"
                )
                extra.append(r["core_percent"] - base["core_percent"])
            views = VIEWS.get(case)
            out[f"{tree}: {case}"] = {
                "core_percent": median([r["core_percent"] for r in windows]),
                "live_loop_core_percent": round(median(extra), 1) if views else None,
                "per_view": round(median(extra) / views, 1) if views else None,
                "live_loop_each": [round(x, 1) for x in extra] if views else None,
                "updates_per_client": median([float(r["updates_per_client"]) for r in windows]),
                "processed_per_s": median([float(r["processed_per_s"]) for r in windows]),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--before", required=True, help="git revision of the 'before' tree")
    parser.add_argument("--events", type=int, default=dataset.EVENTS)
    parser.add_argument("--duckdb-dir", type=Path, default=dataset.DUCKDB_DIR)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--live-seconds", type=int, default=20)
    parser.add_argument("--profile", action="store_true", help="py-spy once per tree")
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    info = dataset.ensure_duckdb(args.duckdb_dir, args.events)
    runs: list[dict[str, Any]] = []
    with scratch("hitstream-live-ab-", keep=False) as workdir:
        before = export(args.before, workdir / "before")
        trees = {"before": before, "after": ROOT / "src"}
        for repeat in range(args.repeats):
            order = ["before", "after"] if repeat % 2 == 0 else ["after", "before"]
            for name in order:
                profile = None
                if args.profile and repeat == 0:
                    profile = OUT / f"live-ab-profile-{stamp}-{name}.txt"
                found = turn(
                    name, trees[name], args.duckdb_dir, workdir, args.live_seconds, profile
                )
                for result in found:
                    result["repeat"] = repeat
                    runs.append(result)
    body = {"before": args.before, "data": info, "runs": runs, "summary": summary(runs)}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"live-ab-{stamp}.json"
    path.write_text(json.dumps(body, indent=2) + "\n")
    print(json.dumps(body["summary"], indent=2))
    print(f"written {path}")


if __name__ == "__main__":
    main()
