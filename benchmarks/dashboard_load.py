"""How long the dashboard takes to show a big site: from page load to the first breakdown row.

Starts ``hitstream web`` on an existing store (no result cache: every load asks the store),
opens ``/?site_id=...&period=...`` in headless Debian Chromium through Playwright, and times
``goto`` to the first breakdown row on screen (the live snapshot: aggregate with the previous
period, timeseries, realtime, 13 breakdowns, asked at once). ``--raw`` turns the PostgreSQL
rollups off (the baseline). A screenshot of the last load goes to ``benchmarks/out/``.

    python -m benchmarks.dashboard_load --store-url postgresql://.../db --site big.example
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright
from tests.server import ServerProcess

from benchmarks.harness import machine, median

CHROMIUM = "/usr/bin/chromium"
FIRST_ROW = "() => !!document.querySelector('.panel.breakdown .row')"


def loads(url: str, runs: int, shot: Path, timeout_s: float) -> list[float]:
    took: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            for _ in range(runs):
                page = browser.new_page(viewport={"width": 1400, "height": 1800})
                began = time.perf_counter()
                page.goto(url)
                page.wait_for_function(FIRST_ROW, timeout=timeout_s * 1000)
                took.append(time.perf_counter() - began)
                page.screenshot(path=str(shot))
                page.close()
        finally:
            browser.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store-url", required=True)
    parser.add_argument("--site", required=True)
    parser.add_argument("--period", default="30d")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--raw", action="store_true", help="HITSTREAM_STORE_ROLLUPS=false")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per load")
    args = parser.parse_args()
    env = {
        "HITSTREAM_STORE_URL": args.store_url,
        "HITSTREAM_CACHE_ENTRIES": "0",
        "HITSTREAM_STORE_ROLLUPS": "false" if args.raw else "true",
    }
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    shot = out / f"dashboard-{'raw' if args.raw else 'rollups'}-{stamp}.png"
    with tempfile.TemporaryDirectory() as scratch:
        web = ServerProcess(Path(scratch) / "web", env=env, command="web")
        web.start(timeout=60)
        try:
            url = f"http://127.0.0.1:{web.port}/?site_id={args.site}&period={args.period}"
            took = loads(url, args.runs, shot, args.timeout)
        finally:
            web.kill()
    report: dict[str, Any] = {
        "machine": machine(),
        "args": vars(args) | {"store_url": "(given)"},
        "seconds": [round(t, 2) for t in took],
        "median_s": round(median(took), 2),
        "screenshot": str(shot),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
