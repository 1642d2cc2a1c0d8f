"""The event log port: a durable, ordered, partitioned append log with consumer positions.

Guarantee every adapter must keep (the contract suite checks it): when ``append`` returns, the
messages survive a crash of this process; a consumer that starts from a position reads every
message after it, in order within a partition. Positions are "next offset to read"; the
processor stores them with its data, so the log's own commits are only a hint.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from hitstream.errors import LogUnavailable

PositionLookup = Callable[[int], Awaitable[int | None]]
"""partition -> next offset to read, from the store (None: start from the log's own commit)."""
Positions = list[tuple[int, int]]
"""(partition, offset) of each appended message, in the order appended."""


@dataclass(frozen=True, slots=True)
class LogMessage:
    partition: int
    offset: int
    key: bytes
    value: bytes


class LogConsumer(ABC):
    """One member of a consumer group; partitions may move between members."""

    @abstractmethod
    async def poll(self, max_messages: int, timeout: float) -> list[LogMessage]:
        """Up to ``max_messages`` in log order, waiting at most ``timeout`` s for the first."""

    @abstractmethod
    async def commit(self, positions: Mapping[int, int]) -> None:
        """Record partition -> next offset as consumed (after the store has them)."""

    @abstractmethod
    async def close(self) -> None: ...

    async def lag(self) -> int | None:
        """Messages appended but not yet polled by this consumer, if the log can tell."""
        return None

    @property
    def ready(self) -> bool:
        """Whether a poll can return messages now (a Kafka member is not until the group
        gave it partitions; a replay waits for that before it calls the log empty)."""
        return True

    @property
    def generation(self) -> int:
        """Grows whenever this member's partitions change (a rebalance): state kept per
        partition (open visits) must then be reloaded from the store."""
        return 0


class EventLog(ABC):
    """Where the collector appends and the processor reads."""

    name: str = "log"

    @property
    def stream(self) -> str:
        """The identity of this log's data (e.g. ``kafka:events``): the key under which the
        store keeps positions, so two different logs never share them."""
        return self.name

    async def start(self) -> None:
        """Open connections or files; called once before use."""

    async def close(self) -> None:
        """Flush and release everything; appends after this fail."""

    @abstractmethod
    async def append(self, messages: Sequence[tuple[bytes, bytes]]) -> Positions | None:
        """Durably store (key, value) pairs; return only once they are safe, else raise
        ``LogUnavailable`` (then none of them may be acknowledged to the client). Returns
        where each message landed, where the log can tell (None where it cannot: Redis
        Streams ids are not offsets)."""

    @abstractmethod
    async def check(self) -> None:
        """Raise ``LogUnavailable`` if the log cannot take appends right now."""

    @abstractmethod
    def consumer(self, group: str, positions: PositionLookup) -> LogConsumer:
        """A consumer in ``group``; on each partition it starts where ``positions`` says."""

    @abstractmethod
    async def dead_letter(self, messages: Sequence[LogMessage], reason: str) -> None:
        """Keep messages the processor cannot decode where an operator can find and replay
        them (never a silent drop); raise ``LogUnavailable`` if they could not be kept."""

    @abstractmethod
    def dead_letters(self, group: str, positions: PositionLookup) -> LogConsumer:
        """A consumer over the dead-lettered messages (for ``hitstream replay``)."""

    async def offsets_for_time(self, timestamp_ms: int) -> dict[int, int]:
        """partition -> first offset appended at or after ``timestamp_ms`` (for replay)."""
        raise LogUnavailable(f"the {self.name} log cannot look offsets up by time")
