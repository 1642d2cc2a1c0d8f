"""An in-process event log for unit tests: one list per partition, nothing survives exit."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Mapping, Sequence

from hitstream.errors import LogUnavailable
from hitstream.log.base import EventLog, LogConsumer, LogMessage, PositionLookup, Positions


class MemoryLog(EventLog):
    name = "memory"

    def __init__(self, partitions: int = 1) -> None:
        self._dead: MemoryLog | None = None
        self._partitions: list[list[LogMessage]] = [[] for _ in range(partitions)]
        self._committed: dict[tuple[str, int], int] = {}
        self._changed = asyncio.Event()
        self.available = True

    async def start(self) -> None:
        self.available = True

    async def close(self) -> None:
        self.available = False

    async def append(self, messages: Sequence[tuple[bytes, bytes]]) -> Positions:
        if not self.available:
            raise LogUnavailable("memory log is switched off")
        positions: Positions = []
        for key, value in messages:
            part = zlib.crc32(key) % len(self._partitions)
            rows = self._partitions[part]
            positions.append((part, len(rows)))
            rows.append(LogMessage(part, len(rows), key, value))
        self._changed.set()
        return positions

    async def check(self) -> None:
        if not self.available:
            raise LogUnavailable("memory log is switched off")

    def consumer(self, group: str, positions: PositionLookup) -> LogConsumer:
        return _MemoryConsumer(self, group, positions)

    async def dead_letter(self, messages: Sequence[LogMessage], reason: str) -> None:
        await self._dead_log().append([(reason.encode(), m.value) for m in messages])

    def dead_letters(self, group: str, positions: PositionLookup) -> LogConsumer:
        return self._dead_log().consumer(group, positions)

    def _dead_log(self) -> MemoryLog:
        if self._dead is None:
            self._dead = MemoryLog()
        return self._dead

    def messages(self, partition: int = 0) -> list[LogMessage]:
        return list(self._partitions[partition])


class _MemoryConsumer(LogConsumer):
    def __init__(self, log: MemoryLog, group: str, positions: PositionLookup) -> None:
        self._log = log
        self._group = group
        self._lookup = positions
        self._next: dict[int, int] | None = None

    async def _start(self) -> dict[int, int]:
        if self._next is None:
            self._next = {}
            for part in range(len(self._log._partitions)):
                stored = await self._lookup(part)
                if stored is None:
                    stored = self._log._committed.get((self._group, part), 0)
                self._next[part] = stored
        return self._next

    async def poll(self, max_messages: int, timeout: float) -> list[LogMessage]:
        positions = await self._start()
        out = self._take(positions, max_messages)
        if not out and timeout > 0:
            self._log._changed.clear()
            try:
                await asyncio.wait_for(self._log._changed.wait(), timeout)
            except TimeoutError:
                return []
            out = self._take(positions, max_messages)
        return out

    def _take(self, positions: dict[int, int], max_messages: int) -> list[LogMessage]:
        out: list[LogMessage] = []
        for part, rows in enumerate(self._log._partitions):
            start = positions[part]
            chunk = rows[start : start + max_messages - len(out)]
            out.extend(chunk)
            positions[part] = start + len(chunk)
        return out

    async def commit(self, positions: Mapping[int, int]) -> None:
        for part, offset in positions.items():
            self._log._committed[(self._group, part)] = offset

    async def close(self) -> None:
        return None

    async def lag(self) -> int | None:
        positions = await self._start()
        return sum(len(rows) - positions[p] for p, rows in enumerate(self._log._partitions))
