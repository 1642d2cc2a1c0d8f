"""Replay: from an offset or the dead letters, into the store, adding only what is missing."""

from __future__ import annotations

import time

import msgspec

from hitstream.log.base import LogMessage
from hitstream.log.memory import MemoryLog
from hitstream.services.processor import Processor
from hitstream.services.replay import replay
from hitstream.stores.memory import MemoryStore
from tests.unit.test_processor import accepted, make, put


def now_ms() -> int:
    return int(time.time() * 1000)


def processor(log: MemoryLog, store: MemoryStore, stream: str = "replay:test") -> Processor:
    return make(log, store, stream=stream, clock=now_ms)


async def test_replay_from_an_offset_adds_only_missing_events() -> None:
    log, store = MemoryLog(), MemoryStore()
    await put(log, accepted(1), accepted(2), accepted(3))
    first = await replay(processor(log, store), log, start={0: 1}, idle_timeout=0.05)
    assert (first.messages, first.stored) == (2, 2)
    again = await replay(processor(log, store, "replay:2"), log, start={}, idle_timeout=0.05)
    assert (again.messages, again.stored) == (3, 1)  # the two known ids are duplicates
    assert await store.count_events() == 3
    assert await store.positions("memory") == {}  # live processors' positions untouched


async def test_replay_of_dead_letters() -> None:
    log, store = MemoryLog(), MemoryStore()
    good_now = msgspec.json.encode(accepted(7))
    await log.dead_letter([LogMessage(0, 0, b"k", good_now)], "undecodable")
    result = await replay(
        processor(log, store), log, start={}, dead_letters=True, idle_timeout=0.05
    )
    assert result.stored == 1
    assert await store.count_events() == 1
