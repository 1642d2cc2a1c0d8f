"""The Kafka log against a real Kafka-protocol broker (Tansu): groups, restarts, outages.

Each test uses its own topic on the session's broker; the dead-broker test starts its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from hitstream.errors import LogUnavailable
from hitstream.log.base import LogConsumer, LogMessage
from hitstream.log.kafka import KafkaLog
from tests.brokers import Tansu, free_port, kafka_log, tansu_binary, unique_name

pytestmark = pytest.mark.integration


class FakeStore:
    """Positions kept "with the data", as the processor's store keeps them."""

    def __init__(self) -> None:
        self.positions: dict[int, int] = {}
        self.seen: list[LogMessage] = []
        self.writers: list[str] = []

    async def lookup(self, partition: int) -> int | None:
        return self.positions.get(partition)

    def write(self, batch: list[LogMessage], writer: str = "") -> dict[int, int]:
        self.seen.extend(batch)
        self.writers.extend(writer for _ in batch)
        for m in batch:
            self.positions[m.partition] = m.offset + 1
        return {m.partition: self.positions[m.partition] for m in batch}


@pytest.fixture
async def log(kafka_broker: Tansu) -> AsyncIterator[KafkaLog]:
    opened = kafka_log(kafka_broker, unique_name(), partitions=4)
    await opened.start()
    yield opened
    await opened.close()


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    """Wait (checking every 0.1 s) until ``condition()`` holds; fail after ``within`` s."""
    for _ in range(int(within * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still not true after {within}s")


async def process(consumer: LogConsumer, store: FakeStore, stop: asyncio.Event, name: str) -> None:
    """The processor's loop: poll, write to the store, then commit to the log."""
    while not stop.is_set():
        batch = await consumer.poll(100, 0.2)
        if batch:
            await consumer.commit(store.write(batch, name))


@pytest.mark.parametrize("strategy", ["range,roundrobin", "cooperative-sticky"])
async def test_two_members_share_partitions_without_duplicates(
    kafka_broker: Tansu, strategy: str
) -> None:
    log = kafka_log(
        kafka_broker,
        unique_name(),
        partitions=4,
        consumer_extra={"partition.assignment.strategy": strategy},
    )
    await log.start()
    store = FakeStore()
    done = asyncio.Event()
    group = unique_name("workers")  # a group keeps its protocol on the broker
    first = log.consumer(group, store.lookup)
    second = log.consumer(group, store.lookup)
    one = asyncio.create_task(process(first, store, done, "first"))
    await log.append([(f"site\x1fv{i % 40}".encode(), b"%d" % i) for i in range(400)])
    await until(lambda: len(store.seen) >= 400)
    before = first.generation
    two = asyncio.create_task(process(second, store, done, "second"))
    await until(lambda: second.generation > 0)  # the rebalance gave it partitions
    seen_by_first = len(store.seen)
    await log.append([(f"site\x1fv{i % 40}".encode(), b"%d" % i) for i in range(400, 800)])
    await until(lambda: len(store.seen) >= 800)
    await asyncio.sleep(0.5)  # room for a duplicate to show up
    done.set()
    await asyncio.gather(one, two)
    await first.close()
    await second.close()
    await log.close()

    values = sorted(int(m.value) for m in store.seen)
    assert values == list(range(800))  # every message once, none twice
    assert first.generation > before and second.generation > 0
    assert len(store.seen) > seen_by_first
    later = list(zip(store.seen[seen_by_first:], store.writers[seen_by_first:], strict=True))
    partitions = {name: {m.partition for m, writer in later if writer == name} for _, name in later}
    assert set(partitions) == {"first", "second"}  # both got partitions after the rebalance
    assert not partitions["first"] & partitions["second"]  # and no partition went to both


async def test_restart_resumes_from_the_store_not_the_commit(log: KafkaLog) -> None:
    """A crash after the store transaction but before the log commit: the next member starts
    at the store's positions, so nothing is processed twice and nothing is skipped."""
    await log.append([(f"v{i % 8}".encode(), b"%d" % i) for i in range(40)])
    store = FakeStore()
    consumer = log.consumer("g", store.lookup)
    while len(store.seen) < 15:
        store.write(await consumer.poll(15 - len(store.seen), 0.5))  # stored, never committed
    await consumer.close()

    restarted = log.consumer("g", store.lookup)
    deadline = time.monotonic() + 30
    while len(store.seen) < 40 and time.monotonic() < deadline:
        batch = await restarted.poll(100, 0.5)
        await restarted.commit(store.write(batch))
    assert await restarted.poll(100, 0.5) == []
    await restarted.close()
    assert sorted(int(m.value) for m in store.seen) == list(range(40))


async def test_failed_position_lookup_never_falls_back_to_the_commit(log: KafkaLog) -> None:
    await log.append([(b"k", b"%d" % i) for i in range(6)])
    calls = 0

    async def flaky(partition: int) -> int | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("store is down")
        return 3  # every partition: only the one holding key k has offsets that far

    consumer = log.consumer("g", flaky)
    got: list[LogMessage] = []
    failures = 0
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        try:
            got.extend(await consumer.poll(10, 0.5))
        except LogUnavailable:
            failures += 1
    await consumer.close()
    assert failures == 1
    assert [m.value for m in got] == [b"3", b"4", b"5"]


async def test_dead_letters_round_trip(log: KafkaLog) -> None:
    await log.append([(b"site\x1fv%d" % i, b"bad-%d" % i) for i in range(5)])
    store = FakeStore()
    consumer = log.consumer("g", store.lookup)
    deadline = time.monotonic() + 30
    while len(store.seen) < 5 and time.monotonic() < deadline:
        store.write(await consumer.poll(10, 0.5))
    await consumer.close()
    broken = sorted(store.seen, key=lambda m: m.value)
    await log.dead_letter(broken[:3], "undecodable")
    await log.dead_letter(broken[3:], "too_large")

    replay = log.dead_letters("replay", FakeStore().lookup)
    dead: list[LogMessage] = []
    while len(dead) < 5 and time.monotonic() < deadline:
        dead.extend(await replay.poll(10, 0.5))
    await replay.commit({dead[1].partition: dead[1].offset + 1})
    await replay.close()
    assert [(m.key, m.value) for m in dead] == [
        (b"undecodable", b"bad-0"),
        (b"undecodable", b"bad-1"),
        (b"undecodable", b"bad-2"),
        (b"too_large", b"bad-3"),
        (b"too_large", b"bad-4"),
    ]
    again = log.dead_letters("replay", FakeStore().lookup)
    rest: list[LogMessage] = []
    while len(rest) < 3 and time.monotonic() < deadline:
        rest.extend(await again.poll(10, 0.5))
    await again.close()
    assert [m.value for m in rest] == [b"bad-2", b"bad-3", b"bad-4"]


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Tansu]:
    binary = tansu_binary()
    if binary is None:
        pytest.skip("no Kafka-protocol broker installed")
    broker = Tansu.start(binary, tmp_path / "tansu.log")
    yield broker
    broker.stop()


async def test_append_to_a_dead_broker_fails_within_the_timeout(own_broker: Tansu) -> None:
    log = kafka_log(own_broker, unique_name(), message_timeout_ms=2000)
    await log.start()
    await log.append([(b"k", b"before")])
    await log.check()
    own_broker.kill()

    began = time.monotonic()
    with pytest.raises(LogUnavailable):
        await log.append([(b"k", b"after")])
    assert time.monotonic() - began < 5.0  # message.timeout.ms plus slack: never hangs
    with pytest.raises(LogUnavailable):
        await log.check()
    began = time.monotonic()
    await log.close()
    assert time.monotonic() - began < 5.0


async def test_start_without_a_broker_fails_fast(tmp_path: Path) -> None:
    log = KafkaLog(f"kafka://127.0.0.1:{free_port()}/t", admin_timeout_s=2.0)
    began = time.monotonic()
    with pytest.raises(LogUnavailable):
        await log.start()
    assert time.monotonic() - began < 5.0
    with pytest.raises(LogUnavailable):
        await log.append([(b"k", b"v")])


async def test_offsets_for_time_find_what_was_appended_since(log: KafkaLog) -> None:
    """``hitstream replay --since`` on Kafka: per partition, the first message appended at
    or after the time (was: "the kafka log cannot look offsets up by time")."""
    await log.append([(b"k%d" % i, b"before-%d" % i) for i in range(12)])
    await asyncio.sleep(0.2)
    moment = int(time.time() * 1000)
    await asyncio.sleep(0.2)
    after = {b"after-%d" % i for i in range(12)}
    await log.append([(b"k%d" % i, b"after-%d" % i) for i in range(12)])
    starts = await log.offsets_for_time(moment)
    assert set(starts) == {0, 1, 2, 3}

    async def from_time(partition: int) -> int | None:
        return starts[partition]

    consumer = log.consumer(unique_name(), from_time)
    seen: list[bytes] = []
    try:
        await until_polled(consumer, seen, len(after))
    finally:
        await consumer.close()
    assert sorted(seen) == sorted(after)
    # from the epoch: every partition from its first offset (a time past the last message
    # is the end on Kafka, offset 0 on this broker: not asserted)
    assert await log.offsets_for_time(0) == dict.fromkeys(starts, 0)


async def until_polled(consumer: LogConsumer, seen: list[bytes], count: int) -> None:
    deadline = time.monotonic() + 30
    while len(seen) < count and time.monotonic() < deadline:
        seen.extend(m.value for m in await consumer.poll(100, 0.2))
    await asyncio.sleep(0.5)  # and nothing more comes
    seen.extend(m.value for m in await consumer.poll(100, 0.2))


async def test_replay_reads_a_kafka_topic_from_its_start(log: KafkaLog) -> None:
    """``hitstream replay --from-offset 0`` on Kafka replayed nothing: its first poll came
    before the group had given it partitions, and an empty poll ended the replay."""
    import msgspec

    from hitstream.services.replay import replay
    from hitstream.stores.memory import MemoryStore
    from tests.unit.test_processor import accepted, make

    events = [accepted(n, visitor=f"v{n}", ts=int(time.time() * 1000)) for n in range(20)]
    await log.append([(e.visitor_id.encode(), msgspec.json.encode(e)) for e in events])
    store = MemoryStore()
    processor = make(log, store, stream="replay:kafka", clock=lambda: int(time.time() * 1000))  # type: ignore[arg-type]
    result = await replay(processor, log, start={}, group=unique_name(), idle_timeout=2.0)
    assert (result.messages, result.stored) == (len(events), len(events))
    assert await store.count_events() == len(events)
