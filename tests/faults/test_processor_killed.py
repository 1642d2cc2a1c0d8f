"""The active processor SIGKILLed under load; its standby takes over without any restart.

Two processors share a Redis Streams log: one holds the group's lease and reads, the other
waits. The reader is killed mid-stream (no drain, no goodbye); once its lease lapses
(``HITSTREAM_REDIS_STREAM_CLAIM_IDLE_MS``, 2 s here) the standby sets the group to the position
stored with the data and goes on: every event answered 202 is stored once, whatever the dead
one had read, stored or acknowledged when it died.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.faults.conftest import stored_ids
from tests.faults.harness import Load, Roles, Tally, send_probe, wait_for
from tests.faults.services import PrivateRedis

pytestmark = [pytest.mark.faults, pytest.mark.slow]
STREAM = "faults:events"


def test_active_processor_killed_standby_takes_over(tmp_path: Path, pg_url: str) -> None:
    site = f"kill-{uuid.uuid4().hex[:6]}.test"
    broker = PrivateRedis(tmp_path / "redis", persistent=False)
    broker.start()
    roles = Roles(
        tmp_path / "roles",
        {
            "HITSTREAM_LOG_URL": f"{broker.url}?stream={STREAM}",
            "HITSTREAM_REDIS_STREAM_CLAIM_IDLE_MS": "2000",
            "HITSTREAM_STORE_URL": pg_url,
            "HITSTREAM_SITES": site,
        },
    )
    load: Load | None = None
    client = redis.Redis.from_url(broker.url)
    try:
        first = roles.start("processor", "processor1")
        second = roles.start("processor", "processor2")
        collector = roles.start("collector")
        load = Load.start(collector.url, tmp_path / "answered.txt", site)
        wait_for("events in the store", lambda: len(stored_ids(pg_url, site)) >= 300, 60)
        holder = client.get(f"{STREAM}:lease:processor")
        assert holder is not None
        pid = int((holder.decode() if isinstance(holder, bytes) else holder).rsplit("-", 2)[1])
        active, standby = (
            (first, second) if first.proc and first.proc.pid == pid else (second, first)
        )
        assert active.proc is not None and active.proc.pid == pid, "the lease holder is ours"
        killed_at = time.time()
        active.proc.kill()  # SIGKILL
        active.proc.wait(10)
        probe = send_probe(collector, site)
        wait_for("the probe event in the store", lambda: probe in stored_ids(pg_url, site), 60)
        recovery_s = time.time() - killed_at
        new_holder = client.get(f"{STREAM}:lease:processor")
        assert new_holder is not None and standby.proc is not None
        assert (
            int(
                (new_holder.decode() if isinstance(new_holder, bytes) else new_holder).rsplit(
                    "-", 2
                )[1]
            )
            == standby.proc.pid
        )
        time.sleep(2.0)
        load.stop()
        answered = load.answered()
        wait_for(
            "every acknowledged event in the store",
            lambda: set(answered) <= set(stored_ids(pg_url, site)),
            60,
            every=0.5,
            fail=False,
        )
        tally = Tally(
            fault="active processor SIGKILLed (Redis Streams log, a standby)",
            answered=answered,
            stored=stored_ids(pg_url, site),
            in_doubt=load.in_doubt(),
            probes={probe},
            responses=load.responses(),
            recovery_s=recovery_s,
        )
        tally.assert_exact()
        # the collector never noticed: the log was there all along
        assert set(tally.statuses()) == {202}
        roles.assert_all_alive(except_=[active])
        tally.record()
    finally:
        client.close()
        if load is not None:
            load.kill()
        roles.stop_all()
        broker.kill()
