"""The embedded log's frames (decision 0043): many messages in one SQLite row, offsets still
one per message, contiguous and never reused; a log written before frames still reads.

Expected offsets and values are computed here from what was appended, never read back from
the log's own bookkeeping."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from pathlib import Path

import pytest

from hitstream.log.base import LogConsumer, LogMessage, PositionLookup
from hitstream.log.sqlite import MAX_FRAME, SQLiteLog


async def _nowhere(partition: int) -> int | None:
    return None


def _at(offset: int) -> PositionLookup:
    async def lookup(partition: int) -> int | None:
        return offset

    return lookup


async def _take(consumer: LogConsumer, count: int, batch: int = 10_000) -> list[LogMessage]:
    got: list[LogMessage] = []
    deadline = time.monotonic() + 10
    while len(got) < count and time.monotonic() < deadline:
        got.extend(await consumer.poll(min(batch, count - len(got)), 0.2))
    return got


async def _started(path: Path, retention_s: int = 86_400) -> SQLiteLog:
    log = SQLiteLog(path, retention_s=retention_s)
    await log.start()
    return log


def _rows(path: Path, sql: str) -> list[tuple[int, ...]]:
    """Integer columns of a query on the file, through a connection of its own."""
    with sqlite3.connect(path) as conn:
        return [tuple(int(v) for v in row) for row in conn.execute(sql).fetchall()]


async def test_one_commit_is_one_row_however_many_messages(tmp_path: Path) -> None:
    log = await _started(tmp_path / "log.sqlite3")
    await asyncio.gather(*(log.append([(b"k", f"{i}".encode())] * 3) for i in range(50)))
    await log.close()
    frames = _rows(tmp_path / "log.sqlite3", "SELECT first, count FROM frames ORDER BY first")
    assert sum(count for _, count in frames) == 150
    assert len(frames) == log.commits < 50  # group commit: one frame per commit
    # contiguous: each frame starts where the one before it ended
    for (first, count), (following, _) in itertools.pairwise(frames):
        assert following == first + count


async def test_a_group_larger_than_a_frame_is_cut_and_reads_whole(tmp_path: Path) -> None:
    log = await _started(tmp_path / "log.sqlite3")
    total = 2 * MAX_FRAME + 7
    positions = await log.append([(b"k", f"{i}".encode()) for i in range(total)])
    counts = _rows(tmp_path / "log.sqlite3", "SELECT count FROM frames ORDER BY first")
    assert [c for (c,) in counts] == [MAX_FRAME, MAX_FRAME, 7]
    got = await _take(log.consumer("g", _nowhere), total, batch=333)  # polls end mid-frame
    assert [m.value for m in got] == [f"{i}".encode() for i in range(total)]
    assert [(m.partition, m.offset) for m in got] == positions
    await log.close()


@pytest.mark.parametrize("inside", [0, 1, 5, 9])
async def test_a_consumer_may_start_inside_a_frame(tmp_path: Path, inside: int) -> None:
    log = await _started(tmp_path / "log.sqlite3")
    before = await log.append([(b"k", b"a")])
    frame = await log.append([(b"k", f"m{i}".encode()) for i in range(10)])
    await log.append([(b"k", b"z")])
    assert frame[0][1] == before[0][1] + 1
    start = frame[inside][1]
    got = await _take(log.consumer("g", _at(start)), 10 - inside + 1)
    assert [m.value for m in got] == [f"m{i}".encode() for i in range(inside, 10)] + [b"z"]
    assert [m.offset for m in got] == list(range(start, start + 11 - inside))
    await log.close()


async def test_offsets_are_never_reused_after_compaction(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    log = await _started(path, retention_s=0)
    first = await log.append([(b"k", f"{i}".encode()) for i in range(5)])
    consumer = log.consumer("g", _nowhere)
    got = await _take(consumer, 5)
    await consumer.commit({0: got[-1].offset + 1})  # the first commit compacts (retention 0)
    assert _rows(path, "SELECT COUNT(*) FROM frames") == [(0,)]
    await consumer.close()
    await log.close()
    reopened = await _started(path)
    again = await reopened.append([(b"k", b"after")])
    assert again == [(0, first[-1][1] + 1)]
    late = await _take(reopened.consumer("g", _nowhere), 1)
    assert [(m.offset, m.value) for m in late] == [(first[-1][1] + 1, b"after")]
    await reopened.close()


async def test_lag_counts_messages_not_frames(tmp_path: Path) -> None:
    log = await _started(tmp_path / "log.sqlite3")
    await log.append([(b"k", b"x")] * 40)
    await log.append([(b"k", b"y")] * 2)
    consumer = log.consumer("g", _nowhere)
    assert await consumer.lag() == 42
    await _take(consumer, 15, batch=15)
    assert await consumer.lag() == 27
    await consumer.close()
    await log.close()


async def test_offsets_for_time_finds_the_first_frame_after(tmp_path: Path) -> None:
    log = await _started(tmp_path / "log.sqlite3")
    await log.append([(b"k", b"old")] * 3)
    await asyncio.sleep(0.01)
    cut = int(time.time() * 1000)
    await asyncio.sleep(0.01)
    later = await log.append([(b"k", b"new")] * 2)
    assert await log.offsets_for_time(cut) == {0: later[0][1]}
    assert await log.offsets_for_time(cut + 60_000) == {0: later[-1][1] + 1}
    await log.close()


_LEGACY = """
CREATE TABLE messages (
    offset INTEGER PRIMARY KEY AUTOINCREMENT,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    appended_at INTEGER NOT NULL
);
CREATE TABLE commits (grp TEXT PRIMARY KEY, next_offset INTEGER NOT NULL);
"""


async def test_a_log_written_before_frames_reads_on(tmp_path: Path) -> None:
    """An upgrade: the old file's unread messages come first, at their old offsets, then the
    new frames at offsets after them; replay by time and compaction see both."""
    path = tmp_path / "log.sqlite3"
    written = int(time.time() * 1000) - 10_000
    with sqlite3.connect(path) as conn:
        conn.executescript(_LEGACY)
        conn.executemany(
            "INSERT INTO messages (key, value, appended_at) VALUES (?, ?, ?)",
            [(b"k", f"old{i}".encode(), written) for i in range(6)],
        )
        conn.execute("DELETE FROM messages WHERE offset <= 2")  # compacted by the old code
        conn.execute("INSERT INTO commits VALUES ('processor', 3)")
    log = await _started(path, retention_s=0)
    new = await log.append([(b"k", f"new{i}".encode()) for i in range(3)])
    assert [offset for _, offset in new] == [7, 8, 9]  # after the old sequence's last (6)
    consumer = log.consumer("processor", _nowhere)  # the old commit: next is offset 3
    assert await consumer.lag() == 7
    got = await _take(consumer, 7, batch=2)
    assert [(m.offset, m.value) for m in got] == [
        (3, b"old2"),
        (4, b"old3"),
        (5, b"old4"),
        (6, b"old5"),
        (7, b"new0"),
        (8, b"new1"),
        (9, b"new2"),
    ]
    assert await log.offsets_for_time(written) == {0: 3}
    assert await log.offsets_for_time(written + 5_000) == {0: 7}
    await consumer.commit({0: 10})
    assert _rows(path, "SELECT COUNT(*) FROM messages") == [(0,)]
    assert _rows(path, "SELECT COUNT(*) FROM frames") == [(0,)]
    await consumer.close()
    await log.close()


async def test_two_writers_on_one_file_never_share_an_offset(tmp_path: Path) -> None:
    """``serve`` may run collectors in several processes over one file: the head is read
    inside each writer's transaction, so two logs (two connections) interleave safely."""
    path = tmp_path / "log.sqlite3"
    one, two = await _started(path), await _started(path)
    told = await asyncio.gather(
        *(
            (one if i % 2 else two).append([(b"k", f"{i}-{j}".encode()) for j in range(3)])
            for i in range(40)
        )
    )
    offsets = [offset for positions in told for _, offset in positions]
    assert len(set(offsets)) == 120
    got = await _take(one.consumer("g", _nowhere), 120)
    by_offset = {m.offset: m.value for m in got}
    for i, positions in enumerate(told):
        assert [by_offset[o] for _, o in positions] == [f"{i}-{j}".encode() for j in range(3)]
    await one.close()
    await two.close()
