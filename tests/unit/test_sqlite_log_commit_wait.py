"""The embedded log's writer waits for company under load (decision 0044): when appends
arrived while it committed, its next commit waits a little for more; a lone appender never
waits. ``gather`` is the rule alone, on a queue; the rest drives a real ``SQLiteLog``."""

from __future__ import annotations

import asyncio
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hitstream.log.sqlite import SQLiteLog, _Group, gather

Make = Callable[[], _Group]


@pytest.fixture
def group() -> Iterator[Make]:
    """Makes groups of one message, on an event loop closed after the test."""
    loop = asyncio.new_event_loop()

    def make() -> _Group:
        made = _Group(loop)
        made.rows.append((b"k", b"v"))
        return made

    yield make
    loop.close()


def test_without_waiting_a_commit_takes_what_is_queued_and_no_more(group: Make) -> None:
    pending: queue.SimpleQueue[_Group | None] = queue.SimpleQueue()
    first, second, late = group(), group(), group()
    pending.put(second)
    groups, closing = gather(pending, first, 0.0)
    pending.put(late)  # arrives after the commit began: the next commit's
    assert groups == [first, second]
    assert not closing
    assert pending.get_nowait() is late


def test_waiting_takes_the_groups_that_arrive_meanwhile(group: Make) -> None:
    pending: queue.SimpleQueue[_Group | None] = queue.SimpleQueue()
    first, second, third, after = group(), group(), group(), group()
    returned = threading.Event()
    arrived: list[bool] = []

    def arrive() -> None:
        returned.wait(0.5)  # well inside the wait; a commit that did not wait is back
        pending.put(second)
        pending.put(third)
        arrived.append(not returned.is_set())
        returned.wait(60)
        pending.put(after)

    helper = threading.Thread(target=arrive)
    # the commit begins with ``first`` and waits 2 s; the others arrive 0.5 s in, and
    # ``after`` only once it has returned
    helper.start()
    groups, closing = gather(pending, first, 2.0)
    returned.set()
    helper.join()
    assert arrived == [True]  # the two came while the commit still waited
    assert groups == [first, second, third]
    assert not closing
    assert pending.get_nowait() is after


def test_closing_during_the_wait_commits_what_was_taken(group: Make) -> None:
    pending: queue.SimpleQueue[_Group | None] = queue.SimpleQueue()
    first, second = group(), group()
    pending.put(second)
    pending.put(None)
    groups, closing = gather(pending, first, 0.01)
    assert groups == [first, second]
    assert closing


@pytest.mark.timeout(30)
async def test_a_lone_appender_never_waits(tmp_path: Path) -> None:
    """One client appending one event after another: nothing arrives while a commit runs,
    so no commit waits (with a wait of 120 s, one that did would run past the timeout)."""
    log = SQLiteLog(tmp_path / "log.sqlite3", commit_wait_s=120.0)
    await log.start()
    try:
        positions = [await log.append([(b"k", f"{i}".encode())]) for i in range(20)]
    finally:
        await log.close()
    assert log.commits == 20
    assert [p[0][1] for p in positions] == list(range(positions[0][0][1], positions[0][0][1] + 20))


async def _commits(path: Path, wait_s: float) -> tuple[int, list[int], float]:
    """2,000 appends of one event at random moments over 0.1 s, each on its own (as requests
    from many browsers arrive: none waits for another's answer): the commits they took,
    every offset answered and the seconds from the first append to the last answer."""
    rng = random.Random(7)
    moments = sorted(rng.uniform(0, 0.1) for _ in range(2_000))
    log = SQLiteLog(path, commit_wait_s=wait_s)
    await log.start()
    answered: list[int] = []

    async def request(n: int, at: float) -> None:
        await asyncio.sleep(at)
        answered.extend(o for _, o in await log.append([(b"k", f"{n}".encode())]))

    began = time.perf_counter()
    try:
        await asyncio.gather(*(request(n, at) for n, at in enumerate(moments)))
        took = time.perf_counter() - began
    finally:
        await log.close()
    return log.commits, answered, took


async def test_under_load_commits_wait_for_company(tmp_path: Path) -> None:
    eager, eager_offsets, _ = await _commits(tmp_path / "eager.sqlite3", 0.0)
    patient, patient_offsets, took = await _commits(tmp_path / "patient.sqlite3", 0.05)
    # every append answered with its own offset, contiguous, either way
    for offsets in (eager_offsets, patient_offsets):
        assert sorted(offsets) == list(range(min(offsets), min(offsets) + 2_000))
    # once an append arrives while a commit runs, the next commit waits 50 ms: one commit per
    # 50 ms while appends keep coming, and a few more as they start and end. How many more is
    # timing (an append that comes while the writer wakes the last commit's appenders is not
    # counted as company, so that a lone client never waits: decision 0044): on a quiet
    # machine 3-63 here against 187-313 committing at once (that bound alone failed one run
    # in four), on a loaded one (CI's tiers in parallel) 3 against 2, as the loop's own lag
    # makes big groups. On a quiet machine a writer that never waited fails both.
    assert patient <= took / 0.05 + 5 or patient * 3 <= eager, (patient, eager, took)
