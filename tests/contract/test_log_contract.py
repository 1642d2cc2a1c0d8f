"""One suite every event log adapter passes: durable appends, ordered reads, resumable positions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from hitstream.log.base import EventLog, LogMessage
from hitstream.log.memory import MemoryLog
from hitstream.log.sqlite import SQLiteLog

LogFactory = Callable[[], Awaitable[EventLog]]


@pytest.fixture(params=["memory", "sqlite"])
async def make_log(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LogFactory]:
    made: list[EventLog] = []
    memory = MemoryLog()

    async def factory() -> EventLog:
        log: EventLog = memory if request.param == "memory" else SQLiteLog(tmp_path / "log.sqlite3")
        await log.start()
        made.append(log)
        return log

    yield factory
    for log in made:
        await log.close()


async def nowhere(partition: int) -> int | None:
    return None


async def read_all(
    log: EventLog, positions: Callable[[int], Awaitable[int | None]] = nowhere
) -> list[LogMessage]:
    consumer = log.consumer("g", positions)
    out: list[LogMessage] = []
    while batch := await consumer.poll(1000, 0.05):
        out.extend(batch)
    await consumer.close()
    return out


async def test_append_then_read_in_order(make_log: LogFactory) -> None:
    log = await make_log()
    await log.append([(b"k", f"v{i}".encode()) for i in range(10)])
    await log.append([(b"k", b"v10")])
    values = [m.value for m in await read_all(log)]
    assert values == [f"v{i}".encode() for i in range(11)]


async def test_concurrent_appends_all_land_once(make_log: LogFactory) -> None:
    log = await make_log()
    await asyncio.gather(*(log.append([(b"k", f"{i}".encode())]) for i in range(200)))
    values = sorted(int(m.value) for m in await read_all(log))
    assert values == list(range(200))


async def test_consumer_starts_at_stored_position(make_log: LogFactory) -> None:
    log = await make_log()
    await log.append([(b"k", f"{i}".encode()) for i in range(5)])
    everything = await read_all(log)
    third = everything[2]

    async def stored(partition: int) -> int | None:
        return third.offset + 1 if partition == third.partition else None

    rest = await read_all(log, stored)
    assert [m.value for m in rest] == [b"3", b"4"]


async def test_commit_is_the_fallback_position(make_log: LogFactory) -> None:
    log = await make_log()
    await log.append([(b"k", f"{i}".encode()) for i in range(4)])
    consumer = log.consumer("g", nowhere)
    first = await consumer.poll(2, 0.1)
    await consumer.commit({first[-1].partition: first[-1].offset + 1})
    await consumer.close()
    again = await read_all(log)
    assert [m.value for m in again] == [b"2", b"3"]


async def test_poll_waits_for_new_messages(make_log: LogFactory) -> None:
    log = await make_log()
    consumer = log.consumer("g", nowhere)
    assert await consumer.poll(10, 0.05) == []

    async def later() -> None:
        await asyncio.sleep(0.1)
        await log.append([(b"k", b"late")])

    task = asyncio.create_task(later())
    got = await consumer.poll(10, 2.0)
    await task
    assert [m.value for m in got] == [b"late"]
    await consumer.close()


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
    assert [m.value for m in await read_all(reopened)] == [b"kept"]
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
    (message,) = await read_all(log)
    await log.dead_letter([message], "undecodable")
    dead = await log.dead_letters("replay", nowhere).poll(10, 0.2)
    assert [(m.key, m.value) for m in dead] == [(b"undecodable", b"bad")]
