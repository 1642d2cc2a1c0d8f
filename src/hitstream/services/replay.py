"""Replay: read the event log (or its dead letters) again from an offset or a time into the store.

Safe to run at any time, even twice: events already stored are dropped as duplicates (their
ids are unique in the store), so a replay only adds what is missing, such as events a restored
backup lacks or dead letters that a newer version can decode. A replay keeps its positions
under its own stream name and never moves the live processors' positions.
"""

from __future__ import annotations

from dataclasses import dataclass

from hitstream.log.base import EventLog
from hitstream.services.processor import Processor


@dataclass(frozen=True, slots=True)
class ReplayResult:
    messages: int
    stored: int


async def replay(
    processor: Processor,
    log: EventLog,
    *,
    start: dict[int, int],
    default: int = 0,
    dead_letters: bool = False,
    group: str = "replay",
    idle_timeout: float = 2.0,
) -> ReplayResult:
    """Process from ``start`` (partition -> offset; other partitions from ``default``) until
    the log has had nothing new for ``idle_timeout`` seconds."""

    async def from_start(partition: int) -> int | None:
        return start.get(partition, default)

    consumer = (
        log.dead_letters(group, from_start) if dead_letters else log.consumer(group, from_start)
    )
    await processor.start(consumer)
    messages = 0
    try:
        while count := await processor.process_once(poll_timeout=idle_timeout, flush=True):
            messages += count
    finally:
        await processor.close()
    return ReplayResult(messages=messages, stored=processor.processed)
