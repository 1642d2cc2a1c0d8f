"""The Kafka producer is replaced once the broker refuses it for good (no broker needed)."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError

from hitstream.errors import LogUnavailable
from hitstream.log.kafka import _Delivery


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
