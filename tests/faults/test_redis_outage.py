"""Redis stopped, and Redis restarted empty, under load, with the Redis Streams log.

The same Redis also carries the fan-out, the stats cache and the salts, so everything that
uses Redis loses it at once. While it is away collectors answer 503 + Retry-After (nothing is
acknowledged) and say unready naming the log; when it is back the same processes go on.

Issue 8: on a Redis without persistence, killed and restarted, the processor looped forever
on ``NOGROUP`` while collectors answered 202 (12,534 events unprocessed until a restart).
Such a Redis loses what it held: events acknowledged and not yet stored when it dies are gone
(the README says so: run it with ``appendonly yes`` and ``appendfsync always`` to keep every
202). To verify "nothing acknowledged is lost" there, the load is paused for the moment it
takes the processor to store what Redis holds, Redis is killed and restarted empty, and the
load resumes: the processor must recreate the consumer group from the stored position and
store every event acknowledged after the restart.
"""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.faults.conftest import stored_ids
from tests.faults.harness import Load, ReadyWatch, Roles, Tally, outage, send_probe, wait_for
from tests.faults.services import PrivateRedis

pytestmark = [pytest.mark.faults, pytest.mark.slow]
STREAM = "faults:events"
OUTAGE_S = outage(5.0)


def roles_on(tmp_path: Path, broker: PrivateRedis, pg_url: str, site: str) -> Roles:
    return Roles(
        tmp_path / "roles",
        {
            "HITSTREAM_LOG_URL": f"{broker.url}?stream={STREAM}",
            "HITSTREAM_STORE_URL": pg_url,
            "HITSTREAM_FANOUT_URL": broker.url,
            "HITSTREAM_CACHE_URL": broker.url,
            "HITSTREAM_SALTS_URL": broker.url,
            "HITSTREAM_SITES": site,
        },
    )


def settle(load: Load, pg_url: str, site: str, recovery_s: float) -> Tally:
    """Stop the load, wait for the store to have what was answered, and tally."""
    load.stop()
    answered = load.answered()
    wait_for(
        "every acknowledged event in the store",
        lambda: set(answered) <= set(stored_ids(pg_url, site)),
        60,
        every=0.5,
        fail=False,
    )
    return Tally(
        fault="",
        answered=answered,
        stored=stored_ids(pg_url, site),
        in_doubt=load.in_doubt(),
        probes=set(),
        responses=load.responses(),
        recovery_s=recovery_s,
    )


def test_redis_stopped_and_started_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    site = f"redis-stop-{uuid.uuid4().hex[:6]}.test"
    broker = PrivateRedis(tmp_path / "redis", persistent=True)
    broker.start()
    roles = roles_on(tmp_path, broker, pg_url, site)
    load: Load | None = None
    try:
        processor = roles.start("processor")
        collector = roles.start("collector")
        web = roles.start("web")
        load = Load.start(collector.url, tmp_path / "answered.txt", site)
        with ReadyWatch({"collector": collector, "processor": processor, "web": web}) as ready:
            wait_for("events in the store", lambda: len(stored_ids(pg_url, site)) >= 200, 60)
            down_at = time.time()
            broker.stop()
            time.sleep(OUTAGE_S)
            broker.start()
            up_at = time.time()
            probe = send_probe(collector, site)
            wait_for("the probe event in the store", lambda: probe in stored_ids(pg_url, site), 60)
            recovery_s = time.time() - up_at
            time.sleep(2.0)
            tally = settle(load, pg_url, site, recovery_s)
            for name in ("collector", "processor", "web"):
                wait_for(f"{name} ready again", functools.partial(ready.ready_now, name), 30)

        tally.fault, tally.probes, tally.outage_s = (
            "Redis stopped (Redis Streams log)",
            {probe},
            up_at - down_at,
        )
        tally.assert_exact()
        during = tally.statuses(down_at, up_at)
        assert during[503] > 0, f"collectors should refuse while the log is away: {during}"
        assert ready.saw_unready("collector", "log", down_at, up_at)
        assert ready.saw_unready("processor", "log", down_at, up_at)
        # the web role needs the store, not Redis: ready, naming what it does without
        assert ready.always_ready("web", down_at, up_at)
        assert ready.saw_degraded("web", "fanout", down_at, up_at)
        assert tally.statuses(up_at)[202] > 0
        roles.assert_all_alive()
        tally.record()
    finally:
        if load is not None:
            load.kill()
        roles.stop_all()
        broker.kill()


def test_redis_restarted_empty_is_picked_up_without_a_restart(tmp_path: Path, pg_url: str) -> None:
    site = f"redis-empty-{uuid.uuid4().hex[:6]}.test"
    broker = PrivateRedis(tmp_path / "redis", persistent=False)
    broker.start()
    roles = roles_on(tmp_path, broker, pg_url, site)
    load: Load | None = None
    try:
        processor = roles.start("processor")
        collector = roles.start("collector")
        load = Load.start(collector.url, tmp_path / "answered.txt", site)
        with ReadyWatch({"collector": collector, "processor": processor}) as ready:
            wait_for("events in the store", lambda: len(stored_ids(pg_url, site)) >= 200, 60)
            load.pause()
            client = redis.Redis.from_url(broker.url)

            def drained() -> bool:
                groups = client.xinfo_groups(STREAM)
                return all(g["lag"] == 0 and g["pending"] == 0 for g in groups)

            wait_for("the processor to store what Redis holds", drained, 30)
            client.close()
            before = len(stored_ids(pg_url, site))
            down_at = time.time()
            broker.kill()  # no persistence: it comes back with nothing at all
            load.resume()
            time.sleep(OUTAGE_S)
            broker.start()
            up_at = time.time()
            probe = send_probe(collector, site)
            wait_for("the probe event in the store", lambda: probe in stored_ids(pg_url, site), 60)
            recovery_s = time.time() - up_at
            time.sleep(2.0)
            tally = settle(load, pg_url, site, recovery_s)
            for name in ("collector", "processor"):
                wait_for(f"{name} ready again", functools.partial(ready.ready_now, name), 30)

        tally.fault, tally.probes, tally.outage_s = (
            "Redis restarted empty (Redis Streams log)",
            {probe},
            up_at - down_at,
        )
        tally.extra["stored_before_the_kill"] = before
        tally.assert_exact()
        assert tally.statuses(down_at, up_at)[503] > 0
        assert len(set(tally.stored)) > before + 1, "nothing was stored after the restart"
        roles.assert_all_alive()
        tally.record()
    finally:
        if load is not None:
            load.resume()
            load.kill()
        roles.stop_all()
        broker.kill()
