"""The data disk full under load, with the embedded parts (``hitstream serve``: SQLite log and
DuckDB store in one data folder, here a 64 MiB tmpfs filled to the last byte).

Issue 8: ingest answered 503 correctly, but ``/readyz`` said ready the whole time. Here, while
the disk refuses writes, collectors answer 503 + Retry-After and ``/readyz`` is 503 naming the
disk; once space is freed the same process takes events again, stores everything it
acknowledged once, and says ready.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import duckdb
import httpx
import pytest

from tests.conftest import _missing
from tests.faults.harness import Load, ReadyWatch, Tally, outage, send_probe, wait_for
from tests.faults.services import SmallDisk
from tests.server import ServerProcess

pytestmark = [pytest.mark.faults, pytest.mark.slow]
FULL_S = outage(5.0)


def events_counted(server: ServerProcess, site: str, filters: str | None = None) -> float:
    params = {"site_id": site, "period": "7d", "metrics": "events"}  # may span midnight
    if filters:
        params["filters"] = filters
    body = httpx.get(
        f"{server.url}/api/v1/stats/aggregate", params=params, headers=server.headers, timeout=30
    ).json()
    return float(body["results"]["events"]["value"])


def duckdb_ids(data: Path, site: str) -> list[str]:
    con = duckdb.connect(str(data / "hitstream.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT CAST(event_id AS VARCHAR) FROM events WHERE site_id = ?", [site]
        ).fetchall()
    finally:
        con.close()
    return [str(row[0]) for row in rows]


def test_disk_full_refuses_then_recovers_losing_nothing(tmp_path: Path) -> None:
    site = f"disk-{uuid.uuid4().hex[:6]}.test"
    disk = SmallDisk(tmp_path / "data", size_mib=64)
    problem = disk.mount()
    if problem is not None:
        _missing(f"cannot mount a small tmpfs for the data folder: {problem}")
    server = ServerProcess(
        disk.folder,
        env={
            "HITSTREAM_LOG_LEVEL": "info",
            "HITSTREAM_SITES": site,
            "HITSTREAM_INGEST_RATE_PER_IP": "0",
        },
    )
    load: Load | None = None
    try:
        server.start(timeout=90)
        load = Load.start(server.url, tmp_path / "answered.txt", site)
        with ReadyWatch({"serve": server}) as ready:
            wait_for("events in the store", lambda: events_counted(server, site) >= 200, 60)
            full_at = time.time()
            filled = disk.fill()
            wait_for(
                "/readyz to name the disk",
                lambda: ready.saw_unready("serve", "disk", full_at, time.time()),
                30,
            )
            time.sleep(max(0.0, full_at + FULL_S - time.time()))
            disk.free()
            freed_at = time.time()
            send_probe(server, site)
            wait_for(
                "the probe event in the store",
                lambda: events_counted(server, site, "page==/probe") == 1,
                60,
            )
            recovery_s = time.time() - freed_at
            time.sleep(2.0)
            load.stop()
            answered = load.answered()
            wait_for(
                "every acknowledged event counted",
                lambda: events_counted(server, site) >= len(set(answered)) + 1,
                60,
                every=0.5,
                fail=False,
            )
            wait_for("ready again", lambda: ready.ready_now("serve"), 30)
        assert server.proc is not None and server.proc.poll() is None, "serve kept running"
        assert server.terminate() == 0  # SIGTERM drains; DuckDB can then be read here
        tally = Tally(
            fault="data disk full (serve: SQLite log + DuckDB)",
            answered=answered,
            stored=duckdb_ids(disk.folder, site),
            in_doubt=load.in_doubt(),
            probes=set(duckdb_ids(disk.folder, site)) - set(answered) - load.in_doubt(),
            responses=load.responses(),
            recovery_s=recovery_s,
            outage_s=freed_at - full_at,
            extra={"filler_mib": round(filled / 2**20, 1)},
        )
        assert len(tally.probes) == 1, "one probe event, and nothing else nobody sent"
        tally.assert_exact()
        during = tally.statuses(full_at, freed_at)
        assert during[503] > 0, f"collectors should refuse while the disk is full: {during}"
        assert tally.statuses(freed_at)[202] > 0
        tally.record()
    finally:
        if load is not None:
            load.kill()
        server.kill()
        disk.free()
        disk.unmount()
