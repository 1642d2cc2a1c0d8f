"""The Kafka producer is replaced once the broker refuses it for good; consumer groups take
their prefix (no broker needed)."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError

from hitstream.errors import LogUnavailable
from hitstream.log.kafka import KafkaLog, _Delivery
from hitstream.log.kafka_consumer import KafkaConsumer


class FakePump:
    def __init__(self) -> None:
        self.retired: list[KafkaError] = []

    def retire(self, err: KafkaError) -> None:
        self.retired.append(err)


@pytest.mark.parametrize(
    "code",
    [KafkaError.PRODUCER_FENCED, KafkaError.UNKNOWN_PRODUCER_ID, KafkaError.INVALID_PRODUCER_EPOCH],
)
async def test_a_fenced_producer_is_retired_and_the_append_fails(code: int) -> None:
    pump = FakePump()
    delivery = _Delivery(asyncio.get_running_loop(), 2, pump)  # type: ignore[arg-type]
    delivery(KafkaError(code), None)  # type: ignore[arg-type]
    with pytest.raises(LogUnavailable):
        await asyncio.wait_for(delivery.future, 1)
    assert [e.code() for e in pump.retired] == [code]


async def test_a_timed_out_message_fails_the_append_but_keeps_the_producer() -> None:
    pump = FakePump()
    delivery = _Delivery(asyncio.get_running_loop(), 1, pump)  # type: ignore[arg-type]
    delivery(KafkaError(KafkaError._MSG_TIMED_OUT), None)  # type: ignore[arg-type]
    with pytest.raises(LogUnavailable, match="timed out"):
        await asyncio.wait_for(delivery.future, 1)
    assert pump.retired == []  # librdkafka reconnects by itself: nothing to replace


async def test_every_report_delivered_settles_the_append() -> None:
    pump = FakePump()
    delivery = _Delivery(asyncio.get_running_loop(), 2, pump)  # type: ignore[arg-type]
    delivery(None, None)  # type: ignore[arg-type]
    assert not delivery.future.done()
    delivery(None, None)  # type: ignore[arg-type]
    await asyncio.wait_for(delivery.future, 1)
    assert pump.retired == []


def test_consumer_groups_take_the_configured_prefix() -> None:
    """Two deployments on one cluster shared the group ``processor`` (and group ACLs by
    prefix could not match): ``HITSTREAM_KAFKA_GROUP_PREFIX`` goes before every group."""
    from hitstream.bootstrap.adapters import make_log
    from hitstream.settings import Settings

    async def nothing(partition: int) -> int | None:
        return None

    settings = Settings(kafka_group_prefix="acme-", kafka_extra={"group.id": "ignored"})
    log = make_log("kafka://127.0.0.1:9/hitstream.events", settings)
    assert isinstance(log, KafkaLog)
    reader = log.consumer("processor", nothing)
    dead = log.dead_letters("replay", nothing)
    assert isinstance(reader, KafkaConsumer) and isinstance(dead, KafkaConsumer)
    assert (reader._config["group.id"], dead._config["group.id"]) == (
        "acme-processor",
        "acme-replay",
    )
    plain = make_log("kafka://127.0.0.1:9/hitstream.events", Settings())
    assert isinstance(plain, KafkaLog)
    assert plain.consumer("processor", nothing)._config["group.id"] == "processor"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="group_prefix"):
        Settings(kafka_group_prefix="bad prefix!")


def test_librdkafka_repeats_are_held_back_and_counted() -> None:
    """Every failed reconnect is a line: one per 30 s per message shape, then the count."""
    import logging

    from hitstream.log.kafka import Repeats

    now = [0.0]
    repeats = Repeats(every_s=30, clock=lambda: now[0])

    def line(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("hitstream.log.librdkafka", level, __file__, 1, msg, None, None)

    fail = "FAIL [rdkafka#producer-1] 127.0.0.1:{port}/1: Connection refused (after {ms}ms)"
    kept = []
    for second in range(61):
        now[0] = float(second)
        record = line(fail.format(port=9092, ms=second))
        if repeats.filter(record):
            kept.append(record.getMessage())
    assert kept == [
        fail.format(port=9092, ms=0),
        fail.format(port=9092, ms=30) + " (29 more like it in 30 s)",
        fail.format(port=9092, ms=60) + " (29 more like it in 30 s)",
    ]
    assert repeats.filter(line("rebalance: assigned 3 partitions"))  # another message: shown
    assert repeats.filter(line(fail.format(port=9092, ms=61), logging.WARNING))  # another level
