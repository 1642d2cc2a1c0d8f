"""``python -m benchmarks``: the whole suite with default settings (about 10 minutes on 2 cores).

Runs ``benchmarks.ingest`` then ``benchmarks.stats_latency``; each writes its JSON result in
``benchmarks/out/``. Exits non-zero if either benchmark's checks failed.
"""

from __future__ import annotations

import sys

from benchmarks import ingest, stats_latency


def main() -> None:
    failed: list[str] = []
    for name, run in (("ingest", ingest.main), ("stats_latency", stats_latency.main)):
        print(f"== {name}", flush=True)
        try:
            run([])
        except SystemExit as exc:
            if exc.code not in (None, 0):
                print(f"{name} failed: {exc.code}", file=sys.stderr)
                failed.append(name)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
