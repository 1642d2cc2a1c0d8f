"""The write buffer: the processor writes the store by size or by time (a fake clock), and
the log position moves only with the store write that holds the events."""

from __future__ import annotations

import pytest

from hitstream.log.base import LogMessage
from hitstream.log.memory import MemoryLog
from hitstream.services.processor import Processor
from hitstream.services.write_buffer import WriteBuffer
from hitstream.stores.base import Store, WriteBatch
from hitstream.stores.memory import MemoryStore
from tests.unit.test_processor import accepted, everything, make, put


def messages(first: int, count: int) -> list[LogMessage]:
    return [LogMessage(0, offset, b"k", b"v") for offset in range(first, first + count)]


def test_a_buffer_is_due_when_full_or_when_its_oldest_message_waited() -> None:
    buffer = WriteBuffer(max_events=5, max_wait_s=1.0)
    assert not buffer.due(0.0) and buffer.wait(0.0, 0.2) == 0.2
    buffer.add(messages(0, 2), now=10.0)
    buffer.add(messages(2, 2), now=10.7)  # the oldest decides, not the newest
    assert len(buffer) == 4 and buffer.room() == 1
    assert not buffer.due(10.9)
    assert buffer.wait(10.9, 5.0) == pytest.approx(0.1)
    assert buffer.due(11.0)
    buffer.add(messages(4, 1), now=10.8)
    assert buffer.due(10.8)  # full: due at once, whatever the time
    taken = buffer.take()
    assert [m.offset for m in taken] == [0, 1, 2, 3, 4]
    assert len(buffer) == 0 and not buffer.due(100.0)
    buffer.add(messages(5, 1), now=50.0)  # the clock restarts with the next message
    assert not buffer.due(50.5) and buffer.due(51.0)


def test_an_early_write_waits_until_the_last_write_is_a_wait_old() -> None:
    buffer = WriteBuffer(max_events=50, max_wait_s=1.0)
    assert buffer.spaced(0.0)  # no write yet: a burst may be written as soon as it ends
    buffer.add(messages(0, 1), now=10.0)
    buffer.take(now=10.0)
    assert not buffer.spaced(10.6) and buffer.spaced(11.0)
    buffer.add(messages(1, 1), now=10.5)
    # a poll waits until an early write is allowed (11.0), sooner than the due time (11.5)
    assert buffer.wait(10.6, 5.0) == pytest.approx(0.4)
    assert buffer.wait(11.2, 5.0) == pytest.approx(0.3)  # spaced: until due
    buffer.take()  # not a write (the consumer went back): the spacing still counts from 10.0
    assert buffer.spaced(11.0)


def test_without_a_wait_every_poll_is_due() -> None:
    buffer = WriteBuffer(max_events=5000, max_wait_s=0.0)
    buffer.add(messages(0, 1), now=3.0)
    assert buffer.due(3.0)


def test_a_buffer_refuses_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="at least one event"):
        WriteBuffer(0, 1.0)
    with pytest.raises(ValueError, match="at least one event"):
        WriteBuffer(10, -1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingStore(MemoryStore):
    """A memory store that records every write's events and positions."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[tuple[int, dict[int, int]]] = []

    async def write(self, batch: WriteBatch) -> None:
        await super().write(batch)
        self.writes.append((len(batch.events), dict(batch.positions)))


def buffered(log: MemoryLog, store: Store, clock: Clock, events: int, wait_s: float) -> Processor:
    """The test processor with a write buffer on a fake monotonic clock."""
    processor = make(log, store)
    processor.buffer = WriteBuffer(events, wait_s)
    processor._monotonic = clock
    return processor


async def test_the_processor_holds_polls_until_the_time_bound_then_writes_them_once() -> None:
    log, store, clock = MemoryLog(), CountingStore(), Clock()
    processor = buffered(log, store, clock, events=100, wait_s=1.0)
    await processor.start()
    await put(log, accepted(1))
    assert await processor.process_once() == 1  # polled, held
    clock.now += 0.5
    await put(log, accepted(2, ts=accepted(1).timestamp + 1000))
    assert await processor.process_once() == 1
    assert store.writes == []  # nothing written yet ...
    assert await store.positions("memory") == {}  # ... and so no position either
    assert (await store.aggregate(everything()))["pageviews"] == 0
    clock.now += 0.5  # the first event has now waited 1 s, and traffic goes on
    await put(log, accepted(3, ts=accepted(1).timestamp + 2000))
    assert await processor.process_once() == 3
    assert store.writes == [(3, {0: 3})]  # one write, all three, the position after them
    assert await store.positions("memory") == {0: 3}
    assert (await store.aggregate(everything()))["pageviews"] == 3


async def test_a_poll_that_finds_nothing_new_writes_what_is_held() -> None:
    log, store, clock = MemoryLog(), CountingStore(), Clock()
    processor = buffered(log, store, clock, events=100, wait_s=3600.0)
    await processor.start()
    await put(log, accepted(1), accepted(2, visitor="v2"))
    assert await processor.process_once() == 2  # held: more may come
    assert store.writes == []
    assert await processor.process_once() == 2  # nothing new: the burst is over, written
    assert store.writes == [(2, {0: 2})]
    assert await processor.process_once() == 0  # nothing held, nothing new: no write
    assert store.writes == [(2, {0: 2})]


async def test_steady_traffic_that_pauses_often_is_written_once_per_wait() -> None:
    """A poll that finds nothing new writes early only when the last write is a buffer wait
    old: light steady traffic pauses between most events, and each early write cost a whole
    store transaction (decision 0031)."""
    log, store, clock = MemoryLog(), CountingStore(), Clock()
    processor = buffered(log, store, clock, events=100, wait_s=1.0)
    await processor.start()
    first = accepted(1).timestamp
    await put(log, accepted(1))
    assert await processor.process_once() == 1  # held
    assert await processor.process_once() == 1  # nothing new, no write yet: written at once
    assert store.writes == [(1, {0: 1})]
    for n in range(2, 6):  # four events 0.2 s apart, each followed by a quiet poll
        clock.now += 0.2
        await put(log, accepted(n, ts=first + n))
        assert await processor.process_once() == 1
        assert await processor.process_once() == 0  # quiet, but the last write is recent
    assert store.writes == [(1, {0: 1})]
    assert await store.positions("memory") == {0: 1}  # held events move no position
    clock.now += 0.2  # the last write is now 1 s old: the next quiet poll writes
    assert await processor.process_once() == 4
    assert store.writes == [(1, {0: 1}), (4, {0: 5})]
    assert (await store.aggregate(everything()))["pageviews"] == 5


async def test_the_processor_writes_at_once_when_the_buffer_is_full() -> None:
    log, store, clock = MemoryLog(), CountingStore(), Clock()
    processor = buffered(log, store, clock, events=3, wait_s=3600.0)
    processor.batch_max = 2  # polls smaller than the buffer: it fills over two polls
    await processor.start()
    await put(log, *[accepted(n, ts=accepted(0).timestamp + n) for n in range(1, 6)])
    assert await processor.process_once() == 2  # held
    assert store.writes == []
    assert await processor.process_once() == 3  # one more fills it: written, no time passed
    assert store.writes == [(3, {0: 3})]
    assert await processor.process_once() == 2  # the other two are held again
    assert store.writes == [(3, {0: 3})]


async def test_a_drain_writes_what_is_held() -> None:
    log, store, clock = MemoryLog(), CountingStore(), Clock()
    processor = buffered(log, store, clock, events=100, wait_s=3600.0)
    await processor.start()
    await put(log, accepted(1), accepted(2, visitor="v2"))
    assert await processor.process_once() == 2
    assert store.writes == []
    await processor.drain()
    assert store.writes == [(2, {0: 2})]
    assert not processor.buffer


async def test_a_failed_write_leaves_no_position_and_the_held_events_are_read_again() -> None:
    log, clock = MemoryLog(), Clock()

    class FailingOnce(CountingStore):
        failed = False

        async def write(self, batch: WriteBatch) -> None:
            if not self.failed:
                self.failed = True
                raise RuntimeError("disk on fire")
            await super().write(batch)

    store = FailingOnce()
    processor = buffered(log, store, clock, events=100, wait_s=1.0)
    await processor.start()
    await put(log, accepted(1), accepted(2, visitor="v2"))
    assert await processor.process_once() == 2
    clock.now += 1.0
    assert await processor.process_once() == 2  # the runner retried: written once
    assert store.writes == [(2, {0: 2})]
    assert (await store.aggregate(everything()))["pageviews"] == 2
