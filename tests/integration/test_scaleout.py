"""Scale-out for real: 2 collectors, 2 processors, 2 web processes on Kafka, PostgreSQL and Redis.

100,000 events go in through both collectors while one processor is SIGKILLed in the middle.
Afterwards PostgreSQL holds exactly the events that were answered 202, each once, and a
WebSocket client of the *other* web process has been pushed the same total.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from tests.brokers import Tansu
from tests.server import ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOTAL = 100_000


def _counters(url: str) -> dict[str, float]:
    """A role's event counters from its ``/metrics`` (for a failure's message)."""
    try:
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.HTTPError as exc:
        return {"unreachable": 0.0, str(exc): 0.0}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("hitstream_events_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class LiveWatcher(threading.Thread):
    """A dashboard client: keeps the last aggregate pushed by one web process.

    Like the real dashboard it reconnects when the connection drops (on this 2-core machine,
    six hitstream processes, PostgreSQL, the broker and the load share the CPU); every
    (re)connection starts with a snapshot, so the last total seen is always the current one.
    """

    def __init__(self, url: str, site: str, headers: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.headers = headers
        self.url = url.replace("http://", "ws://") + f"/api/v1/live?site_id={site}&period=7d"
        self.last_events: float = -1
        self.frames = 0
        self.connections = 0
        self.stop_flag = False

    def run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        while not self.stop_flag:
            try:
                async with websockets.connect(
                    self.url,
                    max_size=2**24,
                    ping_interval=None,
                    open_timeout=30,
                    additional_headers=self.headers,
                ) as socket:
                    self.connections += 1
                    while not self.stop_flag:
                        try:
                            raw = await asyncio.wait_for(socket.recv(), 0.5)
                        except TimeoutError:
                            continue
                        frame: dict[str, Any] = json.loads(raw)
                        if frame["type"] in ("snapshot", "update"):
                            self.frames += 1
                            self.last_events = frame["aggregate"]["results"]["events"]["value"]
            except (OSError, websockets.ConnectionClosed, TimeoutError):
                await asyncio.sleep(0.5)


def test_two_of_each_role_with_a_processor_killed(
    tmp_path: Path, kafka_broker: Tansu, pg_database: str, redis_url: str
) -> None:
    topic = f"scale-{uuid.uuid4().hex[:8]}"
    site = f"scale-{uuid.uuid4().hex[:6]}.test"
    env = {
        "HITSTREAM_LOG_URL": f"kafka://{kafka_broker.bootstrap}/{topic}",
        "HITSTREAM_KAFKA_PARTITIONS": "4",
        "HITSTREAM_KAFKA_SESSION_TIMEOUT_MS": "6000",
        "HITSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
        "HITSTREAM_STORE_URL": pg_database,
        "HITSTREAM_FANOUT_URL": redis_url,
        "HITSTREAM_CACHE_URL": redis_url,
        "HITSTREAM_SALTS_URL": redis_url,
        "HITSTREAM_LOG_LEVEL": "info",  # the role logs are kept in the test folder
        "HITSTREAM_SITES": site,  # declared: every role registers it if missing
        "HITSTREAM_INGEST_RATE_PER_IP": "0",  # two load processes, one address, full speed
    }

    def role(command: str, n: int) -> ServerProcess:
        return ServerProcess(tmp_path / f"{command}{n}", env=env, command=command)

    web = [role("web", 1).start(timeout=60), role("web", 2).start(timeout=60)]
    processors = [role("processor", 1).start(timeout=60), role("processor", 2).start(timeout=60)]
    collectors = [role("collector", 1).start(timeout=60), role("collector", 2).start(timeout=60)]
    everyone = web + processors + collectors
    watcher = LiveWatcher(web[1].url, site, web[1].headers)
    watcher.start()
    loads = []
    try:
        for n, collector in enumerate(collectors):
            out = tmp_path / f"answered{n}.txt"
            loads.append(
                (
                    out,
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "tests.load_process",
                            collector.url,
                            str(out),
                            "240",
                            "200",
                            "3",
                            str(TOTAL // 2),
                            site,
                        ]
                    ),
                )
            )

        def answered() -> list[str]:
            ids: list[str] = []
            for out, _ in loads:
                if out.exists():
                    ids.extend(x for x in out.read_text().splitlines() if x and x != "done")
            return ids

        deadline = time.monotonic() + 120
        while len(answered()) < TOTAL * 0.4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert processors[0].proc is not None
        processors[0].proc.kill()  # SIGKILL mid-stream: the other processor must take over
        processors[0].proc.wait(10)
        for _, load in loads:
            assert load.wait(300) == 0
        ids = answered()
        assert len(ids) == TOTAL, "every event should have been answered 202 eventually"

        deadline = time.monotonic() + 180
        stored = 0
        while time.monotonic() < deadline:
            body = httpx.get(
                f"{web[0].url}/api/v1/stats/aggregate",
                # 7d, not day: a load may span midnight (it did once: "day" then counted 0)
                params={"site_id": site, "period": "7d", "metrics": "events"},
                timeout=30,
                headers=web[0].headers,
            ).json()
            stored = body["results"]["events"]["value"]
            if stored >= TOTAL:
                break
            time.sleep(0.5)
        with psycopg.connect(pg_database) as conn:
            rows = conn.execute(
                "SELECT event_id::text FROM events WHERE site_id = %s", (site,)
            ).fetchall()
            drops = conn.execute("SELECT reason, sum(count) FROM drops GROUP BY reason").fetchall()
        in_store = [r[0] for r in rows]
        assert stored == TOTAL, (  # what tells a loss from a miscount, should it happen again
            f"the stats API counts {stored}; the events table holds {len(in_store)} rows, "
            f"{len(set(ids) - set(in_store))} answered ids are missing from it; drops {drops}; "
            f"processor 2: {_counters(processors[1].url)}"
        )
        assert len(in_store) == len(set(in_store)), "an event was stored twice"
        assert set(in_store) == set(ids), "the store differs from what was answered 202"

        # the load is over: the web processes, starved of CPU until now, catch up
        deadline = time.monotonic() + 120
        while watcher.last_events != TOTAL and time.monotonic() < deadline:
            time.sleep(0.2)
        live_stats = httpx.get(
            f"{web[1].url}/api/v1/live/stats", timeout=10, headers=web[1].headers
        ).text
        assert watcher.last_events == TOTAL, (
            f"web 2's WebSocket client saw {watcher.last_events} ({watcher.frames} frames, "
            f"{watcher.connections} connections); live stats: {live_stats}"
        )
        assert watcher.frames >= 2

        # a refused event at collector 1 shows on the data-quality view of web process 2
        refused = httpx.post(
            f"{collectors[0].url}/api/v1/events",
            json={"site_id": site, "type": "teleport", "url": "https://x.test/"},
            timeout=10,
        )
        assert refused.status_code == 422
        deadline = time.monotonic() + 10
        rejected: dict[str, int] = {}
        while not rejected and time.monotonic() < deadline:
            quality = httpx.get(
                f"{web[1].url}/api/v1/quality", params={"site_id": site}, headers=web[1].headers
            ).json()
            rejected = quality["rejected"]
            time.sleep(0.2)
        assert list(rejected.values()) == [1] and next(iter(rejected)).startswith("type: ")
    finally:
        watcher.stop_flag = True
        for _, load in loads:
            if load.poll() is None:
                load.kill()
        for process in everyone:
            process.kill()


def test_a_key_made_through_one_web_process_works_on_another(
    tmp_path: Path, pg_database: str
) -> None:
    """Two web processes on one PostgreSQL database: a site and a key made through the first
    are honoured by the second within about a second, and so is the key's revocation."""
    env = {"HITSTREAM_STORE_URL": pg_database}
    first = ServerProcess(tmp_path / "web1", env=env, command="web").start(timeout=60)
    second = ServerProcess(tmp_path / "web2", env=env, command="web").start(timeout=60)
    try:
        first.add_site("shared.example")
        made = httpx.post(
            f"{first.url}/api/v1/sites/shared.example/keys",
            json={"scope": "read"},
            headers=first.headers,
        ).json()
        key = {"Authorization": f"Bearer {made['key']}"}
        url = f"{second.url}/api/v1/stats/aggregate?site_id=shared.example"

        def status() -> int:
            return httpx.get(url, headers=key, timeout=10).status_code

        deadline = time.monotonic() + 5
        while status() != 200:
            assert time.monotonic() < deadline, "the second process never honoured the key"
            time.sleep(0.1)
        revoked = httpx.delete(f"{second.url}/api/v1/keys/{made['key_id']}", headers=second.headers)
        assert revoked.status_code == 200
        first_url = f"{first.url}/api/v1/stats/aggregate?site_id=shared.example"
        deadline = time.monotonic() + 5
        while httpx.get(first_url, headers=key, timeout=10).status_code != 401:
            assert time.monotonic() < deadline, "the first process still took a revoked key"
            time.sleep(0.1)
    finally:
        for process in (first, second):
            process.terminate(timeout=60)
            process.kill()
