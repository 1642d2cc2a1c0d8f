"""Replay: read the event log (or its dead letters) again from an offset or a time into the store.

Safe to run at any time, even twice: events already stored are dropped as duplicates (their
ids are unique in the store), so a replay only adds what is missing, such as events a restored
backup lacks or dead letters that a newer version can decode. A replay keeps its positions
under its own stream name and never moves the live processors' positions.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from hitstream.errors import LogUnavailable
from hitstream.log.base import EventLog
from hitstream.services.processor import Processor

POLL_PAUSE_S: Final = 0.05
"""Between two polls that found nothing (a flushing poll does not wait)."""


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
    join_timeout: float = 60.0,
) -> ReplayResult:
    """Process from ``start`` (partition -> offset; other partitions from ``default``) until
    the log has had nothing new for ``idle_timeout`` seconds once the consumer can read
    (``join_timeout`` while it cannot: a Kafka group's first assignment takes seconds)."""

    async def from_start(partition: int) -> int | None:
        return start.get(partition, default)

    consumer = (
        log.dead_letters(group, from_start) if dead_letters else log.consumer(group, from_start)
    )
    await processor.start(consumer)
    messages = 0
    began = quiet_since = time.monotonic()
    try:
        while True:
            count = await processor.process_once(poll_timeout=0.0, flush=True)
            now = time.monotonic()
            if count:
                messages += count
                quiet_since = now
            elif not consumer.ready:  # a Kafka member reads nothing before its group gives
                quiet_since = now  # it partitions: the quiet that counts starts then
                if now - began >= join_timeout:
                    raise LogUnavailable(
                        f"the log gave this replay nothing to read in {join_timeout:.0f} s"
                    )
            elif now - quiet_since >= idle_timeout:
                break
            await asyncio.sleep(0 if count else POLL_PAUSE_S)
    finally:
        await processor.close()
    return ReplayResult(messages=messages, stored=processor.processed)
