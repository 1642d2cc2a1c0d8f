"""The Kafka event log: any Kafka-protocol broker (Apache Kafka, Redpanda, Tansu) via librdkafka.

URL: ``kafka://host:9092,host2:9092/topic`` (topic defaults to ``hitstream.events``; dead
letters go to ``<topic>.dead``). Every other setting is a keyword: security protocol, SASL
(SCRAM-SHA-256/512, PLAIN), TLS CA, client id, timeouts, and raw librdkafka properties:
``extra`` for every client, ``producer_extra`` / ``consumer_extra`` over hitstream's defaults
(e.g. ``{"linger.ms": 0}``, ``{"partition.assignment.strategy": "cooperative-sticky"}``).
Topics are created at ``start`` when missing (``create_topics=False`` where ACLs forbid it).

Durability: the producer is idempotent with ``acks=all``; ``append`` returns only once every
message has a successful delivery report, i.e. the in-sync replicas have it. Any delivery
error, or no report within ``message_timeout_ms``, raises ``LogUnavailable`` and nothing is
acknowledged to the client. The key is site+visitor, so one visitor's events stay ordered on
one partition. Delivery reports are served by one thread per producer, which wakes the
waiting coroutines thread-safely; concurrent appends share librdkafka's batches (``linger.ms``).

Outages: while no broker answers, an append fails after ``message_timeout_ms`` (the collector
answers 503 with ``Retry-After``) and librdkafka reconnects by itself. A producer the broker
no longer accepts (fenced or its producer id forgotten, as after a broker restart that
followed timed-out messages) or that failed fatally is replaced by a new one at the next
append, so the log heals without a process restart.

Positions: the consumer seeks every newly assigned partition to the store's position before
it is fetched (the lookup runs on the event loop while librdkafka waits in the rebalance
callback), so no message of a new partition is returned before its seek. Kafka's own commits
are only the fallback for partitions the store has never seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from hitstream.errors import ConfigError, LogUnavailable
from hitstream.log.base import EventLog, LogConsumer, LogMessage, PositionLookup, Positions
from hitstream.log.kafka_consumer import KafkaConsumer, settings_refused

log = logging.getLogger(__name__)


class Repeats(logging.Filter):
    """Lets a message through once per ``every_s`` when it differs from an earlier one only
    by its numbers; the next one it lets through says how many it held back. librdkafka
    logs every failed reconnect (once a second per broker connection and client, by
    ``reconnect.backoff.max.ms``): a processor wrote 301 ERROR lines in 15 s of a Kafka
    outage, burying everything else."""

    def __init__(self, every_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s = every_s
        self._clock = clock
        self._seen: dict[tuple[int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, re.sub(r"\d+", "#", record.getMessage()))
        now = self._clock()
        last, held = self._seen.get(key, (-math.inf, 0))
        if now - last < self.every_s:
            self._seen[key] = (last, held + 1)
            return False
        if len(self._seen) > 1000:  # bounded: old keys go
            self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.every_s}
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.getMessage()} ({held} more like it in {self.every_s:.0f} s)"
            record.args = None
        return True


LIBRDKAFKA: Final = logging.getLogger("hitstream.log.librdkafka")
LIBRDKAFKA.addFilter(Repeats())
DEFAULT_TOPIC = "hitstream.events"
_Headers = list[tuple[str, str | bytes | None]]
_PRODUCER_DEAD = frozenset(
    {
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
        KafkaError.UNKNOWN_PRODUCER_ID,
        KafkaError.INVALID_PRODUCER_ID_MAPPING,
        KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
        KafkaError._FENCED,
        KafkaError._FATAL,
    }
)
"""Delivery errors after which this producer will fail every message: replace it."""


def parse_url(url: str) -> tuple[str, str]:
    """``kafka://h1:9092,h2:9092/topic`` -> (bootstrap servers, topic)."""
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ConfigError(f"not a kafka:// URL with brokers: {url!r}")
    if "@" in parts.netloc:
        raise ConfigError("put Kafka credentials in the SASL settings, not in the URL")
    return parts.netloc, parts.path.strip("/") or DEFAULT_TOPIC


class _Delivery:
    """Counts one append's delivery reports (poller thread) and settles its future (loop)."""

    __slots__ = ("future", "left", "loop", "positions", "pump")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int, pump: _Pump) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.left = count
        self.pump = pump
        self.positions: Positions = [(-1, -1)] * count

    def of(self, index: int) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback of the ``index``-th message (records where it landed)."""

        def report(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                partition, offset = msg.partition(), msg.offset()
                if partition is not None and offset is not None:
                    self.positions[index] = (partition, offset)
            self(err, msg)

        return report

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and err.code() in _PRODUCER_DEAD:
            self.pump.retire(err)
        if self.left <= 0:
            return  # already settled by an earlier error
        if err is None:
            self.left -= 1
            if self.left:
                return
        else:
            self.left = 0
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self.loop.call_soon_threadsafe(self._settle, err)

    def _settle(self, err: KafkaError | None) -> None:
        if self.future.done():
            return
        if err is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(LogUnavailable(f"kafka delivery failed: {err.str()}"))


class _Pump:
    """One producer and the thread that serves its delivery reports until closed."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.fatal: KafkaError | None = None
        self.producer = Producer({**config, "error_cb": self._on_error})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="kafka-producer", daemon=True)
        self._thread.start()

    def retire(self, err: KafkaError) -> None:
        """This producer cannot deliver any more: the next append gets a new one."""
        if self.fatal is None:
            self.fatal = err
            log.error("kafka producer failed for good, it will be replaced: %s", err.str())

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.retire(err)
        elif err.code() == KafkaError._ALL_BROKERS_DOWN:
            log.warning("kafka producer: %s", err.str())
        else:  # librdkafka's own log (hitstream.log.librdkafka) already tells the details
            log.debug("kafka producer: %s", err.str())

    def _serve(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.1)

    def close(self, timeout: float) -> None:
        """Blocking: deliver what is queued (up to ``timeout``), fail the rest, stop."""
        self._stop.set()
        self._thread.join()
        if self.producer.flush(timeout):
            self.producer.purge()  # their delivery reports fail the waiting appends
            self.producer.flush(0)


class KafkaLog(EventLog):
    name = "kafka"

    def __init__(
        self,
        url: str,
        *,
        partitions: int = 6,
        replication_factor: int = 1,
        create_topics: bool = True,
        security_protocol: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        ssl_ca_location: str | None = None,
        client_id: str = "hitstream",
        group_prefix: str = "",
        message_timeout_ms: int = 10_000,
        admin_timeout_s: float = 10.0,
        session_timeout_ms: int | None = None,
        heartbeat_interval_ms: int | None = None,
        extra: Mapping[str, str | int | float | bool] | None = None,
        producer_extra: Mapping[str, str | int | float | bool] | None = None,
        consumer_extra: Mapping[str, str | int | float | bool] | None = None,
    ) -> None:
        self.servers, self.topic = parse_url(url)
        self.dead_topic = f"{self.topic}.dead"
        self.group_prefix = group_prefix
        """Before every consumer group's name (``processor`` ...): two deployments on one
        cluster keep apart, and group ACLs by prefix match."""
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.create_topics = create_topics
        self.message_timeout_ms = message_timeout_ms
        self.admin_timeout_s = admin_timeout_s
        common: dict[str, Any] = {
            "bootstrap.servers": self.servers,
            "client.id": client_id,
            "logger": LIBRDKAFKA,  # not raw stderr; repeats held back (``Repeats``)
            # after a broker outage, reconnect within a second of it being back (librdkafka
            # backs off up to 10 s by default); a refused connect costs nothing
            "reconnect.backoff.max.ms": 1000,
        }
        if sasl_mechanism:
            common["sasl.mechanism"] = sasl_mechanism
            common["sasl.username"] = sasl_username or ""
            common["sasl.password"] = sasl_password or ""
        if ssl_ca_location:
            common["ssl.ca.location"] = ssl_ca_location
        protocol = security_protocol or (
            "SASL_SSL" if sasl_mechanism else "SSL" if ssl_ca_location else None
        )
        if protocol:
            common["security.protocol"] = protocol
        common.update(extra or {})
        self._common = common
        self._producer_config: dict[str, Any] = {
            **common,
            "acks": "all",
            "enable.idempotence": True,
            "message.timeout.ms": message_timeout_ms,
            "partitioner": "murmur2_random",  # the Java client's: same key -> same partition
            **(producer_extra or {}),
        }
        group_timing = {
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": heartbeat_interval_ms,
        }
        self._consumer_config: dict[str, Any] = {
            **common,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",  # a new group must not skip events
            **{k: v for k, v in group_timing.items() if v is not None},
            **(consumer_extra or {}),
        }
        self._pump: _Pump | None = None
        self._started = False
        self._closed = False

    @property
    def stream(self) -> str:
        return f"kafka:{self.topic}"

    async def start(self) -> None:
        if self.create_topics:
            await self._ensure_topics()
        self._pump = self._new_pump()
        self._started = True

    def _new_pump(self) -> _Pump:
        try:
            return _Pump(self._producer_config)
        except KafkaException as exc:
            raise settings_refused(exc) from exc

    async def _ensure_topics(self) -> None:
        """Create the topic and its dead-letter topic if missing (an existing one is kept)."""
        try:
            admin = AdminClient(dict(self._common))  # referenced until its futures are done
        except KafkaException as exc:
            raise settings_refused(exc) from exc
        wanted = [
            NewTopic(self.topic, self.partitions, self.replication_factor),
            NewTopic(self.dead_topic, 1, self.replication_factor),
        ]
        try:
            futures = admin.create_topics(wanted, request_timeout=self.admin_timeout_s)
            async with asyncio.timeout(self.admin_timeout_s + 1):
                for topic, future in futures.items():
                    try:
                        await asyncio.wrap_future(future)
                    except KafkaException as exc:
                        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                            raise LogUnavailable(f"cannot create topic {topic}: {exc}") from exc
        except (KafkaException, TimeoutError) as exc:
            raise LogUnavailable(f"kafka at {self.servers} unreachable: {exc!r}") from exc
        finally:
            del admin

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pump is not None:
            await asyncio.to_thread(self._pump.close, self.message_timeout_ms / 1000)

    def _live_pump(self) -> _Pump:
        if self._closed or not self._started or self._pump is None:
            raise LogUnavailable("kafka log is not started or already closed")
        if self._pump.fatal is not None:  # an idempotent producer that failed fatally is done
            dead, self._pump = self._pump, self._new_pump()
            threading.Thread(target=dead.close, args=(0,), daemon=True).start()
        return self._pump

    async def append(self, messages: Sequence[tuple[bytes, bytes]]) -> Positions:
        return await self._produce(self.topic, messages)

    async def _produce(
        self,
        topic: str,
        messages: Sequence[tuple[bytes, bytes]],
        headers: Sequence[_Headers] | None = None,
    ) -> Positions:
        if not messages:
            return []
        pump = self._live_pump()
        producer = pump.producer
        loop = asyncio.get_running_loop()
        delivery = _Delivery(loop, len(messages), pump)
        deadline = loop.time() + self.message_timeout_ms / 1000 + 2.0
        for i, (key, value) in enumerate(messages):
            while True:
                try:
                    producer.produce(
                        topic,
                        value,
                        key,
                        on_delivery=delivery.of(i),
                        headers=headers[i] if headers else None,
                    )
                    break
                except BufferError:  # librdkafka's queue is full: let it drain
                    if loop.time() > deadline:
                        raise LogUnavailable("kafka producer queue stayed full") from None
                    await asyncio.sleep(0.005)
                except KafkaException as exc:
                    raise LogUnavailable(f"kafka produce failed: {exc}") from exc
        try:
            async with asyncio.timeout_at(deadline):
                await delivery.future
        except TimeoutError as exc:
            raise LogUnavailable("kafka gave no delivery report in time") from exc
        return delivery.positions

    async def check(self) -> None:
        producer = self._live_pump().producer
        try:
            meta = await asyncio.to_thread(producer.list_topics, self.topic, 2.0)
        except KafkaException as exc:
            raise LogUnavailable(f"kafka at {self.servers} unreachable: {exc}") from exc
        topic = meta.topics.get(self.topic)
        if topic is None or topic.error is not None:
            raise LogUnavailable(f"kafka topic {self.topic} unavailable: {topic and topic.error}")

    def consumer(self, group: str, positions: PositionLookup) -> LogConsumer:
        return KafkaConsumer(
            self._consumer_config, self.topic, self.group_prefix + group, positions
        )

    async def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        """partition -> the first offset whose message's timestamp (its append time, as
        the producer sets it) is at or after ``timestamp_ms``; a partition with none from then
        on starts at its end (nothing to replay)."""
        timeout = self.admin_timeout_s

        def lookup() -> dict[int, int]:
            group = f"{self.group_prefix}hitstream-offsets-for-time"
            config = {**self._consumer_config, "group.id": group}
            consumer = Consumer(config)
            try:
                meta = consumer.list_topics(self.topic, timeout=timeout)
                topic = meta.topics.get(self.topic)
                if topic is None or topic.error is not None:
                    raise LogUnavailable(f"kafka topic {self.topic} unavailable")
                asked = [TopicPartition(self.topic, p, timestamp_ms) for p in topic.partitions]
                found: dict[int, int] = {}
                for tp in consumer.offsets_for_times(asked, timeout=timeout):
                    if tp.error is not None:
                        raise LogUnavailable(f"kafka offsets for time: {tp.error}")
                    if tp.offset < 0:  # no message at or after the time: the end
                        end = TopicPartition(self.topic, tp.partition)
                        tp.offset = consumer.get_watermark_offsets(end, timeout=timeout)[1]
                    found[tp.partition] = tp.offset
                return found
            except KafkaException as exc:
                raise LogUnavailable(f"kafka offsets for time failed: {exc}") from exc
            finally:
                consumer.close()

        return await asyncio.to_thread(lookup)

    async def dead_letter(self, messages: Sequence[LogMessage], reason: str) -> None:
        origin: list[_Headers] = [
            [("hitstream-partition", b"%d" % m.partition), ("hitstream-offset", b"%d" % m.offset)]
            for m in messages
        ]
        await self._produce(self.dead_topic, [(reason.encode(), m.value) for m in messages], origin)

    def dead_letters(self, group: str, positions: PositionLookup) -> LogConsumer:
        return KafkaConsumer(
            self._consumer_config, self.dead_topic, self.group_prefix + group, positions
        )
