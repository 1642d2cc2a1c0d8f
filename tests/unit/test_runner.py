"""The position rule, proven stage by stage: whatever fails between the poll and the store's
commit, every message ends up stored exactly once or in the dead letters with its reason.

Each test injects one failure into one stage (the store's calls, each pipeline step, the dead
letters, the clock, the fan-out, the log's commit) over memory adapters, a fake clock and a
backoff that does not wait, then accounts for every message appended, independently of the
processor: by the event ids of the store's *successful* writes, by the dead letters, and by
the visits' own counts (an event counted twice in its visit would show there).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import msgspec
import pytest

from hitstream.domain.events import Session
from hitstream.domain.pipeline import Drop, Working
from hitstream.errors import LogUnavailable, StoreUnavailable
from hitstream.fanout.memory import MemoryFanout
from hitstream.log.base import LogMessage
from hitstream.log.memory import MemoryLog
from hitstream.services import wire
from hitstream.services.pipeline import BatchStep, Named
from hitstream.services.processor import Processor
from hitstream.stores.base import WriteBatch
from hitstream.stores.memory import MemoryStore
from tests.unit.test_processor import T0, accepted, make, put

EVENTS = [accepted(n, visitor=f"v{n % 3}", ts=T0 + n * 60_000) for n in range(1, 10)]
POISON = EVENTS[4].event_id
STEPS = [
    "drop_duplicate",
    "drop_unregistered",
    "drop_forgotten",
    "drop_bot",
    "put_user_agent",
    "put_utm",
    "put_referrer",
    "put_session",
]


class Fault:
    """Raise ``error`` on the first ``times`` calls for which ``when`` holds."""

    def __init__(
        self, error: Exception, times: int = 10**9, when: Callable[..., bool] = lambda *a: True
    ) -> None:
        self.error, self.left, self.when = error, times, when
        self.raised = 0

    def __call__(self, *args: object) -> None:
        if self.left > 0 and self.when(*args):
            self.left -= 1
            self.raised += 1
            raise self.error


@dataclass
class Ledger(MemoryStore):
    """A memory store that can be made to fail per call, and that remembers which event ids
    each *successful* write carried."""

    faults: dict[str, Fault] = field(default_factory=dict)
    written: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        super().__init__()

    def _fault(self, call: str, *args: object) -> None:
        if call in self.faults:
            self.faults[call](*args)

    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        self._fault("known_event_ids", event_ids)
        return await super().known_event_ids(event_ids)

    async def open_sessions(self, since_ms: int) -> list[Session]:
        self._fault("open_sessions")
        return await super().open_sessions(since_ms)

    async def write(self, batch: WriteBatch) -> None:
        self._fault("write", batch)
        await super().write(batch)
        self.written.update(event.event_id for event in batch.events)

    async def data_version(self, site_id: str) -> int:
        self._fault("data_version")
        return await super().data_version(site_id)


class FaultyLog(MemoryLog):
    def __init__(self) -> None:
        super().__init__()
        self.faults: dict[str, Fault] = {}

    async def dead_letter(self, messages: Sequence[LogMessage], reason: str) -> None:
        if "dead_letter" in self.faults:
            self.faults["dead_letter"]()
        await super().dead_letter(messages, reason)


async def dead_letters(log: MemoryLog) -> list[tuple[str, bytes]]:
    async def from_start(partition: int) -> int | None:
        return 0

    found = await log.dead_letters("audit", from_start).poll(1000, 0)
    return [(message.key.decode(), message.value) for message in found]


def has(event_id: str) -> Callable[..., bool]:
    """A fault condition: the call is about this event (a write or a lookup carrying it)."""

    def holds(*args: object) -> bool:
        for arg in args:
            if isinstance(arg, WriteBatch) and any(e.event_id == event_id for e in arg.events):
                return True
            if isinstance(arg, list) and event_id in arg:
                return True
        return False

    return holds


async def account(
    log: MemoryLog, store: Ledger, *, dead: dict[str, str] | None = None, garbage: int = 0
) -> None:
    """Every appended message is stored exactly once or dead-lettered (once) with a reason
    starting as ``dead`` says; the stored position is past all of them; every visit row
    counts exactly its stored events."""
    dead = dead or {}
    letters = await dead_letters(log)
    lettered: Counter[str] = Counter()
    for reason, value in letters:
        try:
            event_id = wire.decode(value).event_id
        except msgspec.DecodeError:
            assert reason == "undecodable"
            continue
        assert reason.startswith(dead[event_id]), (event_id, reason)
        lettered[event_id] += 1
    assert len(letters) - sum(lettered.values()) == garbage
    for event in EVENTS:
        if event.event_id in dead:
            assert (lettered[event.event_id], store.written[event.event_id]) == (1, 0)
        else:
            assert (lettered[event.event_id], store.written[event.event_id]) == (0, 1)
    assert await store.positions("memory") == {0: len(EVENTS) + garbage}
    rows = await store.open_sessions(0)
    assert sum(s.pageviews for s in rows) == len(EVENTS) - len(dead)
    assert await store.count_events() == len(EVENTS) - len(dead)


async def run_all(processor: Processor) -> None:
    await processor.start()
    for _ in range(20):
        if await processor.process_once() == 0:
            return
    raise AssertionError("the processor never caught up")


# -- transient failures: the same batch again, nothing skipped ------------------------------


@pytest.mark.parametrize(
    ("call", "error"),
    [
        ("known_event_ids", StoreUnavailable("lookup failed")),  # drop_duplicate's store call
        ("write", StoreUnavailable("transaction failed")),
        ("open_sessions", StoreUnavailable("reload failed")),  # reloading the visit state
    ],
)
async def test_a_store_outage_in_any_call_retries_the_same_batch(
    call: str, error: Exception
) -> None:
    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS)
    processor = make(log, store)
    await processor.start()
    store.faults["write"] = Fault(StoreUnavailable("first write fails"), times=1)
    if call != "write":  # the first write's failure makes the next try reload the visits
        store.faults[call] = Fault(error, times=3)
    else:
        store.faults[call] = Fault(error, times=4)
    assert await processor.process_once() == len(EVENTS)
    assert store.faults[call].raised >= 3
    await account(log, store)


async def test_the_poll_is_not_moved_past_a_batch_the_dedupe_lookup_failed() -> None:
    """Issue 8's loss: the lookup failed before the write's retry loop, the processor
    polled the next batch, and the next commit stored a position past the lost one."""
    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS[:4])
    processor = make(log, store)
    await processor.start()
    store.faults["known_event_ids"] = Fault(StoreUnavailable("PostgreSQL restarting"), times=5)
    processor.batch_max = 4
    assert await processor.process_once() == 4
    await put(log, *EVENTS[4:])
    assert await processor.process_once() == 4
    assert await processor.process_once() == 1
    await account(log, store)


async def test_dead_letters_that_cannot_be_kept_yet_hold_the_batch() -> None:
    log, store = FaultyLog(), Ledger()
    await log.append([(b"k", b"not json")])
    await put(log, *EVENTS)
    log.faults["dead_letter"] = Fault(LogUnavailable("log down"), times=2)
    await run_all(make(log, store))
    assert log.faults["dead_letter"].raised == 2
    # the garbage message sits at offset 0, so positions count it too
    assert await store.drop_counts() == {"undecodable": 1}
    letters = await dead_letters(log)
    assert letters == [("undecodable", b"not json")]  # kept once, though tried three times
    assert sum(store.written.values()) == len(EVENTS)
    assert await store.positions("memory") == {0: len(EVENTS) + 1}


async def test_a_clock_that_fails_while_reloading_visits_is_retried() -> None:
    calls = 0

    def clock() -> int:
        nonlocal calls
        calls += 1
        if calls in (2, 3):
            raise OSError("clock_gettime failed")
        return T0 + 1000

    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS)
    processor = make(log, store, clock=clock)
    await processor.start()  # call 1
    store.faults["write"] = Fault(StoreUnavailable("down"), times=1)  # makes the next try reload
    assert await processor.process_once() == len(EVENTS)
    assert calls >= 4
    await account(log, store)


# -- after the commit: best effort, never a loss, never a second write --------------------


async def test_fan_out_and_clock_failures_after_the_commit_lose_nothing() -> None:
    class DeadFanout(MemoryFanout):
        async def publish(self, channel: str, message: bytes) -> None:
            raise RuntimeError("redis exploded")

    calls = 0

    def clock() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise OSError("no clock after start")
        return T0

    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS[:4])
    processor = make(log, store, DeadFanout(), clock=clock)
    await processor.start()
    assert await processor.process_once() == 4
    await put(log, *EVENTS[4:])
    assert await processor.process_once() == len(EVENTS) - 4
    await account(log, store)


async def test_a_failed_log_commit_neither_loses_nor_rereads() -> None:
    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS[:4])
    processor = make(log, store)
    await processor.start()
    assert processor._consumer is not None

    async def refuse(positions: object) -> None:
        raise LogUnavailable("commit refused")

    processor._consumer.commit = refuse  # type: ignore[method-assign]
    assert await processor.process_once() == 4
    await put(log, *EVENTS[4:])
    assert await processor.process_once() == len(EVENTS) - 4
    await account(log, store)


# -- a step that raises: the one event is dead-lettered, the rest goes on -----------------


def raising_in(step: str, event_id: str) -> Callable[[list[Named]], list[Named]]:
    """The pipeline with ``step`` raising on ``event_id``: after doing its work, so a
    stateful step leaves its state half-changed, as a real bug would."""

    def change(steps: list[Named]) -> list[Named]:
        changed: list[Named] = []
        for named in steps:
            if named.name != step:
                changed.append(named)
            elif named.each is not None:
                inner_each = named.each

                def each(working: Working, inner: Callable[..., Drop | None] = inner_each) -> None:
                    inner(working)
                    if working.accepted.event_id == event_id:
                        raise RuntimeError(f"boom in {step}")

                changed.append(replace(named, each=each))
            else:
                inner_batch = named.batch
                assert inner_batch is not None

                async def batch(
                    events: Sequence[Working], inner: BatchStep = inner_batch
                ) -> list[Drop | None]:
                    if any(w.accepted.event_id == event_id for w in events):
                        raise RuntimeError(f"boom in {step}")
                    return await inner(events)

                changed.append(replace(named, batch=batch))
        return changed

    return change


@pytest.mark.parametrize("step", STEPS)
async def test_a_step_that_raises_on_one_event_dead_letters_it_with_its_reason(step: str) -> None:
    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS)
    processor = make(log, store, steps=raising_in(step, POISON))
    await run_all(processor)
    await account(log, store, dead={POISON: f"{step}: RuntimeError: boom in {step}"})
    assert (await store.drop_counts("a.io"))[f"dead_letter:{step}"] == 1


async def test_the_pipeline_is_one_named_list() -> None:
    processor = make(MemoryLog(), Ledger())
    assert processor.runner.pipeline.names == STEPS


# -- a failure no retry fixes: halve the batch down to the message, dead-letter only it -----


@pytest.mark.parametrize(
    ("call", "error"),
    [("write", ValueError("value out of range")), ("known_event_ids", TypeError("bad id"))],
)
async def test_a_message_that_always_fails_a_batch_is_found_and_dead_lettered(
    call: str, error: Exception
) -> None:
    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS)
    store.faults[call] = Fault(error, when=has(POISON))
    await run_all(make(log, store))
    stage = "write" if call == "write" else "drop_duplicate"
    await account(log, store, dead={POISON: f"{stage}: {type(error).__name__}"})
    assert (await store.drop_counts("a.io"))[f"dead_letter:{stage}"] == 1


async def test_a_failure_that_clears_on_retry_dead_letters_nothing() -> None:
    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS)
    store.faults["write"] = Fault(RuntimeError("deadlock detected"), times=2)
    await run_all(make(log, store))
    await account(log, store)


# -- stopping while the store is down: give up unwritten, read it again next time ----------


async def test_a_processor_stopping_during_an_outage_leaves_the_position() -> None:
    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS)
    store.faults["write"] = Fault(StoreUnavailable("down"))
    processor = make(log, store)
    processor.drain_timeout_s = 0.05
    await processor.start()
    stop = asyncio.Event()
    running = asyncio.create_task(processor.run(stop))
    for _ in range(500):
        if store.faults["write"].raised >= 3:
            break
        await asyncio.sleep(0.01)
    assert store.faults["write"].raised >= 3, "the same batch is tried again and again"
    stop.set()
    await asyncio.wait_for(running, 5)
    assert sum(store.written.values()) == 0
    assert await store.positions("memory") == {}
    del store.faults["write"]  # the store is back; a new process reads everything again
    await run_all(make(log, store))
    await account(log, store)


async def test_the_run_loop_outlives_a_log_outage() -> None:
    log, store = MemoryLog(), Ledger()
    await put(log, *EVENTS)
    processor = make(log, store)
    await processor.start()
    assert processor._consumer is not None
    real_poll = processor._consumer.poll
    failures = Fault(LogUnavailable("log down"), times=3)

    async def flaky(max_messages: int, timeout: float) -> list[LogMessage]:
        failures()
        return await real_poll(max_messages, timeout)

    processor._consumer.poll = flaky  # type: ignore[method-assign]
    stop = asyncio.Event()
    running = asyncio.create_task(processor.run(stop))
    await asyncio.wait_for(processor.caught_up.wait(), 5)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert failures.raised == 3
    await account(log, store)
