"""A Kafka consumer-group member that starts every assigned partition at the store's position.

Every librdkafka call runs on one worker thread per consumer (its rebalance callbacks too), so
the event loop never blocks and the driver is never used from two threads at once.

Assignment: librdkafka calls ``on_assign`` inside ``consume``; the callback asks the store
(``PositionLookup``, a coroutine) on the event loop, which is free because ``poll`` is only
awaiting the worker, and assigns the partitions *with* those offsets: no message of a new
partition can be fetched before its position is set. If the lookup fails, the member assigns
nothing, ``poll`` raises ``LogUnavailable`` and the next ``poll`` rejoins the group with a
fresh consumer (and fresh lookups), so a failure never silently falls back to Kafka's commits.
Messages fetched before a revoke are dropped by librdkafka (its version barrier) and, as a
second guard, here for any partition this member no longer holds.

Hand-over: partitions are revoked only inside ``poll``, and the processor polls again only
once its previous batch is in the store, so the next owner's lookup sees that batch's
positions. A batch that takes longer than ``max.poll.interval.ms`` (default 5 min) breaks
this: librdkafka then leaves the group and the store's event-id dedupe is the last guard.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from hitstream.errors import ConfigError, LogUnavailable
from hitstream.log.base import LogConsumer, LogMessage, PositionLookup

log = logging.getLogger(__name__)
T = TypeVar("T")
_BENIGN_COMMIT_ERRORS = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
}


def settings_refused(exc: KafkaException) -> ConfigError:
    """librdkafka refused a client's settings (an unknown property, a SASL mechanism it does
    not have): a configuration error naming the variables they come from, not an outage."""
    error = exc.args[0] if exc.args else None
    reason = error.str() if isinstance(error, KafkaError) else str(exc)
    return ConfigError(
        f"HITSTREAM_KAFKA_EXTRA / HITSTREAM_KAFKA_SASL_*: Kafka refused the settings: {reason}"
    )


class KafkaConsumer(LogConsumer):
    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        group: str,
        positions: PositionLookup,
        *,
        lookup_timeout: float = 30.0,
    ) -> None:
        self._config = {**config, "group.id": group}
        self._cooperative = "cooperative" in str(config.get("partition.assignment.strategy", ""))
        self._topic = topic
        self._lookup = positions
        self._lookup_timeout = lookup_timeout
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{group}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: Consumer | None = None
        self._assigned: set[int] = set()
        self._generation = 0
        self._broken: str | None = None
        self._closed = False

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def ready(self) -> bool:
        return bool(self._assigned)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def _member(self) -> Consumer:
        if self._closed:
            raise LogUnavailable("kafka consumer is closed")
        if self._broken is not None and self._consumer is not None:
            old, self._consumer = self._consumer, None
            await self._run(_close_quietly, old)
            self._assigned.clear()
        if self._consumer is None:
            self._broken = None
            self._loop = asyncio.get_running_loop()
            self._consumer = await self._run(self._subscribe)
        return self._consumer

    def _subscribe(self) -> Consumer:
        try:
            consumer = Consumer(self._config)
            consumer.subscribe(
                [self._topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError._INVALID_ARG:
                raise settings_refused(exc) from exc  # no retry mends it
            raise LogUnavailable(f"kafka consumer failed to start: {exc}") from exc
        return consumer

    # --- rebalance callbacks: run on the worker thread, inside consume() ---

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._generation += 1
        try:
            assert self._loop is not None
            wanted = [tp.partition for tp in partitions]
            found = asyncio.run_coroutine_threadsafe(self._look_up(wanted), self._loop)
            try:
                stored = found.result(self._lookup_timeout)
            finally:
                found.cancel()
        except Exception as exc:
            log.warning("store position lookup failed on assignment, will rejoin: %r", exc)
            self._broken = f"store position lookup failed on assignment: {exc!r}"
            partitions = []
        else:
            for tp in partitions:
                offset = stored.get(tp.partition)
                if offset is not None:
                    tp.offset = offset
            self._assigned.update(tp.partition for tp in partitions)
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)

    async def _look_up(self, partitions: list[int]) -> dict[int, int | None]:
        offsets = await asyncio.gather(*(self._lookup(p) for p in partitions))
        return dict(zip(partitions, offsets, strict=True))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._generation += 1
        self._assigned.difference_update(tp.partition for tp in partitions)
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()

    # --- the LogConsumer API ---

    async def poll(self, max_messages: int, timeout: float) -> list[LogMessage]:
        consumer = await self._member()
        try:
            messages, error = await self._run(self._consume, consumer, max_messages, timeout)
        except KafkaException as exc:  # raised mid-call: where librdkafka stands is unknown
            self._broken = str(exc)
            raise LogUnavailable(f"kafka consume failed: {exc}") from exc
        if self._broken is not None:
            raise LogUnavailable(self._broken)
        if error is not None:
            if error.fatal():
                self._broken = error.str()  # this member is done: the next poll rejoins
            if not messages:  # nothing was taken, so nothing is lost by raising
                raise LogUnavailable(f"kafka consumer: {error.str()}")
            log.warning("kafka consumer: %s", error.str())
        return messages

    def _consume(
        self, consumer: Consumer, max_messages: int, timeout: float
    ) -> tuple[list[LogMessage], KafkaError | None]:
        raw = consumer.consume(max_messages, 0)
        if not raw and timeout > 0:  # wait for the first, then take whatever else is buffered
            raw = consumer.consume(1, timeout)
            if raw and max_messages > 1:
                raw += consumer.consume(max_messages - 1, 0)
        out: list[LogMessage] = []
        error: KafkaError | None = None
        for message in raw:
            err = message.error()
            if err is None:
                out.append(_to_log_message(message))
            elif err.code() != KafkaError._PARTITION_EOF:
                error = err
        return [m for m in out if m.partition in self._assigned], error

    async def commit(self, positions: Mapping[int, int]) -> None:
        if not positions or self._consumer is None or self._broken is not None:
            return
        offsets = [TopicPartition(self._topic, p, o) for p, o in positions.items()]
        try:
            await self._run(self._consumer.commit, offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() in _BENIGN_COMMIT_ERRORS:  # the store has them: only a hint
                log.info("kafka commit skipped during a rebalance: %s", exc)
                return
            raise LogUnavailable(f"kafka commit failed: {exc}") from exc

    async def lag(self) -> int | None:
        """High watermark minus position over this member's partitions (None if unknown)."""
        if self._consumer is None:
            return None
        try:
            return await self._run(_lag, self._consumer)
        except KafkaException:
            return None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await self._run(_close_quietly, consumer)
        self._executor.shutdown(wait=False)


def _to_log_message(message: Message) -> LogMessage:
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None
    return LogMessage(partition, offset, message.key() or b"", message.value() or b"")


def _lag(consumer: Consumer) -> int | None:
    total = 0
    for tp in consumer.position(consumer.assignment()):
        _low, high = consumer.get_watermark_offsets(tp, timeout=2.0)
        if tp.offset < 0:
            return None
        total += max(0, high - tp.offset)
    return total


def _close_quietly(consumer: Consumer) -> None:
    try:
        consumer.close()
    except (KafkaException, RuntimeError) as exc:
        log.warning("kafka consumer close: %s", exc)
