"""PostgreSQL stopped and started under load, with the SQLite and the Redis Streams log.

Issue 8 measured 413 of 413 and 426 of 426 acknowledged events lost this way (and 12,792 of
37,395 under load): the processor skipped the batch it had polled when the store failed.
Here collectors keep answering 202 (the store is not theirs), the processor and web say
unready naming the store, stats fail fast with 503 + Retry-After, and once PostgreSQL is
back every event answered 202 is stored exactly once by the same processes.
"""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import stored_ids
from tests.faults.harness import Load, ReadyWatch, Roles, Tally, outage, send_probe, wait_for
from tests.faults.services import PrivatePostgres, PrivateRedis
from tests.server import ServerProcess

pytestmark = [pytest.mark.faults, pytest.mark.slow]
OUTAGE_S = outage(6.0)


@pytest.mark.parametrize("log_kind", ["sqlite", "redis"])
def test_postgres_stopped_and_started_loses_nothing(
    tmp_path: Path, private_postgres: PrivatePostgres, pg_url: str, log_kind: str
) -> None:
    site = f"pg-{log_kind}-{uuid.uuid4().hex[:6]}.test"
    redis = None
    if log_kind == "redis":
        redis = PrivateRedis(tmp_path / "redis", persistent=False)
        redis.start()
        log_url = f"{redis.url}?stream=faults:events"
    else:
        log_url = f"sqlite:///{tmp_path / 'shared' / 'log.sqlite3'}"
    roles = Roles(
        tmp_path / "roles",
        {"HITSTREAM_STORE_URL": pg_url, "HITSTREAM_LOG_URL": log_url, "HITSTREAM_SITES": site},
    )
    load: Load | None = None
    try:
        processor = roles.start("processor")
        collector = roles.start("collector")
        web = roles.start("web")
        load = Load.start(collector.url, tmp_path / "answered.txt", site)
        watched = {"processor": processor, "web": web, "collector": collector}
        stats_answers: list[tuple[int, str | None, dict[str, object], float]] = []
        with ReadyWatch(watched) as ready:
            wait_for("events in the store", lambda: len(stored_ids(pg_url, site)) >= 200, 60)
            down_at = time.time()
            private_postgres.stop()
            for role in ("processor", "web"):

                def unready(r: str = role) -> bool:
                    return ready.saw_unready(r, "store", down_at, time.time())

                wait_for(f"the {role} to say the store is down", unready, 30)
            for _ in range(3):  # what a dashboard gets meanwhile
                began = time.monotonic()
                answer = httpx.get(
                    f"{web.url}/api/v1/stats/aggregate",
                    params={"site_id": site, "period": "7d"},  # may span midnight
                    headers=web.headers,
                    timeout=30,
                )
                elapsed = time.monotonic() - began
                stats_answers.append(
                    (answer.status_code, answer.headers.get("retry-after"), answer.json(), elapsed)
                )
            time.sleep(max(0.0, down_at + OUTAGE_S - time.time()))
            private_postgres.start()
            up_at = time.time()
            probe = send_probe(collector, site)
            wait_for("the probe event in the store", lambda: probe in stored_ids(pg_url, site), 60)
            recovery_s = time.time() - up_at
            time.sleep(2.0)  # the load goes on after the recovery
            load.stop()
            answered = load.answered()
            wait_for(
                "every acknowledged event in the store",
                lambda: set(answered) <= set(stored_ids(pg_url, site)),
                60,
                every=0.5,
                fail=False,  # the tally below says how many are missing
            )
            for name in watched:
                wait_for(f"{name} ready again", functools.partial(ready.ready_now, name), 30)

        tally = Tally(
            fault=f"PostgreSQL stopped ({log_kind} log)",
            answered=answered,
            stored=stored_ids(pg_url, site),
            in_doubt=load.in_doubt(),
            probes={probe},
            responses=load.responses(),
            recovery_s=recovery_s,
            outage_s=up_at - down_at,
            extra={
                "stats_answers": [s for s, *_ in stats_answers],
                "stats_slowest_s": round(max(e for *_, e in stats_answers), 2),
            },
        )
        tally.assert_exact()
        # the store is not the collector's: it went on answering 202 during the outage
        assert tally.statuses(down_at, up_at)[202] > 0
        assert ready.saw_unready("processor", "store", down_at, up_at)
        assert ready.saw_unready("web", "store", down_at, up_at)
        assert ready.always_ready("collector", down_at, up_at)  # it does not need the store
        # stats answered 503 + Retry-After from the breaker, not after a pool wait
        for status, retry_after, body, _ in stats_answers:
            assert (status, retry_after is not None) == (503, True)
            assert "failing fast" in str(body["error"])
        roles.assert_all_alive()
        tally.record()
    finally:
        if load is not None:
            load.kill()
        roles.stop_all()
        if redis is not None:
            redis.kill()


def test_a_role_started_while_postgres_is_down_waits_with_its_port_open(
    tmp_path: Path, private_postgres: PrivatePostgres, pg_url: str
) -> None:
    """Decision 0058: the port opens at once, probes get answers (alive, not ready: waiting
    for the store), everything else a 503 with Retry-After; when PostgreSQL comes, the same
    process serves. Its port stayed closed for the whole outage ("connection refused")."""
    site = f"pg-late-{uuid.uuid4().hex[:6]}.test"
    web = ServerProcess(
        tmp_path / "web",
        env={"HITSTREAM_STORE_URL": pg_url, "HITSTREAM_SITES": site},
        command="web",
    )
    web.admin_key = web._make_admin_key()  # (migrates the database while it is up)
    private_postgres.stop()
    try:
        web.start(timeout=60, until="/healthz")
        assert web.proc is not None
        pid = web.proc.pid
        ready = httpx.get(f"{web.url}/readyz", timeout=5)
        assert (ready.status_code, ready.json()) == (
            503,
            {"status": "starting", "waiting_for": "store"},
        )
        stats = httpx.get(
            f"{web.url}/api/v1/stats/aggregate",
            params={"site_id": site, "period": "day"},
            headers=web.headers,
            timeout=5,
        )
        assert stats.status_code == 503
        assert stats.headers["retry-after"] == "5"
        assert stats.json()["error"]["field"] == "server"
        assert "waiting for the store" in stats.json()["error"]["reason"]
        private_postgres.start()
        wait_for(
            "ready once PostgreSQL is back",
            lambda: httpx.get(f"{web.url}/readyz", timeout=5).status_code == 200,
            60,
        )
        stats = httpx.get(
            f"{web.url}/api/v1/stats/aggregate",
            params={"site_id": site, "period": "day", "metrics": "visitors"},
            headers=web.headers,
            timeout=10,
        )
        assert stats.status_code == 200, stats.text
        assert stats.json()["results"]["visitors"]["value"] == 0
        assert web.proc.poll() is None and web.proc.pid == pid  # the same process
    finally:
        private_postgres.start()
        if web.proc is not None:
            web.terminate(timeout=30)
