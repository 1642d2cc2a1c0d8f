"""One suite every event log adapter passes: durable appends, ordered reads, resumable positions.

Kafka runs against a real Tansu broker and Redis Streams against the local Redis (both marked
``integration``); every such test gets its own topic or stream. A Kafka consumer needs a group
join (seconds) before its first message, so reads here wait for the count they expect and then
check that nothing more arrives, instead of stopping at the first empty poll.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hitstream.errors import LogUnavailable
from hitstream.log.base import EventLog, LogConsumer, LogMessage, PositionLookup
from hitstream.log.memory import MemoryLog
from hitstream.log.sqlite import SQLiteLog
from tests.brokers import delete_redis_keys, kafka_log, unique_name

LogFactory = Callable[[], Awaitable[EventLog]]
PATIENCE = 30.0
"""Seconds a read may take to see what it expects (a Kafka group join takes a few)."""

ADAPTERS = [
    "memory",
    "sqlite",
    pytest.param("kafka", marks=pytest.mark.integration),
    pytest.param("redis", marks=pytest.mark.integration),
]


@pytest.fixture(params=ADAPTERS)
async def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogFactory]:
    """Opens logs over one place per test (a file, a topic, a stream): the second log opened
    sees what the first appended."""
    adapter = str(request.param)
    name = unique_name()
    memory = MemoryLog()
    build: Callable[[], EventLog]
    if adapter == "kafka":
        broker = request.getfixturevalue("kafka_broker")
        build = lambda: kafka_log(broker, name)  # noqa: E731
    elif adapter == "redis":
        from hitstream.log.redis_streams import RedisStreamsLog

        redis_url = request.getfixturevalue("redis_url")
        build = lambda: RedisStreamsLog(f"{redis_url}?stream=test:{name}")  # noqa: E731
    elif adapter == "sqlite":
        build = lambda: SQLiteLog(tmp_path / "log.sqlite3")  # noqa: E731
    else:
        build = lambda: memory  # noqa: E731
    made: list[EventLog] = []

    async def factory() -> EventLog:
        log = build()
        await log.start()
        made.append(log)
        return log

    yield factory
    for log in made:
        await log.close()
    if adapter == "redis":
        await delete_redis_keys(request.getfixturevalue("redis_url"), f"test:{name}")


async def nowhere(partition: int) -> int | None:
    return None


async def take(consumer: LogConsumer, count: int, within: float = PATIENCE) -> list[LogMessage]:
    """Poll until ``count`` messages came or ``within`` seconds passed."""
    out: list[LogMessage] = []
    deadline = time.monotonic() + within
    while len(out) < count and time.monotonic() < deadline:
        out.extend(await consumer.poll(count - len(out), 0.5))
    return out


async def read_all(
    log: EventLog, count: int, positions: PositionLookup = nowhere, group: str = "g"
) -> list[LogMessage]:
    """What a new consumer reads: the ``count`` expected, plus any extra that follows soon."""
    consumer = log.consumer(group, positions)
    try:
        out = await take(consumer, count)
        out.extend(await consumer.poll(1000, 0.3))
    finally:
        await consumer.close()
    return out


def values(messages: list[LogMessage]) -> list[bytes]:
    return [m.value for m in messages]


async def test_append_then_read_in_order(make_log: LogFactory) -> None:
    log = await make_log()
    await log.append([(b"k", f"v{i}".encode()) for i in range(10)])
    await log.append([(b"k", b"v10")])
    assert values(await read_all(log, 11)) == [f"v{i}".encode() for i in range(11)]


async def test_append_tells_where_each_message_landed(make_log: LogFactory) -> None:
    """Where a log tells positions, a consumer finds each message exactly there."""
    log = await make_log()
    first = await log.append([(f"k{i}".encode(), f"v{i}".encode()) for i in range(5)])
    second = await log.append([(b"k0", b"v5")])
    if first is None or second is None:  # Redis Streams: ids are not offsets
        assert log.name == "redis" and first is second is None
        return
    told = dict(zip([f"v{i}".encode() for i in range(6)], [*first, *second], strict=True))
    read = {m.value: (m.partition, m.offset) for m in await read_all(log, 6)}
    assert read == told


async def test_each_key_keeps_its_order(make_log: LogFactory) -> None:
    """Many keys may spread over partitions; each key's messages still come in append order."""
    log = await make_log()
    await log.append([(f"site\x1fv{i % 7}".encode(), f"{i}".encode()) for i in range(70)])
    got = await read_all(log, 70)
    assert sorted(int(m.value) for m in got) == list(range(70))
    for visitor in range(7):
        mine = [int(m.value) for m in got if m.key == f"site\x1fv{visitor}".encode()]
        assert mine == list(range(visitor, 70, 7))


async def test_concurrent_appends_all_land_once(make_log: LogFactory) -> None:
    log = await make_log()
    await asyncio.gather(*(log.append([(b"k", f"{i}".encode())]) for i in range(200)))
    assert sorted(int(m.value) for m in await read_all(log, 200)) == list(range(200))


async def test_consumer_starts_at_stored_position(make_log: LogFactory) -> None:
    log = await make_log()
    await log.append([(b"k", f"{i}".encode()) for i in range(5)])
    everything = await read_all(log, 5)
    third = everything[2]

    async def stored(partition: int) -> int | None:
        return third.offset + 1 if partition == third.partition else None

    assert values(await read_all(log, 2, stored)) == [b"3", b"4"]


async def test_commit_is_the_fallback_position(make_log: LogFactory) -> None:
    log = await make_log()
    await log.append([(b"k", f"{i}".encode()) for i in range(4)])
    consumer = log.consumer("g", nowhere)
    first = await take(consumer, 2)
    assert values(first) == [b"0", b"1"]
    await consumer.commit({first[-1].partition: first[-1].offset + 1})
    await consumer.close()
    assert values(await read_all(log, 2)) == [b"2", b"3"]


async def test_stored_position_wins_over_commit(make_log: LogFactory) -> None:
    """The store is the truth: ahead of the log's commit (a crash between the store's commit
    and the log's), nothing below it comes again; behind it, the rest is read again."""
    log = await make_log()
    await log.append([(b"k", f"{i}".encode()) for i in range(6)])
    consumer = log.consumer("g", nowhere)
    first = await take(consumer, 6)
    partition = first[0].partition
    await consumer.commit({partition: first[1].offset + 1})
    await consumer.close()

    async def ahead(p: int) -> int | None:
        return first[4].offset if p == partition else None

    assert values(await read_all(log, 2, ahead)) == [b"4", b"5"]
    consumer = log.consumer("g", ahead)
    last = await take(consumer, 2)
    await consumer.commit({partition: last[-1].offset + 1})
    await consumer.close()

    async def behind(p: int) -> int | None:
        return first[3].offset if p == partition else None

    assert values(await read_all(log, 3, behind)) == [b"3", b"4", b"5"]


async def test_a_reader_from_a_time_reads_what_was_appended_since(
    make_log: LogFactory,
) -> None:
    """``hitstream replay --since``: every durable log finds, per partition, the first
    message appended at or after a time (Kafka and Redis Streams could not)."""
    log = await make_log()
    if log.name == "memory":
        pytest.skip("the memory log keeps no append times")
    await log.append([(f"k{i}".encode(), f"before-{i}".encode()) for i in range(6)])
    await asyncio.sleep(0.05)
    moment = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    await log.append([(f"k{i}".encode(), f"after-{i}".encode()) for i in range(6)])
    starts = await log.offsets_for_time(moment)

    async def from_time(partition: int) -> int | None:
        return starts.get(partition, 0)

    found = await read_all(log, 6, from_time, group=f"since-{unique_name()}")
    assert sorted(values(found)) == sorted(f"after-{i}".encode() for i in range(6))


async def test_poll_waits_for_new_messages(make_log: LogFactory) -> None:
    log = await make_log()
    consumer = log.consumer("g", nowhere)
    assert await consumer.poll(10, 0.05) == []

    async def later() -> None:
        await asyncio.sleep(0.1)
        await log.append([(b"k", b"late")])

    task = asyncio.create_task(later())
    got = await take(consumer, 1)
    await task
    assert values(got) == [b"late"]
    assert await consumer.poll(10, 0.2) == []
    await consumer.close()


async def test_append_after_close_fails(make_log: LogFactory) -> None:
    log = await make_log()
    await log.close()
    with pytest.raises(LogUnavailable):
        await log.append([(b"k", b"late")])


async def test_appends_survive_reopen(tmp_path: Path) -> None:
    """Durability for the file-backed log: what append acknowledged is there after reopen."""
    path = tmp_path / "log.sqlite3"
    log = SQLiteLog(path)
    await log.start()
    await log.append([(b"k", b"kept")])
    # no close(): simulate the process vanishing after the acknowledgement
    log._closed = True
    reopened = SQLiteLog(path)
    await reopened.start()
    assert values(await read_all(reopened, 1)) == [b"kept"]
    await reopened.close()


async def test_group_commit_batches_concurrent_appends(tmp_path: Path) -> None:
    log = SQLiteLog(tmp_path / "log.sqlite3")
    await log.start()
    await asyncio.gather(*(log.append([(b"k", b"x")]) for _ in range(300)))
    assert log.commits < 300  # many appends shared a commit
    await log.close()


async def test_dead_letters_are_kept_and_readable(make_log: LogFactory) -> None:
    log = await make_log()
    await log.append([(b"k", b"bad")])
    (message,) = await read_all(log, 1)
    await log.dead_letter([message], "undecodable")
    replay = log.dead_letters("replay", nowhere)
    dead = await take(replay, 1)
    await replay.close()
    assert [(m.key, m.value) for m in dead] == [(b"undecodable", b"bad")]
