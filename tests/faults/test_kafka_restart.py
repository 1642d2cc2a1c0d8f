"""The Kafka-protocol broker stopped and restarted under load (Tansu keeping its data in S3).

While no broker answers, a collector's append fails within the producer's delivery timeout
(``HITSTREAM_KAFKA_MESSAGE_TIMEOUT_MS``, 2 s here): it answers 503 + Retry-After and says
unready naming the log; nothing it answered 202 is lost. When the broker is back the same
collector produces again (a producer the broker fenced is replaced) and the same processor
rejoins its group, seeks to the stored positions and resumes by itself.

Tansu's known gaps (high watermarks, transactions) are not touched: nothing here reads lag.
"""

from __future__ import annotations

import functools
import time
import uuid
from pathlib import Path

import pytest

from tests.faults.conftest import stored_ids
from tests.faults.harness import Load, ReadyWatch, Roles, Tally, outage, send_probe, wait_for
from tests.faults.services import S3Broker

pytestmark = [pytest.mark.faults, pytest.mark.slow]
OUTAGE_S = outage(5.0)


def test_broker_restarted_loses_nothing(tmp_path: Path, s3_broker: S3Broker, pg_url: str) -> None:
    site = f"kafka-{uuid.uuid4().hex[:6]}.test"
    roles = Roles(
        tmp_path / "roles",
        {
            "HITSTREAM_LOG_URL": f"kafka://{s3_broker.bootstrap}/faults-{uuid.uuid4().hex[:6]}",
            "HITSTREAM_KAFKA_PARTITIONS": "3",
            "HITSTREAM_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "HITSTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": "1000",
            "HITSTREAM_KAFKA_MESSAGE_TIMEOUT_MS": "2000",
            "HITSTREAM_STORE_URL": pg_url,
            "HITSTREAM_SITES": site,
        },
    )
    load: Load | None = None
    try:
        processor = roles.start("processor")
        collector = roles.start("collector")
        load = Load.start(collector.url, tmp_path / "answered.txt", site)
        with ReadyWatch({"collector": collector, "processor": processor}) as ready:
            wait_for("events in the store", lambda: len(stored_ids(pg_url, site)) >= 200, 90)
            down_at = time.time()
            s3_broker.stop()
            time.sleep(max(0.0, down_at + OUTAGE_S - time.time()))
            s3_broker.start()
            up_at = time.time()
            probe = send_probe(collector, site)
            wait_for("the probe event in the store", lambda: probe in stored_ids(pg_url, site), 90)
            recovery_s = time.time() - up_at
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
            for name in ("collector", "processor"):
                wait_for(f"{name} ready again", functools.partial(ready.ready_now, name), 30)

        tally = Tally(
            fault="Kafka-protocol broker restarted",
            answered=answered,
            stored=stored_ids(pg_url, site),
            in_doubt=load.in_doubt(),
            probes={probe},
            responses=load.responses(),
            recovery_s=recovery_s,
            outage_s=up_at - down_at,
        )
        tally.assert_exact()
        during = tally.statuses(down_at, up_at)
        assert during[503] > 0, f"collectors should refuse while the broker is away: {during}"
        assert ready.saw_unready("collector", "log", down_at, up_at)
        assert tally.statuses(up_at)[202] > 0
        roles.assert_all_alive()
        tally.record()
    finally:
        if load is not None:
            load.kill()
        roles.stop_all()
